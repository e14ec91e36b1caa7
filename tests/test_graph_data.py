"""Graph data sets: CSL and EXP-style pairs are 1-WL-equivalent yet non-isomorphic, GraphDataset plumbing, ESOL."""

import itertools
import sys

import networkx as nx
import numpy as np
import pytest
import torch

from symwrap.data import (
    CSL_SKIPS,
    ESOL_ATOM_TYPES,
    DatasetNotFoundError,
    GraphDataset,
    csl,
    esol,
    exp_pairs,
    wl_colors,
    wl_equivalent,
)
from symwrap.errors import ConfigError, MissingDependencyError, ShapeError


def to_nx(data: GraphDataset, g: int) -> nx.Graph:
    n = int(data.num_nodes[g])
    return nx.from_numpy_array(data.adjacency[g, :n, :n].numpy())


@pytest.fixture(scope="module")
def csl_data() -> GraphDataset:
    return csl()


@pytest.fixture(scope="module")
def exp_data() -> GraphDataset:
    return exp_pairs(num_pairs=40, min_nodes=8, max_nodes=24)


# --- CSL --------------------------------------------------------------------------------
def test_csl_is_murphy_et_al_150_graphs_of_10_balanced_4_regular_classes(csl_data):
    data = csl_data
    assert len(data) == 150 and data.num_classes == 10 and data.name == "csl"
    assert data.adjacency.shape == (150, 41, 41) and data.adjacency.dtype == torch.float32
    assert data.labels.dtype == torch.long and torch.bincount(data.labels).tolist() == [15] * 10
    assert data.num_nodes.eq(41).all() and data.mask.all()
    assert torch.equal(data.features, torch.ones(150, 41, 1))
    assert torch.equal(data.adjacency, data.adjacency.transpose(1, 2))
    assert data.adjacency.diagonal(dim1=1, dim2=2).eq(0).all()
    assert set(data.adjacency.unique().tolist()) == {0.0, 1.0}
    assert data.adjacency.sum(-1).eq(4).all()  # 4-regular
    for g in range(0, 150, 15):
        assert nx.is_connected(to_nx(data, g))


def test_csl_classes_are_the_skip_link_graphs_and_pairwise_non_isomorphic(csl_data):
    data = csl_data
    representatives = [to_nx(data, 15 * c) for c in range(10)]
    for c, skip in enumerate(CSL_SKIPS):
        assert nx.is_isomorphic(representatives[c], nx.circulant_graph(41, [1, skip]))
        assert nx.is_isomorphic(to_nx(data, 15 * c + 14), representatives[c])
    # Different adjacency spectra prove non-isomorphism (nx.is_isomorphic takes seconds on all 45 pairs).
    spectra = [torch.linalg.eigvalsh(data.adjacency[15 * c].double()) for c in range(10)]
    for a, b in itertools.combinations(range(10), 2):
        assert (spectra[a] - spectra[b]).abs().max() > 1e-3
    assert not nx.is_isomorphic(representatives[0], representatives[1])


def test_csl_graphs_are_all_1wl_equivalent(csl_data):
    colors = wl_colors(csl_data.adjacency, csl_data.mask)
    assert colors.shape == (150, 41) and colors.unique().tolist() == [0]
    assert wl_equivalent(csl_data[0], csl_data[-1])


def test_csl_node_order_is_a_seeded_random_permutation(csl_data):
    assert torch.equal(csl().adjacency, csl_data.adjacency)
    assert not torch.equal(csl(seed=1).adjacency, csl_data.adjacency)
    # copies of one class have different node orders; without permutation they are the plain circulant
    assert not torch.equal(csl_data.adjacency[0], csl_data.adjacency[1])
    plain = csl(permute=False)
    circulant = torch.as_tensor(nx.to_numpy_array(nx.circulant_graph(41, [1, CSL_SKIPS[3]])), dtype=torch.float32)
    assert torch.equal(plain.adjacency[45], circulant) and torch.equal(plain.adjacency[46], circulant)


def test_csl_custom_sizes():
    data = csl(num_per_class=2, num_nodes=11, skips=(2, 3))
    assert len(data) == 4 and data.num_classes == 2 and data.adjacency.shape == (4, 11, 11)
    assert data.adjacency.sum(-1).eq(4).all()


# --- EXP-style pairs --------------------------------------------------------------------
def test_exp_pairs_are_1wl_equivalent_non_isomorphic_and_balanced(exp_data):
    data = exp_data
    assert len(data) == 80 and data.num_classes == 2 and data.max_nodes == 24
    assert data.labels.tolist() == [0, 1] * 40
    assert ((data.num_nodes >= 8) & (data.num_nodes <= 24)).all()
    assert len(set(data.num_nodes.tolist())) > 3  # sizes vary
    for i in range(40):
        connected, disconnected = to_nx(data, 2 * i), to_nx(data, 2 * i + 1)
        assert data.num_nodes[2 * i] == data.num_nodes[2 * i + 1]
        assert connected.number_of_edges() == disconnected.number_of_edges()
        assert nx.is_connected(connected) and nx.number_connected_components(disconnected) == 2
        assert wl_equivalent(data[2 * i], data[2 * i + 1])
        if connected.number_of_nodes() <= 16:
            assert not nx.is_isomorphic(connected, disconnected)
    # the 'lift' family is not regular, so the equivalence is more than equal degrees
    colors = wl_colors(data.adjacency[:2], data.mask[:2])
    assert len(colors[0][data.mask[0]].unique()) > 2


def test_exp_families_and_seeding():
    lift = exp_pairs(num_pairs=6, families=("lift",), min_nodes=10, max_nodes=12, seed=3)
    assert (lift.num_nodes % 2 == 0).all()
    regular = exp_pairs(num_pairs=6, families=("regular",), degrees=(3,), min_nodes=10, max_nodes=16, seed=3)
    for g in range(len(regular)):
        n = int(regular.num_nodes[g])
        assert regular.adjacency[g, :n].sum(-1).eq(3).all()
    cycles = exp_pairs(num_pairs=4, families=("regular",), degrees=(2,), min_nodes=8, max_nodes=8)
    assert nx.is_isomorphic(to_nx(cycles, 0), nx.cycle_graph(8))
    again = exp_pairs(num_pairs=6, families=("lift",), min_nodes=10, max_nodes=12, seed=3)
    assert torch.equal(lift.adjacency, again.adjacency)
    other = exp_pairs(num_pairs=6, families=("lift",), min_nodes=10, max_nodes=12, seed=4)
    assert not torch.equal(lift.adjacency, other.adjacency)


# --- color refinement -------------------------------------------------------------------
def test_wl_colors_and_equivalence_on_known_graphs():
    six_cycle = nx.cycle_graph(6)
    two_triangles = nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3))
    assert wl_equivalent(six_cycle, two_triangles) and not nx.is_isomorphic(six_cycle, two_triangles)
    assert not wl_equivalent(nx.path_graph(4), nx.star_graph(3))
    assert not wl_equivalent(nx.path_graph(4), nx.path_graph(5))
    # same degree histogram, separated by the second round
    assert not wl_equivalent(nx.path_graph(5), nx.disjoint_union(nx.cycle_graph(3), nx.path_graph(2)))
    path = torch.as_tensor(nx.to_numpy_array(nx.path_graph(5)))
    assert wl_colors(path, iterations=0).tolist() == [0] * 5
    first = wl_colors(path, iterations=1)
    assert first[0] == first[4] and first[1] == first[2] == first[3] != first[0]
    stable = wl_colors(path)
    assert len(stable.unique()) == 3 and stable[0] == stable[4] and stable[1] == stable[3]
    padded = torch.zeros(7, 7)
    padded[:5, :5] = path
    mask = torch.arange(7) < 5
    assert wl_colors(padded, mask)[5:].tolist() == [-1, -1]
    assert torch.equal(wl_colors(padded, mask)[:5], stable)


# --- GraphDataset -----------------------------------------------------------------------
def test_indexing_keeps_a_graph_dataset(csl_data):
    one = csl_data[3]
    assert isinstance(one, GraphDataset) and len(one) == 1 and torch.equal(one.adjacency[0], csl_data.adjacency[3])
    assert torch.equal(csl_data[-1].adjacency, csl_data.adjacency[-1:])
    assert len(csl_data[10:20]) == 10 and len(csl_data[[0, 5, 7]]) == 3
    assert len(csl_data[torch.tensor([1, 2])]) == 2 and len(csl_data[csl_data.labels == 0]) == 15
    assert csl_data[np.int64(2)].labels.tolist() == [0]
    with pytest.raises(IndexError):
        csl_data[150]
    assert "csl" in repr(csl_data) and "150" in repr(csl_data)


def test_to_pyg_round_trip(exp_data):
    graphs = exp_data.to_pyg()
    assert len(graphs) == len(exp_data)
    for g, graph in enumerate(graphs):
        n = int(exp_data.num_nodes[g])
        assert graph.num_nodes == n and graph.x.shape == (n, 1)
        assert graph.edge_index.shape[1] == int(exp_data.adjacency[g].count_nonzero())
        dense = torch.zeros(n, n)
        dense[graph.edge_index[0], graph.edge_index[1]] = 1.0
        assert torch.equal(dense, exp_data.adjacency[g, :n, :n])
        assert graph.y.tolist() == [int(exp_data.labels[g])]


def test_splits_are_disjoint_deterministic_and_stratified(csl_data):
    index = GraphDataset(
        csl_data.adjacency, torch.arange(150.0).reshape(150, 1, 1).expand(150, 41, 1), csl_data.mask,
        csl_data.labels, csl_data.num_nodes, 10, "csl",
    )
    train, val, test = index.split([0.6, 0.2, 0.2], seed=0)
    ids = [split.features[:, 0, 0].long() for split in (train, val, test)]
    assert [len(i) for i in ids] == [90, 30, 30]
    assert sorted(torch.cat(ids).tolist()) == list(range(150))
    for split in (train, val, test):
        counts = torch.bincount(split.labels, minlength=10)
        assert counts.max() - counts.min() == 0  # 9 / 3 / 3 per class
    again = index.split([0.6, 0.2, 0.2], seed=0)
    assert all(torch.equal(a.features, b.features) for a, b in zip((train, val, test), again))
    assert not torch.equal(index.split([0.6, 0.2, 0.2], seed=1)[0].features, train.features)
    small, rest = index.split([10, 40], seed=2)
    assert len(small) == 10 and len(rest) == 40
    assert not set(small.features[:, 0, 0].tolist()) & set(rest.features[:, 0, 0].tolist())
    uneven = index.split([0.5, 0.5], seed=0, stratify=False)
    assert [len(s) for s in uneven] == [75, 75]


def test_regression_dataset_and_to():
    adjacency = torch.zeros(4, 3, 3)
    data = GraphDataset(adjacency, torch.ones(4, 3, 2), torch.ones(4, 3, dtype=torch.bool),
                        torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.full((4,), 3), None, "toy")
    first, second = data.split([0.5, 0.5], seed=0)
    assert len(first) == len(second) == 2
    with pytest.raises(ConfigError, match="regression"):
        data.split([0.5, 0.5], stratify=True)
    doubled = data.to(torch.float64)
    assert doubled.adjacency.dtype == torch.float64 and doubled.mask.dtype == torch.bool
    assert doubled.num_nodes.dtype == data.num_nodes.dtype


# --- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: csl(skips=(1, 2)), r"skip must be an integer >= 2; got 1"),
        (lambda: csl(skips=(2, 2)), r"distinct.*\(2, 2\)"),
        (lambda: csl(skips=(2, 25)), r"\[2, 20\].*got 25"),
        (lambda: csl(skips=()), r"non-empty"),
        (lambda: csl(num_nodes=4), r"num_nodes must be an integer >= 5; got 4"),
        (lambda: csl(num_per_class=0), r"num_per_class.*got 0"),
        (lambda: csl(seed=-1), r"seed.*got -1"),
        (lambda: exp_pairs(families=("cfi",)), r"unknown family 'cfi'"),
        (lambda: exp_pairs(degrees=(1,)), r"degree must be an integer >= 2; got 1"),
        (lambda: exp_pairs(min_nodes=5), r"min_nodes must be an integer >= 6; got 5"),
        (lambda: exp_pairs(min_nodes=20, max_nodes=10), r"max_nodes must be an integer >= 20; got 10"),
        (lambda: exp_pairs(degrees=(9,), max_nodes=18, families=("regular",)), r"degree 9 has no feasible size"),
        (lambda: exp_pairs(min_nodes=11, max_nodes=11, families=("lift",)), r"even size"),
        (lambda: exp_pairs(num_pairs=0), r"num_pairs.*got 0"),
        (lambda: csl().split([0.7, 0.7]), r"at most 1"),
        (lambda: csl().split([]), r"non-empty"),
        (lambda: csl().split([0.5, 3]), r"all ints"),
        (lambda: csl().split([100, 100]), r"at most 150"),
        (lambda: csl().split([0.001, 0.999]), r"empty split"),
        (lambda: wl_equivalent("graph", nx.path_graph(2)), r"got str"),
        (lambda: wl_colors(torch.zeros(3, 3), iterations=-1), r"iterations.*got -1"),
        (lambda: GraphDataset.from_networkx([nx.path_graph(5)], [0], num_classes=2, name="t", max_nodes=3),
         r"max_nodes=3 is smaller"),
        (lambda: GraphDataset.from_networkx([nx.path_graph(5)], [0, 1], num_classes=2, name="t"), r"labels"),
        (lambda: GraphDataset.from_networkx([nx.path_graph(5)], [2], num_classes=2, name="t"), r"\[0, 2\)"),
    ],
)
def test_bad_arguments_raise_config_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_inconsistent_tensors_raise_shape_error():
    ok = dict(adjacency=torch.zeros(2, 3, 3), features=torch.ones(2, 3, 1), mask=torch.ones(2, 3, dtype=torch.bool),
              labels=torch.zeros(2, dtype=torch.long), num_nodes=torch.full((2,), 3), num_classes=2, name="t")
    GraphDataset(**ok)
    for field, bad in [("adjacency", torch.zeros(2, 3, 4)), ("features", torch.ones(2, 4, 1)),
                       ("mask", torch.ones(2, 3)), ("labels", torch.zeros(3, dtype=torch.long))]:
        with pytest.raises(ShapeError, match=field):
            GraphDataset(**{**ok, field: bad})
    with pytest.raises(ShapeError, match=r"\(N, N\)"):
        wl_colors(torch.zeros(3, 4))


# --- message passing cannot separate them -----------------------------------------------
def test_gin_gives_1wl_equivalent_graphs_identical_outputs(csl_data, exp_data):
    pyg_nn = pytest.importorskip("torch_geometric.nn")
    batch_type = pytest.importorskip("torch_geometric.data").Batch
    gin = pyg_nn.GIN(in_channels=1, hidden_channels=32, num_layers=3, out_channels=8).double().eval()

    def readout(data: GraphDataset) -> torch.Tensor:
        batch = batch_type.from_data_list(data.to(torch.float64).to_pyg())
        with torch.no_grad():
            return pyg_nn.global_add_pool(gin(batch.x, batch.edge_index), batch.batch)

    csl_out = readout(csl_data[::15])  # one graph of each class
    torch.testing.assert_close(csl_out, csl_out[:1].expand_as(csl_out), rtol=1e-9, atol=1e-9)
    exp_out = readout(exp_data)
    torch.testing.assert_close(exp_out[0::2], exp_out[1::2], rtol=1e-9, atol=1e-9)
    # not vacuous: the same GIN separates pairs of different sizes
    sizes = exp_data.num_nodes[0::2]
    first, other = 0, int((sizes != sizes[0]).nonzero()[0])
    assert (exp_out[2 * first] - exp_out[2 * other]).abs().max() > 1e-6


# --- ESOL -------------------------------------------------------------------------------
def test_esol_without_datamol_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datamol", None)
    with pytest.raises(MissingDependencyError, match=r"datamol.*symwrap\[molecules\]"):
        esol("anywhere.csv")


def test_esol_reads_delaney_csv_with_datamol(tmp_path):
    pytest.importorskip("datamol")
    rows = [("OCC", -0.77), ("c1ccccc1Cl", -2.38), ("BrC(Br)Br", -1.91)]
    path = tmp_path / "delaney-processed.csv"
    lines = ["Compound ID,measured log solubility in mols per litre,smiles"]
    lines += [f"m{i},{target},{smiles}" for i, (smiles, target) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    data = esol(tmp_path, permute=False)
    assert data.name == "esol" and data.num_classes is None and len(data) == 3
    assert data.labels.dtype == torch.float32
    torch.testing.assert_close(data.labels, torch.tensor([-0.77, -2.38, -1.91]))
    assert data.num_nodes.tolist() == [3, 7, 4] and data.max_nodes == 7
    assert data.num_features == len(ESOL_ATOM_TYPES) + 1
    assert torch.equal(data.features.sum(-1), data.mask.float())  # one-hot on real atoms
    assert data.adjacency[1].sum() == 2 * 7  # benzene ring (6 bonds) + C-Cl
    bromine = data.features[2, :, ESOL_ATOM_TYPES.index("Br")]
    assert bromine.sum() == 3
    permuted = esol(path, seed=1)
    assert torch.equal(permuted.adjacency.sum((1, 2)), data.adjacency.sum((1, 2)))
    with pytest.raises(DatasetNotFoundError):
        esol(None)
    with pytest.raises(DatasetNotFoundError):
        esol(tmp_path / "missing.csv")


class _Atom:
    def __init__(self, index: int, symbol: str) -> None:
        self.index, self.symbol = index, symbol

    def GetIdx(self) -> int:
        return self.index

    def GetSymbol(self) -> str:
        return self.symbol


class _Bond:
    def __init__(self, begin: int, end: int) -> None:
        self.begin, self.end = begin, end

    def GetBeginAtomIdx(self) -> int:
        return self.begin

    def GetEndAtomIdx(self) -> int:
        return self.end


class _Mol:
    """The part of RDKit's Mol that the molecule conversion uses: a chain of the given elements."""

    def __init__(self, symbols: list[str]) -> None:
        self.atoms = [_Atom(i, s) for i, s in enumerate(symbols)]
        self.bonds = [_Bond(i, i + 1) for i in range(len(symbols) - 1)]

    def GetNumAtoms(self) -> int:
        return len(self.atoms)

    def GetAtoms(self) -> list[_Atom]:
        return self.atoms

    def GetBonds(self) -> list[_Bond]:
        return self.bonds


def test_esol_conversion_with_a_stand_in_for_datamol(tmp_path, monkeypatch):
    """Runs where datamol is missing: a stand-in parses 'chain' SMILES such as 'C-O-Si' into a chain of atoms."""
    import types

    from symwrap.data import solubility
    from symwrap.errors import SymwrapError

    fake = types.ModuleType("datamol")
    fake.to_mol = lambda smiles: _Mol(smiles.split("-")) if smiles and "?" not in smiles else None
    fake.data = types.SimpleNamespace(solubility=lambda as_df, mol_column: {
        "mol": [_Mol(["C", "C"]), _Mol(["N"])], "SOL": ["-1.5", 0.25]})
    monkeypatch.setitem(sys.modules, "datamol", fake)
    path = tmp_path / "esol.csv"
    path.write_text("smiles,measured log solubility in mols per litre\nC-O-Si,-0.5\nCl-C,1.25\n")
    data = esol(path, permute=False)
    assert data.num_nodes.tolist() == [3, 2] and data.labels.tolist() == [-0.5, 1.25]
    assert data.features[0, 2, -1] == 1 and data.features[0, 1, ESOL_ATOM_TYPES.index("O")] == 1
    assert data.features[1, 0, ESOL_ATOM_TYPES.index("Cl")] == 1 and data.features[1, 2].sum() == 0
    assert data.adjacency[0].sum() == 4 and data.adjacency[0, 0, 1] == data.adjacency[0, 1, 0] == 1
    permuted = esol(path, seed=5)
    assert sorted(permuted.features[0].argmax(-1).tolist()) == sorted(data.features[0].argmax(-1).tolist())
    path.write_text("smiles,measured log solubility in mols per litre\nC-?,-0.5\n")
    with pytest.raises(SymwrapError, match=r"line 2.*'C-\?'"):
        esol(path)
    path.write_text("SMILES,logS\nC,1\n")
    with pytest.raises(SymwrapError, match="columns"):
        esol(path)
    sol = solubility(permute=False)
    assert sol.name == "solubility" and sol.num_classes is None and sol.labels.tolist() == [-1.5, 0.25]
