import math
import re

import pytest
import torch
from helpers import make_generator
from hypothesis import given
from hypothesis import strategies as st

import symwrap
from symwrap.actions import GraphAction, ImageAction, get_action
from symwrap.errors import (
    ActionError,
    DeviceError,
    EmptyInputError,
    IncompatibleGroupError,
    InputDtypeError,
    NonFiniteInputError,
    UnknownActionError,
)
from symwrap.groups import base as group_base

seeds = st.integers(0, 2**31 - 1)
B, N = 3, 5


def points(seed, d=3):
    return torch.randn(B, N, d, generator=make_generator(seed), dtype=torch.float64)


def make_graphs(seed):
    pyg = pytest.importorskip("torch_geometric.data")
    gen = make_generator(seed)
    graphs = []
    for n in (4, 6, 3):
        edge_index = torch.randint(n, (2, 2 * n), generator=gen)
        graphs.append(
            pyg.Data(
                x=torch.randn(n, 2, generator=gen, dtype=torch.float64),
                pos=torch.randn(n, 3, generator=gen, dtype=torch.float64),
                edge_index=edge_index,
                edge_attr=torch.randn(2 * n, 1, generator=gen, dtype=torch.float64),
            )
        )
    return pyg.Batch.from_data_list(graphs)


# (action spec, group, data maker): every registered action with the groups it takes
CASES = [
    ("image", "C4", lambda s: torch.randn(B, 2, 6, 6, generator=make_generator(s), dtype=torch.float64)),
    ("image", "D4", lambda s: torch.randn(B, 2, 6, 6, generator=make_generator(s), dtype=torch.float64)),
    ("image", "C8", lambda s: torch.randn(B, 1, 5, 5, generator=make_generator(s), dtype=torch.float64)),
    ("points", "SO3", points),
    ("points", "O3", points),
    ("points", "E3", points),
    ("points", "SE3", points),
    ("points", "T3", points),
    ("points", "S", points),
    ("points", "E3xS", points),
    ("points", "O2", lambda s: points(s, d=2)),
    ("vectors", "E3xS", points),
    ("scalars", "S", lambda s: torch.randn(B, N, generator=make_generator(s), dtype=torch.float64)),
    ("scalars", "SO3xS", lambda s: torch.randn(B, N, 2, generator=make_generator(s), dtype=torch.float64)),
    ("set", "S", lambda s: torch.randn(B, N, 4, generator=make_generator(s), dtype=torch.float64)),
    ("vector", "O3", lambda s: torch.randn(B, 3, generator=make_generator(s), dtype=torch.float64)),
    ("vector", "SE3", lambda s: torch.randn(B, 3, generator=make_generator(s), dtype=torch.float64)),
    ("point", "E3", lambda s: torch.randn(B, 3, generator=make_generator(s), dtype=torch.float64)),
    ("point", "T3", lambda s: torch.randn(B, 3, generator=make_generator(s), dtype=torch.float64)),
    ("invariant", "SO3", lambda s: torch.randn(B, 7, generator=make_generator(s), dtype=torch.float64)),
    ("regular", "C4", lambda s: torch.randn(B, 4, generator=make_generator(s), dtype=torch.float64)),
    ("regular", "D4", lambda s: torch.randn(B, 8, generator=make_generator(s), dtype=torch.float64)),
    ("regular", "C4xS3", lambda s: torch.randn(B, 24, generator=make_generator(s), dtype=torch.float64)),
    ("graph", "S", make_graphs),
    ("adjacency", "S", lambda s: torch.randn(B, N, N, generator=make_generator(s), dtype=torch.float64)),
    ("adjacency", "S", lambda s: torch.randn(B, N, N, 2, generator=make_generator(s), dtype=torch.float64)),
    ("graph", "E3xS", make_graphs),
    (
        {"pos": "points", "vel": "vectors", "charge": "scalars"},
        "E3xS",
        lambda s: {"pos": points(s), "vel": points(s + 1), "charge": torch.randn(B, N, generator=make_generator(s))},
    ),
]


def as_tensors(data):
    """Everything in the data, as a flat list of tensors (graphs included) to compare."""
    if isinstance(data, dict):
        return [t for key in sorted(data) for t in as_tensors(data[key])]
    if isinstance(data, torch.Tensor):
        return [data]
    return [data[key] for key in sorted(data.keys()) if isinstance(data[key], torch.Tensor)]


def assert_same(a, b, atol):
    for left, right in zip(as_tensors(a), as_tensors(b), strict=True):
        assert torch.allclose(left.double(), right.double(), atol=atol), (left - right).abs().max()


def case_id(case):
    spec, group, _ = case
    return f"{spec if isinstance(spec, str) else 'dict'}-{group}"


def test_every_registered_action_has_a_law_test():
    tested = {spec for spec, _, _ in CASES if isinstance(spec, str)}
    assert tested == set(symwrap.list_actions())


@pytest.mark.parametrize("case", CASES, ids=case_id)
@given(seed=seeds)
def test_action_law(case, seed):
    """act(g·h, x) == act(g, act(h, x)) and act(e, x) == x."""
    spec, group_name, make = case
    action = get_action(spec)
    x = make(seed % 1000)
    group = action.bind(symwrap.get_group(group_name), x)
    action.check_group(group)
    action.validate(x, group)
    n = action.batch_size(x)
    gen = make_generator(seed)
    g = group.sample(n, generator=gen, dtype=torch.float64)
    h = group.sample(n, generator=gen, dtype=torch.float64)
    if group_name == "C8":  # interpolated rotations compose only approximately: test the exact elements
        g, h = 2 * (g // 2), 2 * (h // 2)
    assert_same(action.act(group, group.compose(g, h), x), action.act(group, g, action.act(group, h, x)), 1e-9)
    assert_same(action.act(group, group.identity(n, dtype=torch.float64), x), x, 1e-12)


def test_exact_image_rotations_are_rot90_and_flip():
    x = torch.randn(2, 3, 7, 7)
    action, c4, d4 = ImageAction(), symwrap.get_group("C4"), symwrap.get_group("D4")
    for k in range(4):
        rotated = action.act(c4, torch.full((2,), k), x)
        assert torch.equal(rotated, torch.rot90(x, k, dims=(-2, -1)))
    # D4 element 4 is the reflection across the x axis: the rows are reversed
    assert torch.equal(action.act(d4, torch.full((2,), 4), x), torch.flip(x, dims=(-2,)))


def test_interpolated_and_exact_image_paths_agree_on_right_angles():
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    so2 = symwrap.get_group("SO2")
    quarter = group_base.rotation_2d(torch.full((2,), torch.pi / 2, dtype=torch.float64))
    exact = ImageAction().act(so2, quarter, x)
    interpolated = ImageAction().differentiable().act(so2, quarter, x)
    assert torch.allclose(exact, interpolated, atol=1e-6)


def test_non_right_angles_are_interpolated_and_the_disc_mask_zeroes_corners():
    x = torch.ones(1, 1, 9, 9)
    so2 = symwrap.get_group("SO2")
    rotation = group_base.rotation_2d(torch.tensor([torch.pi / 4]))
    rotated = ImageAction().act(so2, rotation, x)
    assert rotated[0, 0, 0, 0] < 0.5 and rotated[0, 0, 4, 4] == 1  # corner left the picture, centre stayed
    masked = ImageAction(mask="circle").act(so2, group_base.rotation_2d(torch.zeros(1)), x)
    assert masked[0, 0, 0, 0] == 0 and masked[0, 0, 4, 4] == 1


def test_graph_permutation_relabels_edges_consistently():
    batch = make_graphs(0)
    group = GraphAction().bind(symwrap.get_group("S"), batch)
    g = group.sample(batch.num_graphs, generator=make_generator(1))
    moved = GraphAction().act(group, g, batch)
    # an edge (i, j) keeps joining the same node features
    assert torch.equal(moved.x[moved.edge_index[0]], batch.x[batch.edge_index[0]])
    assert torch.equal(moved.x[moved.edge_index[1]], batch.x[batch.edge_index[1]])
    assert torch.equal(moved.edge_attr, batch.edge_attr)
    assert torch.equal(moved.batch, batch.batch)


def test_one_element_moves_every_field_of_a_dict_consistently():
    action = get_action({"pos": "points", "vel": "vectors"})
    group = symwrap.get_group("E3")
    x = {"pos": points(0), "vel": points(1)}
    g = group.sample(B, generator=make_generator(2), dtype=torch.float64)
    moved = action.act(group, g, x)
    rotation, translation = group.linear_part(g), group.translation_part(g)
    assert torch.allclose(moved["pos"], x["pos"] @ rotation.transpose(1, 2) + translation[:, None])
    assert torch.allclose(moved["vel"], x["vel"] @ rotation.transpose(1, 2))


# --- errors ------------------------------------------------------------------------------------

def test_channels_first_points_get_a_helpful_error():
    with pytest.raises(ActionError, match=r"\(B, N, 3\).*transpose"):
        get_action("points").validate(torch.randn(2, 3, 10), symwrap.get_group("SO3"))


def test_so3_on_images_is_refused():
    with pytest.raises(IncompatibleGroupError, match="C\\{n\\}, D\\{n\\}, SO2 or O2; got SO3"):
        get_action("image").check_group(symwrap.get_group("SO3"))


def test_integer_images_are_refused():
    with pytest.raises(InputDtypeError, match="floating-point.*torch.uint8"):
        get_action("image").validate(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))


def test_non_square_images_are_refused():
    with pytest.raises(ActionError, match="square"):
        get_action("image").validate(torch.zeros(1, 1, 4, 5))


def test_nan_inputs_are_refused_when_checked():
    x = torch.randn(2, 4, 3)
    x[0, 1, 2] = float("nan")
    with pytest.raises(NonFiniteInputError, match="1 NaN or inf"):
        get_action("points").validate(x, check_finite=True)


def test_unknown_action_lists_the_valid_names():
    with pytest.raises(UnknownActionError, match="'pointcloud'.*expected one of: .*points"):
        get_action("pointcloud")


def test_dict_data_with_wrong_keys_is_refused():
    action = get_action({"pos": "points", "vel": "vectors"})
    with pytest.raises(ActionError, match="missing \\['vel'\\]"):
        action.validate({"pos": torch.randn(1, 4, 3)})


def test_element_count_must_match_the_batch():
    group = symwrap.get_group("SO3")
    with pytest.raises(ActionError, match="2 elements of SO3 for a batch of 3"):
        get_action("points").act(group, group.sample(2), torch.randn(3, 4, 3))


def test_register_a_custom_action():
    @symwrap.register_action("doubled_vector")
    class Doubled(symwrap.actions.VectorAction):
        name = "doubled_vector"

    assert isinstance(get_action("doubled_vector"), Doubled)


def test_radius_and_knn_graphs_match_brute_force_and_ignore_rotations():
    from symwrap.actions import knn_graph, radius_graph

    pos = torch.randn(11, 3, dtype=torch.float64)
    batch = torch.tensor([0] * 5 + [1] * 6)
    edges = {tuple(e) for e in radius_graph(pos, 1.2, batch).T.tolist()}
    expected = {
        (i, j) for i in range(11) for j in range(11)
        if i != j and batch[i] == batch[j] and (pos[i] - pos[j]).norm() <= 1.2
    }
    assert edges == expected
    rotation = symwrap.get_group("O3").sample(1, dtype=torch.float64)[0]
    assert {tuple(e) for e in radius_graph(pos @ rotation.T + 3.0, 1.2, batch).T.tolist()} == edges
    knn = knn_graph(pos, 2, batch)
    assert knn.shape == (2, 22)
    for source, target in knn.T.tolist():
        assert batch[source] == batch[target] and source != target
        others = [j for j in range(11) if batch[j] == batch[target] and j != target]
        distances = sorted((pos[j] - pos[target]).norm().item() for j in others)
        assert (pos[source] - pos[target]).norm().item() <= distances[1] + 1e-12


def test_adjacency_action_relabels_rows_and_columns_together():
    group = symwrap.get_group("S").sized(5)
    generator = torch.Generator().manual_seed(0)
    adjacency = (torch.rand(3, 5, 5, generator=generator) > 0.5).float()
    adjacency = ((adjacency + adjacency.transpose(1, 2)) > 0).float()
    action = symwrap.get_action("adjacency")
    g, h = group.sample(3, generator=generator), group.sample(3, generator=generator)
    moved = action.act(group, g, adjacency)
    matrix = torch.zeros(3, 5, 5)
    matrix[torch.arange(3)[:, None], g, torch.arange(5)] = 1.0  # M[g[i], i] = 1: member i goes to g[i]
    assert torch.equal(moved, matrix @ adjacency @ matrix.transpose(1, 2))
    assert torch.equal(action.act(group, group.compose(g, h), adjacency),
                       action.act(group, g, action.act(group, h, adjacency)))
    features, dense, mask = action.members(adjacency)
    assert mask is None
    assert torch.equal(dense, adjacency) and torch.equal(features[..., 0], adjacency.sum(-1))
    with pytest.raises(symwrap.errors.ActionError, match="square"):
        action.validate(torch.zeros(2, 3, 4))
    with pytest.raises(symwrap.errors.IncompatibleGroupError):
        action.check_group(symwrap.get_group("SO3"))


# --- inputs that cannot be data: meta tensors, empty batches and sets ----------------------------------------------
def _to_meta(data):
    if isinstance(data, dict):
        return {key: value.to("meta") for key, value in data.items()}
    return data.to("meta")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_meta_tensors_are_refused_by_every_action(case):
    spec, group_name, make = case
    with pytest.raises(DeviceError, match="'meta' device"):
        get_action(spec).validate(_to_meta(make(0)), symwrap.get_group(group_name))


TENSOR_CASES = [case for case in CASES if case[0] != "graph"]


@pytest.mark.parametrize("case", TENSOR_CASES, ids=case_id)
def test_a_batch_of_zero_samples_is_refused_by_every_action(case):
    spec, group_name, make = case
    data = make(0)
    empty = {key: value[:0] for key, value in data.items()} if isinstance(data, dict) else data[:0]
    with pytest.raises(EmptyInputError, match="batch of 0 samples"):
        get_action(spec).validate(empty, symwrap.get_group(group_name))


@pytest.mark.parametrize("spec, shape", [
    ("points", (2, 0, 3)), ("vectors", (2, 0, 3)), ("scalars", (2, 0)), ("set", (2, 0, 4)), ("adjacency", (2, 0, 0)),
    ("image", (2, 0, 4, 4)), ("invariant", (2, 0)),
])
def test_sets_without_members_are_refused_and_the_layout_is_named(spec, shape):
    action = get_action(spec)
    label = "" if spec == "invariant" else r"\(\w\) "  # (B, ...) names no member axis
    with pytest.raises(EmptyInputError, match=rf"must be {re.escape(action.layout)}.*axis 1 {label}is empty"):
        action.validate(torch.zeros(shape))


def test_empty_fields_of_a_dict_are_named():
    action = get_action({"pos": "points", "charge": "scalars"})
    with pytest.raises(EmptyInputError, match="field 'charge'.*axis 1 \\(N\\)"):
        action.validate({"pos": torch.randn(2, 3, 3), "charge": torch.zeros(2, 0)})


# --- graphs: every structural field is checked ------------------------------------------------------------------
def _graph_batch(sizes=(3, 4)):
    pyg = pytest.importorskip("torch_geometric.data")
    gen = make_generator(0)
    return pyg.Batch.from_data_list([
        pyg.Data(x=torch.randn(n, 2, generator=gen), pos=torch.randn(n, 3, generator=gen),
                 edge_index=torch.randint(max(n, 1), (2, 2 * n), generator=gen)) for n in sizes])


def _broken(change):
    graph = _graph_batch()
    change(graph)
    return graph


@pytest.mark.parametrize("change, error, match", [
    (lambda g: setattr(g, "edge_index", torch.tensor([[0, 7], [1, 2]])), ActionError,
     r"\[0, 7\) for 7 nodes; got values from 0 to 7"),
    (lambda g: setattr(g, "edge_index", torch.tensor([[0, -1], [1, 2]])), ActionError, "got values from -1 to 2"),
    (lambda g: setattr(g, "edge_index", g.edge_index.float()), ActionError,
     r"\(2, E\) integer tensor; got a torch.float32"),
    (lambda g: setattr(g, "edge_index", torch.zeros(3, 4, dtype=torch.long)), ActionError, r"\(2, E\).*shape \(3, 4\)"),
    (lambda g: setattr(g, "batch", g.batch[:-1]), ActionError, r"batch vector must be a \(7,\) integer tensor"),
    (lambda g: setattr(g, "batch", g.batch.flip(0)), ActionError, "must be sorted"),
    (lambda g: setattr(g, "batch", g.batch + 5), ActionError, r"graph indices in \[0, 2\)"),
    (lambda g: setattr(g, "pos", g.pos[:, :2]), ActionError, r"'pos' must be \(num_nodes, 3\) = \(7, 3\)"),
    (lambda g: setattr(g, "pos", g.pos.long()), InputDtypeError, "'pos' is rotated, so it must be floating point"),
    (lambda g: setattr(g, "pos", None), ActionError, "moves the graph's 'pos' field, but the graph has none"),
    (lambda g: setattr(g, "x", g.x[:3]), ActionError, r"batch vector must be a \(3,\).*shape \(7,\)"),
])
def test_malformed_graphs_are_refused_with_what_was_given(change, error, match):
    with pytest.raises(error, match=match):
        GraphAction().validate(_broken(change), symwrap.get_group("E3xS"))


def test_node_features_must_have_one_row_per_node():
    pyg = pytest.importorskip("torch_geometric.data")
    graph = pyg.Data(x=torch.randn(3, 2), pos=torch.randn(5, 3), num_nodes=5)
    with pytest.raises(ActionError, match=r"node features x must have one row per node \(5\); got .* shape \(3, 2\)"):
        GraphAction().validate(graph, symwrap.get_group("S"))


def test_graphs_without_nodes_are_refused():
    pyg = pytest.importorskip("torch_geometric.data")
    with pytest.raises(EmptyInputError, match=r"graph\(s\) \[1\] of the batch have no nodes"):
        GraphAction().validate(_graph_batch((3, 0, 2)), symwrap.get_group("S"))
    empty = pyg.Data(x=torch.zeros(0, 2), edge_index=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(EmptyInputError, match="has no nodes"):
        GraphAction().validate(empty, symwrap.get_group("S"))


def test_graphs_without_edges_are_permuted():
    pyg = pytest.importorskip("torch_geometric.data")
    graph = pyg.Data(x=torch.arange(4.0)[:, None])
    action, group = GraphAction(), symwrap.get_group("S")
    action.validate(graph, group)
    bound = action.bind(group, graph)
    moved = action.act(bound, torch.tensor([[1, 2, 3, 0]]), graph)
    assert moved.x.flatten().tolist() == [3.0, 0.0, 1.0, 2.0]


def test_regular_outputs_need_sets_of_one_size():
    batch = _graph_batch((3, 4))
    bound = GraphAction().bind(symwrap.get_group("S"), batch)
    with pytest.raises(ActionError, match="needs sets of one size"):
        get_action("regular").validate(torch.zeros(2, 24), bound)


def test_take_keeps_the_first_samples_of_every_layout():
    assert get_action("points").take(torch.arange(12.0).reshape(4, 3, 1), 2).shape == (2, 3, 1)
    taken = get_action({"pos": "points", "q": "scalars"}).take({"pos": torch.zeros(4, 3, 3), "q": torch.zeros(4, 3)}, 2)
    assert taken["pos"].shape == (2, 3, 3) and taken["q"].shape == (2, 3)
    first = GraphAction().take(_graph_batch((3, 4, 5)), 2)
    assert first.num_graphs == 2 and first.num_nodes == 7


# --- property tests over random shapes, dtypes and sizes --------------------------------------------------------
VALIDATED = [("image", "C4"), ("image", "D4"), ("points", "SO3"), ("points", "E3xS"), ("vectors", "O3xS"),
             ("scalars", "S"), ("set", "S"), ("vector", "O3"), ("point", "E3"), ("invariant", "SO3"),
             ("regular", "D4"), ("adjacency", "S")]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.bool, torch.complex64]


@given(case=st.sampled_from(VALIDATED), shape=st.lists(st.integers(0, 5), max_size=5), dtype=st.sampled_from(DTYPES),
       meta=st.booleans(), seed=seeds)
def test_validate_accepts_only_what_the_action_can_move(case, shape, dtype, meta, seed):
    """Either a SymwrapError, or data that the action moves: same shape and dtype, unchanged by the identity."""
    spec, group_name = case
    action, group = get_action(spec), symwrap.get_group(group_name)
    x = torch.randn(*shape, generator=make_generator(seed)).to(dtype) if shape else torch.tensor(1.0).to(dtype)
    x = x.to("meta") if meta else x
    try:
        action.validate(x, group)
    except symwrap.SymwrapError as error:
        assert str(error)
        return
    assert not meta and x.numel() > 0
    bound = action.bind(group, x)
    element_dtype = x.dtype if torch.is_floating_point(x) else None
    moved = action.act(bound, bound.sample(x.shape[0], generator=make_generator(seed), dtype=element_dtype), x)
    assert moved.shape == x.shape and moved.dtype == x.dtype
    assert torch.equal(action.act(bound, bound.identity(x.shape[0], dtype=element_dtype), x), x)


def _data_of_size(spec: str, b: int, n: int, seed: int):
    gen = make_generator(seed)
    shapes = {"points": (b, n, 3), "vectors": (b, n, 3), "scalars": (b, n), "set": (b, n, 2),
              "adjacency": (b, n, n, 2), "image": (b, 2, n, n), "points2": (b, n, 2)}
    return torch.randn(*shapes[spec], generator=gen, dtype=torch.float64)


@given(case=st.sampled_from([("points", "E3xS"), ("vectors", "O3xS"), ("scalars", "S"), ("set", "S"),
                             ("adjacency", "S"), ("image", "D4"), ("points2", "O2xS")]),
       b=st.integers(1, 5), n=st.integers(1, 7), seed=seeds)
def test_action_law_on_odd_sizes(case, b, n, seed):
    spec, group_name = case
    action = get_action("points" if spec == "points2" else spec)
    x = _data_of_size(spec, b, n, seed)
    group = action.bind(symwrap.get_group(group_name), x)
    action.validate(x, group)
    gen = make_generator(seed)
    g, h = (group.sample(b, generator=gen, dtype=torch.float64) for _ in range(2))
    assert_same(action.act(group, group.compose(g, h), x), action.act(group, g, action.act(group, h, x)), 1e-9)
    assert_same(action.act(group, group.identity(b, dtype=torch.float64), x), x, 0)


@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=seeds)
def test_graph_action_law_on_ragged_batches_with_enumerated_elements(sizes, seed):
    from symwrap.actions import group_copies

    batch = _graph_batch(tuple(sizes))
    action = GraphAction()
    copies = group_copies(action, symwrap.get_group("S"), batch, samples=1, exhaustive_up_to=1024)
    assert copies.k == math.factorial(max(sizes))
    group, x = copies.group, copies.x
    h = group.fit_rows(group.sample(action.batch_size(x), generator=make_generator(seed)))
    g = copies.elements
    assert_same(action.act(group, group.compose(g, h), x), action.act(group, g, action.act(group, h, x)), 0)
    moved = action.act(group, g, x)  # every graph keeps its own nodes: edges join the same features
    assert torch.equal(moved.x[moved.edge_index], x.x[x.edge_index])


def test_repeating_a_graph_batch_matches_collating_the_copies():
    pyg = pytest.importorskip("torch_geometric.data")
    graphs = [pyg.Data(x=torch.randn(n, 2), pos=torch.randn(n, 3), edge_index=torch.randint(n, (2, 2 * n)),
                       edge_attr=torch.randn(2 * n, 1), y=torch.tensor([n]), name=f"g{n}") for n in (3, 4, 5)]
    batch = pyg.Batch.from_data_list(graphs)
    for k in (1, 4):
        tiled, expected = GraphAction().repeat(batch, k), pyg.Batch.from_data_list(graphs * k)
        assert tiled.num_graphs == 3 * k and tiled.name == expected.name
        assert_same(tiled, expected, 0)  # every tensor, edge_index, batch and ptr included
        assert [g.num_nodes for g in tiled.to_data_list()] == [3, 4, 5] * k  # still splits into its graphs
    twice = GraphAction().repeat(GraphAction().repeat(batch, 2), 3)
    assert_same(twice, pyg.Batch.from_data_list(graphs * 6), 0)


@st.composite
def wild_graphs(draw):
    """Batches of graphs, some of them broken: nodes, edges, batch vector or positions of a random shape/dtype."""
    pyg = pytest.importorskip("torch_geometric.data")
    sizes = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    gen = make_generator(draw(seeds))
    batch = pyg.Batch.from_data_list([
        pyg.Data(x=torch.randn(n, 2, generator=gen), pos=torch.randn(n, 3, generator=gen),
                 edge_index=torch.randint(max(n, 1), (2, draw(st.integers(0, 2 * n))), generator=gen))
        for n in sizes])
    field = draw(st.sampled_from([None, "edge_index", "batch", "pos", "x"]))
    if field is not None:
        shape = draw(st.lists(st.integers(0, 8), min_size=1, max_size=3))
        dtype = draw(st.sampled_from([torch.float32, torch.int64, torch.bool]))
        batch[field] = torch.randint(-1, 8, shape, generator=gen).to(dtype)
    return batch


@given(batch=wild_graphs(), group_name=st.sampled_from(["S", "E3xS", "SO3"]), seed=seeds)
def test_graph_validation_accepts_only_graphs_the_action_can_move(batch, group_name, seed):
    action, group = GraphAction(), symwrap.get_group(group_name)
    try:
        action.validate(batch, group)
    except symwrap.SymwrapError as error:
        assert str(error)
        return
    bound = action.bind(group, batch)
    moved = action.act(bound, bound.sample(action.batch_size(batch), generator=make_generator(seed)), batch)
    assert torch.equal(moved.batch, batch.batch) and moved.num_nodes == batch.num_nodes
    assert torch.equal(moved.x[moved.edge_index], batch.x[batch.edge_index])  # edges join the same nodes
