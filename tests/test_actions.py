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
    ("tensor", "O3", lambda s: torch.randn(B, 3, 3, generator=make_generator(s), dtype=torch.float64)),
    ("tensor", "SO2z", lambda s: torch.randn(B, 3, 3, generator=make_generator(s), dtype=torch.float64)),
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
    copies = group_copies(action, symwrap.get_group("S"), batch, samples=1, max_exhaustive_order=1024)
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


# --- images: which pixel goes where -----------------------------------------------------------------------------
def _rotate_by_hand(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Counter-clockwise rotation of (C, S, S) images about the centre, output pixel p taking the bilinear
    interpolation of the input at R(−angle)·p (x right, y up, pixel centres; zeros outside)."""
    channels, size, _ = x.shape
    centre = (size - 1) / 2
    out = torch.zeros_like(x)
    c, s = math.cos(angle), math.sin(angle)
    for row in range(size):
        for col in range(size):
            px, py = col - centre, centre - row
            sx, sy = c * px + s * py, -s * px + c * py  # R(−angle) p
            src_col, src_row = sx + centre, centre - sy
            c0, r0 = math.floor(src_col), math.floor(src_row)
            for dr in (0, 1):
                for dc in (0, 1):
                    r, q = r0 + dr, c0 + dc
                    if 0 <= r < size and 0 <= q < size:
                        weight = (1 - abs(src_row - r)) * (1 - abs(src_col - q))
                        out[:, row, col] += weight * x[:, r, q]
    return out


@pytest.mark.parametrize("differentiable", [False, True])
@pytest.mark.parametrize("flip", [False, True])
def test_interpolated_image_rotations_sample_the_turned_grid(differentiable, flip):
    x = torch.randn(2, 2, 7, 7, generator=make_generator(0), dtype=torch.float64)
    angles = torch.tensor([0.4, -2.2], dtype=torch.float64)
    matrices = group_base.rotation_2d(angles)
    if flip:  # after the reflection across the x axis: the rows of the input are reversed first
        matrices = matrices @ torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    action = ImageAction().differentiable() if differentiable else ImageAction()
    moved = action.act(symwrap.get_group("O2"), matrices, x)
    for b, angle in enumerate(angles.tolist()):
        source = x[b].flip(-2) if flip else x[b]
        assert torch.allclose(moved[b], _rotate_by_hand(source, angle), atol=1e-12), b


def test_images_rotated_by_right_angles_up_to_round_off_move_whole_pixels():
    x = torch.randn(3, 1, 6, 6, generator=make_generator(1))
    so2 = symwrap.get_group("SO2")
    angles = torch.tensor([math.pi / 2 + 1e-8, math.pi / 2 + 1e-3, -math.pi + 1e-8])
    moved = ImageAction().act(so2, group_base.rotation_2d(angles), x)  # a batch mixing both paths
    assert torch.equal(moved[0], torch.rot90(x[0], 1, dims=(-2, -1)))
    assert torch.equal(moved[2], torch.rot90(x[2], 2, dims=(-2, -1)))
    assert not torch.equal(moved[1], torch.rot90(x[1], 1, dims=(-2, -1)))
    assert torch.allclose(moved[1], ImageAction().act(so2, group_base.rotation_2d(angles[1:2]), x[1:2])[0])
    assert torch.allclose(moved[1], torch.rot90(x[1], 1, dims=(-2, -1)), atol=0.02)
    nearest = ImageAction(interpolation="nearest").act(so2, group_base.rotation_2d(angles[1:2]), x[1:2])
    assert torch.equal(nearest[0], torch.rot90(x[1], 1, dims=(-2, -1)))  # nearest pixel of a near quarter turn
    loose = ImageAction(exact=False).act(so2, group_base.rotation_2d(angles[:1]), x[:1])
    assert not torch.equal(loose[0], torch.rot90(x[0], 1, dims=(-2, -1)))  # exact=False: always interpolated
    assert torch.allclose(loose[0], torch.rot90(x[0], 1, dims=(-2, -1)), atol=1e-5)


@pytest.mark.parametrize("size", [4, 5])
def test_every_quarter_turn_and_flip_of_d4_moves_whole_pixels(size):
    x = torch.arange(2.0 * size * size).reshape(1, 2, size, size).expand(8, 2, size, size).contiguous()
    moved = ImageAction().act(symwrap.get_group("D4"), torch.arange(8), x)
    for i in range(8):  # element k + 4f: reflect the rows (f = 1), then turn k quarter turns counter-clockwise
        source = x[i].flip(-2) if i >= 4 else x[i]
        assert torch.equal(moved[i], torch.rot90(source, i % 4, dims=(-2, -1))), i
    assert moved.dtype == x.dtype


def test_disc_mask_keeps_the_pixels_whose_centres_lie_in_the_inscribed_disc():
    expected5 = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]])
    assert torch.equal(symwrap.actions.disc_mask(5), expected5.float())
    expected4 = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]])
    assert torch.equal(symwrap.actions.disc_mask(4, dtype=torch.float64), expected4.double())
    assert symwrap.actions.disc_mask(4, device="meta").device.type == "meta"
    x = torch.ones(4, 1, 5, 5, dtype=torch.float64)
    for name, g in [("C4", torch.arange(4)), ("C8", torch.arange(1, 5))]:
        moved = ImageAction(mask="circle").act(symwrap.get_group(name), g, x)
        assert (moved[:, 0] * (1 - expected5.double()) == 0).all()  # every element zeroes the same corners
        assert (moved[:, 0, 2, :] == 1).all()  # and keeps the middle row, which every turn keeps inside
        assert moved.dtype == torch.float64


def test_image_action_settings_and_what_it_accepts():
    with pytest.raises(ActionError, match="image mask must be None or 'circle'; got 'square'"):
        ImageAction(mask="square")
    loose = ImageAction(interpolation="nearest", mask="circle").differentiable()
    assert (loose.interpolation, loose.mask, loose.exact) == ("nearest", "circle", False)
    for name in ["SO3", "T3", "C4xS", "S"]:
        with pytest.raises(IncompatibleGroupError, match=f"C{{n}}, D{{n}}, SO2 or O2; got {name}. Rotate 3-D"):
            ImageAction().check_group(symwrap.get_group(name))
    for name in ["C4", "D8", "SO2", "O2"]:
        ImageAction().check_group(symwrap.get_group(name))
    with pytest.raises(ActionError, match=r"got a tensor of shape \(2, 5, 5\). Add a channel dimension with x.unsq"):
        ImageAction().validate(torch.zeros(2, 5, 5))
    with pytest.raises(ActionError, match=r"shape \(2, 1, 1, 5, 5\).$"):
        ImageAction().validate(torch.zeros(2, 1, 1, 5, 5))
    with pytest.raises(ActionError, match="square images; got H=4, W=5. Pad or crop"):
        ImageAction().validate(torch.zeros(1, 1, 4, 5))
    with pytest.raises(NonFiniteInputError, match="1 NaN or inf"):
        ImageAction().validate(torch.tensor([[[[0.0, float("inf")], [0.0, 0.0]]]]), check_finite=True)
    ImageAction().validate(torch.tensor([[[[0.0, float("inf")], [0.0, 0.0]]]]))


@pytest.mark.parametrize("name, exact", [("C1", True), ("C2", True), ("C4", True), ("D4", True), ("D2", True),
                                         ("C3", False), ("C8", False), ("D8", False), ("SO2", False), ("O2", False)])
def test_images_are_moved_exactly_by_quarter_turns_and_flips_only(name, exact):
    group = symwrap.get_group(name)
    assert ImageAction().acts_exactly(group) is exact
    assert ImageAction(exact=False).acts_exactly(group) is False
    assert get_action({"image": "image", "label": "invariant"}).acts_exactly(group) is exact
    assert get_action("points").acts_exactly(group) is True


# --- point clouds, vectors, scalars, sets ---------------------------------------------------------------------------
def test_points_are_permuted_then_rotated_then_translated():
    group = symwrap.get_group("E3xS")
    action = get_action("points")
    x = points(0)
    bound = action.bind(group, x)
    g = bound.sample(B, generator=make_generator(1), dtype=torch.float64)
    rotation, shift, perm = bound.linear_part(g), bound.translation_part(g), bound.permutation_part(g)
    expected = torch.empty_like(x)
    for b in range(B):
        for i in range(N):  # member i goes to position perm[b, i]
            expected[b, perm[b, i]] = rotation[b] @ x[b, i] + shift[b]
    assert torch.allclose(action.act(bound, g, x), expected, atol=1e-12)
    velocities = get_action("vectors").act(bound, g, x)
    assert torch.allclose(velocities, expected - shift[:, None], atol=1e-12)  # vectors are not translated
    assert get_action("points").positions(x) is x and get_action("vectors").positions(x) is None
    assert action.set_size(x) == (N, None) and get_action("scalars").set_size(x[..., 0]) == (N, None)


def test_hard_permutation_matrices_move_members_like_the_permutation():
    group = symwrap.get_group("S").sized(N)
    g = group.sample(B, generator=make_generator(2))
    matrix = group.matrix(g).double()
    data = {"points": points(0), "scalars": points(1)[..., 0], "set": points(2),
            "adjacency": torch.randn(B, N, N, 2, generator=make_generator(3), dtype=torch.float64)}
    data["adjacency3"] = data["adjacency"][..., 0]
    for spec, x in data.items():
        action = get_action(spec.rstrip("3"))
        assert action.soft_permutations
        assert torch.allclose(action.permute_by_matrix(x, matrix), action.act(group, g, x), atol=1e-12), spec
        integer = (10 * x).long()
        assert torch.equal(action.permute_by_matrix(integer, matrix), action.act(group, g, integer)), spec
        flags = x > 0
        assert torch.equal(action.permute_by_matrix(flags, matrix), action.act(group, g, flags)), spec
    soft = torch.full((B, N, N), 1.0 / N, dtype=torch.float64, requires_grad=True)
    averaged = get_action("scalars").permute_by_matrix(data["scalars"], soft)
    assert torch.allclose(averaged, data["scalars"].mean(1, keepdim=True).expand(B, N))
    averaged.sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0  # a relaxed permutation carries gradients
    integer_soft = get_action("scalars").permute_by_matrix(torch.ones(B, N, dtype=torch.long), soft)
    assert integer_soft.dtype == torch.long and not integer_soft.requires_grad


def test_what_each_member_action_reads():
    x = points(0)
    assert get_action("points").members(x) == (x, None, None)
    assert get_action("points").member_feature_count(symwrap.get_group("SO3")) == 3
    assert get_action("points").member_feature_count(symwrap.get_group("O2")) == 2
    features, adjacency, mask = get_action("scalars").members(x[..., 0])
    assert torch.equal(features, x[..., :1]) and adjacency is None and mask is None
    assert torch.equal(get_action("scalars").members(x)[0], x)
    integers = get_action("scalars").members(torch.ones(B, N, dtype=torch.long))[0]
    assert integers.dtype == torch.get_default_dtype() and integers.shape == (B, N, 1)
    assert get_action("scalars").member_feature_count(symwrap.get_group("S")) is None
    with pytest.raises(ActionError, match=r"'vector' data \(B, d\): batch, coordinates has no set members to read"):
        get_action("vector").members(x[:, 0])
    with pytest.raises(ActionError, match="'image' data .* has no set members to permute"):
        get_action("image").permute_by_matrix(x, torch.eye(N))
    assert not get_action("image").soft_permutations and not get_action("vector").soft_permutations


def test_scalars_are_only_permuted_and_vectors_only_rotated():
    group = symwrap.get_group("SE3xS")
    x = torch.randn(B, N, 2, generator=make_generator(0), dtype=torch.float64)
    bound = group.sized(N)
    g = bound.sample(B, generator=make_generator(1), dtype=torch.float64)
    moved = get_action("scalars").act(bound, g, x)
    assert torch.equal(moved, symwrap.actions.permute_members(x, bound.permutation_part(g)))
    assert get_action("scalars").act(symwrap.get_group("SO3"), g[0], x) is x
    v = torch.randn(B, 3, generator=make_generator(2), dtype=torch.float64)
    rotation, shift = bound.linear_part(g), bound.translation_part(g)
    assert torch.allclose(get_action("vector").act(bound, g, v), (rotation @ v[..., None])[..., 0])
    assert torch.allclose(get_action("point").act(bound, g, v), (rotation @ v[..., None])[..., 0] + shift)
    t3 = symwrap.get_group("T3")
    shift_only = t3.sample(B, generator=make_generator(3), dtype=torch.float64)
    assert torch.equal(get_action("point").act(t3, shift_only, v), v + shift_only)
    get_action("point").check_group(t3)
    with pytest.raises(IncompatibleGroupError, match="'vector' data is only rotated, and T3 has no rotations"):
        get_action("vector").check_group(t3)
    get_action("vector").check_group(symwrap.get_group("SE3"))


def test_point_and_set_layouts_are_checked():
    so3 = symwrap.get_group("SO3")
    with pytest.raises(ActionError, match=r"'points' data must be \(B, N, 3\) for SO3; got shape \(2, 4, 2\).$"):
        get_action("points").validate(torch.zeros(2, 4, 2), so3)
    with pytest.raises(ActionError, match=r"\(B, N, 3\) for T3; got shape \(2, 3, 2\). It looks channels-first"):
        get_action("points").validate(torch.zeros(2, 3, 2), symwrap.get_group("T3"))
    get_action("points").validate(torch.zeros(2, 4, 7), symwrap.get_group("S"))  # permutations: any width
    get_action("points").validate(torch.zeros(2, 4, 7))
    with pytest.raises(InputDtypeError, match="'points' data must be a floating-point tensor; got dtype torch.int64"):
        get_action("points").validate(torch.zeros(2, 4, 3, dtype=torch.long), so3)
    with pytest.raises(ActionError, match=r"'vector' data must be \(B, 3\) for SO3; got shape \(2, 2\)"):
        get_action("vector").validate(torch.zeros(2, 2), so3)
    with pytest.raises(ActionError, match=r"\(B, 3\) for T3"):
        get_action("point").validate(torch.zeros(2, 2), symwrap.get_group("T3"))
    get_action("vector").validate(torch.zeros(2, 5), symwrap.get_group("S"))
    with pytest.raises(InputDtypeError):
        get_action("vector").validate(torch.zeros(2, 3, dtype=torch.long), so3)
    with pytest.raises(ActionError, match=r"got a tensor of shape \(2, 4\). Add a feature dimension with x.unsq"):
        get_action("set").validate(torch.zeros(2, 4))
    with pytest.raises(ActionError, match=r"'scalars' data must be \(B, N\) or \(B, N, F\).*shape \(2,\)"):
        get_action("scalars").validate(torch.zeros(2))
    get_action("scalars").validate(torch.zeros(2, 3, dtype=torch.long))  # atom types may be integers
    for name in ["SO3xS", "T3", "SO3", "E3xS"]:
        with pytest.raises(IncompatibleGroupError, match=f"permutation groups \\(S, S{{n}}\\); got {name}"):
            get_action("set").check_group(symwrap.get_group(name))
    get_action("set").check_group(symwrap.get_group("S4"))
    for spec, shape in [("points", (1, 2, 3)), ("vectors", (1, 2, 3)), ("scalars", (1, 2)), ("set", (1, 2, 3)),
                        ("vector", (1, 3)), ("point", (1, 3))]:
        x = torch.zeros(shape)
        x.view(-1)[-1] = float("inf")
        get_action(spec).validate(x)
        with pytest.raises(NonFiniteInputError, match=rf"'{spec}' data of shape \({shape[0]}, .* has 1 NaN or inf"):
            get_action(spec).validate(x, check_finite=True)


def test_regular_outputs_are_shifted_by_the_group_law():
    c4 = symwrap.get_group("C4")
    y = torch.arange(8.0).reshape(2, 4)
    moved = get_action("regular").act(c4, torch.tensor([1, 3]), y)
    assert torch.equal(moved, torch.stack([y[0].roll(1), y[1].roll(3)]))  # (g·y)[h] = y[h − g]
    d4 = symwrap.get_group("D4")
    g = torch.tensor([5, 2, 7])
    y = torch.randn(3, 8, generator=make_generator(0))
    moved = get_action("regular").act(d4, g, y)
    for b in range(3):
        for h in range(8):
            source = int(d4.compose(d4.inverse(g[b:b + 1]), torch.tensor([h])))
            assert moved[b, h] == y[b, source]
    with pytest.raises(IncompatibleGroupError, match="need a finite group; got SO3"):
        get_action("regular").check_group(symwrap.get_group("SO3"))
    get_action("regular").check_group(symwrap.get_group("S"))  # finite once the data binds the set size
    with pytest.raises(ActionError, match=r"'regular' data for D4 must be \(B, 8\); got shape \(2, 4\)"):
        get_action("regular").validate(torch.zeros(2, 4), d4)
    get_action("regular").validate(torch.zeros(2, 4))
    with pytest.raises(ActionError, match=r"\(B, \|G\|\)"):
        get_action("regular").validate(torch.zeros(2, 8, 1), d4)
    action = get_action("regular")
    action.act(d4, g, y)
    assert list(action._tables) == [("D4", 8, "cpu")]  # the Cayley table is built once per group and device


def test_invariant_data_is_left_alone_and_base_validation_applies():
    x = torch.randn(2, 3)
    assert get_action("invariant").act(symwrap.get_group("SO3"), torch.eye(3).expand(2, 3, 3), x) is x
    with pytest.raises(ActionError, match=r"'invariant' data must be \(B, ...\), batch first; got a 0-dimensional "
                                          r"tensor. Add a batch dimension with x.unsqueeze\(0\)"):
        get_action("invariant").validate(torch.tensor(1.0))
    with pytest.raises(ActionError, match=r"'invariant' data must be a torch.Tensor \(B, ...\); got list"):
        get_action("invariant").validate([1.0])
    nan = torch.tensor([[float("nan"), 0.0]])
    get_action("invariant").validate(nan)
    with pytest.raises(NonFiniteInputError, match=r"shape \(1, 2\) has 1 NaN or inf entries; clean the input, or "
                                                  "pass validate=False"):
        get_action("invariant").validate(nan, check_finite=True)
    get_action("invariant").validate(torch.tensor([[1, 2]]), check_finite=True)  # integers are always finite


# --- batching helpers shared by every action ------------------------------------------------------------------------
def test_copies_are_stacked_copy_major_and_averaged_back():
    action = get_action("points")
    x = points(0)
    repeated = action.repeat(x, 3)
    assert repeated.shape == (3 * B, N, 3) and all(torch.equal(repeated[i * B:(i + 1) * B], x) for i in range(3))
    outputs = torch.arange(6.0 * 2).reshape(6, 2)  # 3 copies of a batch of 2
    assert torch.equal(action.mean(outputs, 3), torch.tensor([[4.0, 5.0], [6.0, 7.0]]))
    assert torch.equal(action.flatten(x), x.reshape(B, N * 3))
    assert action.batch_size(x) == B and torch.equal(action.take(x, 2), x[:2]) and action.take(x, 9).shape[0] == B
    assert action.probe(x) is x and action.spec() == "points" and action.differentiable() is action
    assert get_action("invariant").set_size(x) is None and get_action("invariant").positions(x) is None
    assert get_action("invariant").member_feature_count(symwrap.get_group("S")) is None
    assert repr(action) == "PointsAction('points')"
    with pytest.raises(ActionError, match="'points' data must be a torch.Tensor"):
        action.flatten([x])


def test_binding_takes_the_set_size_from_the_data():
    so3 = symwrap.get_group("SO3")
    assert get_action("image").bind(so3, torch.zeros(1, 1, 4, 4)) is so3
    assert get_action("points").bind(symwrap.get_group("SO3xS"), points(0)).factors[1].n == N
    with pytest.raises(IncompatibleGroupError, match="group 'S' permutes set members, but 'vector' data "
                                                     r"\(B, d\): batch, coordinates has none; use a set-like"):
        get_action("vector").bind(symwrap.get_group("S"), torch.zeros(2, 3))


def test_permute_members_moves_member_i_to_position_p_i():
    x = torch.arange(12.0).reshape(1, 4, 3)
    moved = symwrap.actions.permute_members(x, torch.tensor([[2, 0, 3, 1]]))
    assert moved[0, :, 0].tolist() == [3.0, 9.0, 0.0, 6.0]
    assert torch.equal(moved[0, 2], x[0, 0])
    with pytest.raises(ActionError, match="a permutation of 3 members cannot act on a set of 4 members"):
        symwrap.actions.permute_members(x, torch.tensor([[0, 1, 2]]))
    one_d = symwrap.actions.permute_members(torch.tensor([[5, 6, 7]]), torch.tensor([[1, 2, 0]]))
    assert one_d.tolist() == [[7, 5, 6]]


def test_an_element_per_sample_is_required():
    group = symwrap.get_group("E3xS")
    bound = group.sized(N)
    g = bound.sample(B - 1, generator=make_generator(0))
    for spec, x in [("points", points(0)), ("scalars", points(0)[..., 0]), ("vector", points(0)[:, 0]),
                    ("adjacency", torch.zeros(B, N, N)), ("image", torch.zeros(B, 1, 4, 4)),
                    ("regular", torch.zeros(B, 4))]:
        group_here = {"image": symwrap.get_group("C4"), "regular": symwrap.get_group("C4")}.get(spec, bound)
        element = g if spec not in ("image", "regular") else torch.zeros(B - 1, dtype=torch.long)
        with pytest.raises(ActionError, match=rf"'{spec}': got {B - 1} elements of {group_here.name} for a batch of "
                                              rf"{B}; pass one element per sample"):
            get_action(spec).act(group_here, element, x)


def test_meta_tensors_are_refused_by_name():
    with pytest.raises(DeviceError, match=r"'points' data is a tensor on the 'meta' device \(shape \(2, 3, 3\)\), "
                                          "which holds no values; create it with values on a real device"):
        get_action("points").validate(torch.zeros(2, 3, 3, device="meta"))
    with pytest.raises(DeviceError, match="field 'pos': 'points' data is a tensor on the 'meta' device"):
        get_action({"pos": "points"}).validate({"pos": torch.zeros(2, 3, 3, device="meta")})


# --- what a model returns -----------------------------------------------------------------------------------------
def test_describe_names_type_dtype_and_shape():
    from symwrap.actions.checks import describe

    assert describe(torch.zeros(2, 3, dtype=torch.float64)) == "a torch.float64 tensor of shape (2, 3)"
    assert describe({"b": 1, "a": 2}) == "a dict with keys ['a', 'b']"
    assert describe((1, 2)) == "a tuple of 2 item(s)" and describe([1]) == "a list of 1 item(s)"
    assert describe(None) == "None" and describe(3.0) == "a float"


def test_errors_inside_a_model_say_what_it_was_given():
    from symwrap.actions.checks import call_model

    def broken(x):
        raise ValueError("bad shape")

    with pytest.raises(symwrap.errors.BackboneError,
                       match=r"the backbone Net raised ValueError on a torch.float32 tensor of shape \(2, 3\): bad sh"
                       ) as caught:
        call_model(broken, torch.zeros(2, 3), "Net")
    assert isinstance(caught.value.__cause__, ValueError)
    with pytest.raises(symwrap.errors.BackboneError, match="the model Net raised"):
        call_model(broken, torch.zeros(2, 3), "Net", role="model")

    def refuses(x):
        raise ActionError("own error")

    with pytest.raises(ActionError, match="^own error$"):
        call_model(refuses, torch.zeros(1), "Net")
    assert call_model(lambda x: 2 * x, torch.ones(1), "Net") == 2


@pytest.mark.parametrize("output, action, match", [
    ((torch.zeros(2, 3),), "invariant", r"returned a tuple of 1 item\(s\); output='invariant' expects \(B, ...\) "
                                        r"\(a tensor\). To use one of its items, wrap the backbone first: symwrap.back"
                                        r"bones.OutputAdapter\(backbone, key=0\)"),
    ({"logits": torch.zeros(2, 3)}, "invariant", r"returned a dict with keys \['logits'\]; .*OutputAdapter\(backbone, "
                                                 r"key='logits'\), or declare a dict output"),
    ("text", "invariant", r"the backbone Net returned a str; output='invariant' expects \(B, ...\) \(a tensor\).$"),
    (torch.zeros(2, 3, dtype=torch.long), "invariant", "must be floating point \\(logits or scores, not class"),
    (torch.zeros(2, 3), {"y": "invariant"}, r"returned a torch.float32 tensor of shape \(2, 3\); "
                                            r"output=\{'y': 'invariant'\} expects"),
    (torch.zeros(3, 3), "invariant", r"returned 3 rows for a batch of 2 inputs \(a torch.float32 tensor of shape "
                                     r"\(3, 3\)\); it must return one row per input"),
    (torch.zeros(2, 5), "regular", r"returned a torch.float32 tensor of shape \(2, 5\), which does not fit "
                                   r"output='regular': 'regular' data for C4 must be \(B, 4\)"),
])
def test_backbone_outputs_are_checked_against_the_output_action(output, action, match):
    from symwrap.actions.checks import check_backbone_output

    with pytest.raises(symwrap.errors.BackboneOutputError, match=match):
        check_backbone_output(output, get_action(action), symwrap.get_group("C4"), 2, "Net")


def test_fitting_backbone_outputs_pass():
    from symwrap.actions.checks import check_backbone_output

    check_backbone_output(torch.zeros(2, 4), get_action("regular"), symwrap.get_group("C4"), 2, "Net")
    check_backbone_output(torch.zeros(2, 4, dtype=torch.complex64), get_action("invariant"), None, 2, "Net")
    check_backbone_output({"y": torch.zeros(2, 1)}, get_action({"y": "invariant"}), None, 2, "Net")
    with pytest.raises(symwrap.errors.BackboneOutputError, match="the model Net returned 3 rows"):
        check_backbone_output(torch.zeros(3, 1), get_action("invariant"), None, 2, "Net", role="model")


# --- k transformed copies of a batch ------------------------------------------------------------------------------
def test_small_finite_groups_are_enumerated_copy_by_copy():
    from symwrap.actions import group_copies

    x = torch.randn(2, 1, 4, 4, generator=make_generator(0), dtype=torch.float64)
    copies = group_copies(get_action("image"), symwrap.get_group("D4"), x, samples=3, max_exhaustive_order=8)
    assert copies.k == 8 and copies.x.shape == (16, 1, 4, 4)
    assert torch.equal(copies.elements, torch.arange(8).repeat_interleave(2))  # copy i holds element i
    assert torch.equal(copies.x[2:4], x) and copies.group == symwrap.get_group("D4")
    sampled = group_copies(get_action("image"), symwrap.get_group("D4"), x, samples=3, max_exhaustive_order=7,
                           generator=make_generator(1))
    assert sampled.k == 3 and sampled.x.shape == (6, 1, 4, 4) and sampled.elements.shape == (6,)
    again = group_copies(get_action("image"), symwrap.get_group("D4"), x, samples=3, max_exhaustive_order=7,
                         generator=make_generator(1))
    assert torch.equal(sampled.elements, again.elements)
    rotations = group_copies(get_action("points"), symwrap.get_group("SO3xS"), points(0), samples=2,
                             max_exhaustive_order=10**6, generator=make_generator(2))
    assert rotations.k == 2 and rotations.elements[0].dtype == torch.float64  # elements follow the data's dtype
    assert rotations.group.factors[1].n == N and rotations.elements[1].shape == (2 * B, N)
    meta = group_copies(get_action("points"), symwrap.get_group("SO3"), points(0).float(), samples=2,
                        max_exhaustive_order=0)
    assert meta.elements.dtype == torch.float32
    integer = group_copies(get_action("scalars"), symwrap.get_group("S"), torch.ones(2, 3, dtype=torch.long),
                           samples=2, max_exhaustive_order=6)
    assert integer.k == 6 and integer.elements.shape == (12, 3)
    for samples in (0, 2.0, True):
        with pytest.raises(symwrap.errors.ConfigError, match=f"must be an integer >= 1; got {samples!r}"):
            group_copies(get_action("points"), symwrap.get_group("SO3"), points(0), samples=samples,
                         max_exhaustive_order=0)


def test_mixing_inverse_copies_picks_or_blends_them():
    from symwrap.actions import group_copies, mix_inverse_copies

    x = torch.randn(2, 1, 4, 4, generator=make_generator(0), dtype=torch.float64)
    action, c4 = get_action("image"), symwrap.get_group("C4")
    copies = group_copies(action, c4, x, samples=1, max_exhaustive_order=4)
    pick = torch.zeros(2, 4, dtype=torch.float64)
    pick[0, 1], pick[1, 3] = 1.0, 1.0
    mixed = mix_inverse_copies(action, copies, pick)
    assert torch.equal(mixed[0], torch.rot90(x[0], -1, dims=(-2, -1)))  # g⁻¹·x for g a quarter turn
    assert torch.equal(mixed[1], torch.rot90(x[1], -3, dims=(-2, -1)))
    blended = mix_inverse_copies(action, copies, torch.full((2, 4), 0.25).float())
    assert blended.dtype == torch.float64
    assert torch.allclose(blended, sum(torch.rot90(x, k, dims=(-2, -1)) for k in range(4)) / 4)


# --- dicts of fields ----------------------------------------------------------------------------------------------
def test_dict_actions_combine_their_fields():
    action = get_action({"pos": "points", "vel": "vectors", "q": "scalars"})
    assert repr(action) == "DictAction({'pos': 'points', 'vel': 'vectors', 'q': 'scalars'})"
    assert action.layout.startswith("{'pos': (B, N, d)") and action.spec() == {"pos": "points", "vel": "vectors",
                                                                                 "q": "scalars"}
    x = {"pos": points(0), "vel": points(1), "q": torch.randn(B, N, generator=make_generator(2))}
    assert action.batch_size(x) == B and action.set_size(x) == (N, None) and action.positions(x) is x["pos"]
    assert action.probe(x) is x["pos"] and action.soft_permutations
    assert get_action({"q": "scalars", "pos": "points"}).probe({"q": x["q"].long(), "pos": x["pos"]}) is x["pos"]
    assert get_action({"q": "scalars"}).probe({"q": x["q"].long()}).dtype == torch.long
    assert get_action({"y": "invariant"}).set_size({"y": x["q"]}) is None
    assert get_action({"v": "vectors", "p": "points"}).positions({"v": x["vel"], "p": x["pos"]}) is x["pos"]
    assert get_action({"y": "invariant"}).positions({"y": x["q"]}) is None
    repeated = action.repeat(x, 2)
    assert all(torch.equal(repeated[k], torch.cat([x[k], x[k]])) for k in x)
    assert all(torch.equal(action.mean(repeated, 2)[k], x[k]) for k in x)
    assert torch.equal(action.flatten(x), torch.cat([x["pos"].flatten(1), x["vel"].flatten(1), x["q"]], 1))
    assert all(torch.equal(action.take(x, 1)[k], x[k][:1]) for k in x)
    features, adjacency, mask = action.members(x)
    assert torch.equal(features, torch.cat([x["pos"], x["vel"], x["q"][..., None]], -1).float())
    assert adjacency is None and mask is None
    assert action.member_feature_count(symwrap.get_group("SO3")) is None  # the scalars' width depends on the data
    assert get_action({"p": "points", "v": "vectors", "y": "invariant"}).member_feature_count(
        symwrap.get_group("SO3")) == 6
    with pytest.raises(ActionError, match=r"no field of \['y'\] has set members to read"):
        get_action({"y": "invariant"}).members({"y": x["q"]})
    graph_fields = get_action({"a": "adjacency", "q": "scalars"}).members({"a": torch.ones(B, N, N), "q": x["q"]})
    assert torch.equal(graph_fields[1], torch.ones(B, N, N))
    assert not get_action({"p": "points", "i": "image"}).soft_permutations
    loose = get_action({"i": "image", "y": "invariant"}).differentiable()
    assert isinstance(loose, symwrap.actions.DictAction) and loose.fields["i"].exact is False
    group = symwrap.get_group("S").sized(N)
    g = group.sample(B, generator=make_generator(3))
    by_matrix = action.permute_by_matrix(x, group.matrix(g).double())
    assert all(torch.allclose(by_matrix[k].double(), action.act(group, g, x)[k].double()) for k in x)


def test_dict_data_is_checked_field_by_field():
    with pytest.raises(ActionError, match="a dict action needs at least one field"):
        symwrap.actions.DictAction({})
    action = get_action({"pos": "points", "q": "scalars"})
    with pytest.raises(ActionError, match=r"expected a dict with keys \['pos', 'q'\]; got Tensor"):
        action.validate(points(0))
    with pytest.raises(ActionError, match=r"missing \[\], unexpected \['z'\]"):
        action.validate({"pos": points(0), "q": points(0)[..., 0], "z": points(0)})
    with pytest.raises(ActionError, match=r"all fields need the same batch size; got \{'pos': 3, 'q': 2\}"):
        action.validate({"pos": points(0), "q": torch.zeros(2, N)})
    with pytest.raises(ActionError, match=r"same number of set members; got \{'pos': 5, 'q': 4\}"):
        action.validate({"pos": points(0), "q": torch.zeros(B, 4)})
    with pytest.raises(ActionError, match=r"field 'pos': 'points' data must be \(B, N, 3\) for SO3"):
        action.validate({"pos": points(0, d=2), "q": torch.zeros(B, N)}, symwrap.get_group("SO3"))
    with pytest.raises(NonFiniteInputError, match="field 'q': .*3 NaN or inf"):
        action.validate({"pos": points(0), "q": torch.tensor([[0.0] * 4 + [float("nan")]] * 3)}, check_finite=True)
    with pytest.raises(IncompatibleGroupError, match="permutation groups"):
        get_action({"s": "set", "p": "points"}).check_group(symwrap.get_group("SO3xS"))
    get_action({"s": "points", "p": "points"}).check_group(symwrap.get_group("SO3xS"))
    action.check_nonempty(points(0))  # not a dict: left to validate
    with pytest.raises(EmptyInputError, match="field 'q'"):
        action.check_nonempty({"pos": points(0), "q": torch.zeros(B, 0)})
    with pytest.raises(ActionError, match="expected a dict"):
        action.act(symwrap.get_group("SO3"), torch.eye(3).expand(B, 3, 3), points(0))


# --- the registry ---------------------------------------------------------------------------------------------------
def test_action_registry_names_and_overrides():
    names = symwrap.list_actions()
    assert names == sorted(names) and "points" in names and "graph" in names
    points_action = get_action(" Points ")
    assert isinstance(points_action, symwrap.actions.PointsAction) and get_action(points_action) is points_action
    assert get_action("POINTS") is not get_action("points")  # a fresh action each time

    class Shout(symwrap.actions.InvariantAction):
        name = "Shout"

    symwrap.register_action("Shout")(Shout)
    assert "Shout" in symwrap.list_actions() and isinstance(get_action("shout"), Shout)
    with pytest.raises(symwrap.errors.RegistryError, match="an action is already registered as 'SHOUT'; pass overr"):
        symwrap.register_action("SHOUT")(Shout)
    symwrap.register_action("points", override=True)(Shout)
    assert isinstance(get_action("points"), Shout)
    with pytest.raises(UnknownActionError, match=r"Structured inputs take a dict such as \{'pos': 'points'"):
        get_action(3)


# --- dense adjacency ------------------------------------------------------------------------------------------------
def test_adjacency_with_edge_features_relabels_both_node_axes():
    group = symwrap.get_group("S").sized(4)
    x = torch.randn(2, 4, 4, 3, generator=make_generator(0), dtype=torch.float64)
    g = group.sample(2, generator=make_generator(1))
    moved = get_action("adjacency").act(group, g, x)
    for b in range(2):
        for i in range(4):
            for j in range(4):
                assert torch.equal(moved[b, g[b, i], g[b, j]], x[b, i, j])
    features, dense, mask = get_action("adjacency").members(x)
    assert torch.equal(dense, x.abs().sum(-1)) and mask is None
    assert torch.equal(features[..., 0], dense.sum(-1))
    assert torch.equal(features[..., 1], torch.diagonal(dense, 0, 1, 2))
    boolean = get_action("adjacency").members(torch.eye(4, dtype=torch.bool).expand(2, 4, 4))
    assert boolean[1].dtype == torch.get_default_dtype() and torch.equal(boolean[0][..., 1], torch.ones(2, 4))
    assert get_action("adjacency").member_feature_count(group) == 2
    assert get_action("adjacency").set_size(x) == (4, None)
    with pytest.raises(ActionError, match=r"an adjacency matrix must be square \(B, N, N\[, F\]\); got shape \(2, 3"):
        get_action("adjacency").validate(torch.zeros(2, 3, 4, 1))
    with pytest.raises(IncompatibleGroupError, match=r"only relabelled, so it takes permutation groups \(S, S\{n\}\); "
                                                     "got C4xS"):
        get_action("adjacency").check_group(symwrap.get_group("C4xS"))
    with pytest.raises(IncompatibleGroupError, match="got T3"):
        get_action("adjacency").check_group(symwrap.get_group("T3"))
    get_action("adjacency").check_group(symwrap.get_group("S"))
    with pytest.raises(NonFiniteInputError):
        get_action("adjacency").validate(torch.full((1, 2, 2), float("nan")), check_finite=True)


# --- neighbourhood graphs -------------------------------------------------------------------------------------------
def test_neighbourhood_graphs_point_from_source_to_target():
    from symwrap.actions import knn_graph, radius_graph

    pos = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    assert radius_graph(pos, 1.0).tolist() == [[1, 0], [0, 1]]  # the boundary counts; sorted by target
    assert radius_graph(pos, 1.0, loop=True).tolist() == [[0, 1, 0, 1, 2, 3], [0, 0, 1, 1, 2, 3]]
    assert knn_graph(pos, 1).tolist() == [[1, 0, 1, 2], [0, 1, 2, 3]]  # each node's nearest other node points to it
    assert knn_graph(pos, 1, loop=True).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    batch = torch.tensor([0, 0, 1, 1])
    assert knn_graph(pos, 5, batch).tolist() == [[1, 0, 3, 2], [0, 1, 2, 3]]  # small graphs: everyone else
    assert knn_graph(pos, 5, batch, loop=True).shape == (2, 8)
    assert radius_graph(pos, 20.0, batch).tolist() == [[1, 0, 3, 2], [0, 1, 2, 3]]
    with pytest.raises(ActionError, match="k must be >= 1; got 0"):
        knn_graph(pos, 0)
    with pytest.raises(ActionError, match=r"positions must be \(num_nodes, d\); got shape \(1, 4, 2\)"):
        radius_graph(pos[None], 1.0)
    with pytest.raises(ActionError, match=r"batch must be \(num_nodes,\) = \(4,\); got \(3,\)"):
        knn_graph(pos, 1, batch[:3])


# --- graphs ---------------------------------------------------------------------------------------------------------
def test_graph_positions_and_vector_fields_are_moved_per_graph():
    pyg = pytest.importorskip("torch_geometric.data")
    gen = make_generator(0)
    graphs = [pyg.Data(x=torch.randn(n, 2, generator=gen, dtype=torch.float64),
                       pos=torch.randn(n, 3, generator=gen, dtype=torch.float64),
                       vel=torch.randn(n, 3, generator=gen, dtype=torch.float64),
                       edge_index=torch.randint(n, (2, n), generator=gen)) for n in (3, 2)]
    batch = pyg.Batch.from_data_list(graphs)
    action = GraphAction(vector_fields=("vel",))
    group = action.bind(symwrap.get_group("E3xS"), batch)
    g = group.sample(2, generator=make_generator(1), dtype=torch.float64)
    moved = action.act(group, g, batch)
    rotation, shift, perm = group.linear_part(g), group.translation_part(g), group.permutation_part(g)
    for b, graph in enumerate(moved.to_data_list()):
        n = graphs[b].num_nodes
        for i in range(n):
            target = int(perm[b, i])
            assert torch.allclose(graph.pos[target], rotation[b] @ graphs[b].pos[i] + shift[b])
            assert torch.allclose(graph.vel[target], rotation[b] @ graphs[b].vel[i])
            assert torch.equal(graph.x[target], graphs[b].x[i])
        assert torch.equal(graph.edge_index, perm[b, :n][graphs[b].edge_index])
    assert torch.equal(moved.batch, batch.batch)
    assert torch.equal(batch.pos, torch.cat([graph.pos for graph in graphs]))  # the input is left as it was
    untouched = GraphAction(point_fields=()).act(symwrap.get_group("SO3"), rotation, batch)
    assert torch.equal(untouched.pos, batch.pos)


def test_graph_batches_report_their_sizes_and_members():
    pyg = pytest.importorskip("torch_geometric.data")
    batch = _graph_batch((3, 4))
    action = GraphAction()
    count, counts = action.set_size(batch)
    assert count == 4 and counts.tolist() == [3, 4] and action.batch_size(batch) == 2
    single = pyg.Data(pos=torch.randn(5, 3, dtype=torch.float64), edge_index=torch.tensor([[0, 1], [1, 2]]))
    assert action.batch_size(single) == 1 and action.set_size(single)[1].tolist() == [5]
    assert action.probe(single) is single.pos and action.probe(batch) is batch.pos
    assert GraphAction(point_fields=()).probe(batch) is batch.x
    assert GraphAction(point_fields=()).probe(pyg.Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2)).dtype \
        == torch.long
    features, adjacency, mask = action.members(batch)
    assert features.shape == (2, 4, 2) and adjacency.shape == (2, 4, 4) and mask.tolist() == [[1, 1, 1, 0], [1] * 4]
    assert torch.equal(features[0, :3], batch.x[:3]) and adjacency.dtype == features.dtype
    ones, _, mask = action.members(single)
    assert torch.equal(ones, torch.ones(1, 5, 1)) and mask.all()
    assert adjacency.sum() == batch.edge_index.shape[1]
    with pytest.raises(ActionError, match="graph-valued outputs are not supported"):
        action.flatten(batch)
    with pytest.raises(ActionError, match="graph-valued outputs are not supported"):
        action.mean(batch, 2)
    repeated = action.repeat(single, 3)
    assert repeated.num_graphs == 3 and torch.equal(repeated.pos, single.pos.repeat(3, 1))
    assert action.take(single, 1) is single


def test_graph_permutations_must_stay_inside_each_graph():
    batch = _graph_batch((2, 3))
    group = symwrap.get_group("S").sized(3)  # not bound to the sizes: row 0 may move node 1 to position 2
    with pytest.raises(ActionError, match="moves nodes of a graph beyond that graph's size; bind the group"):
        GraphAction().act(group, torch.tensor([[2, 0, 1], [0, 1, 2]]), batch)
    with pytest.raises(IncompatibleGroupError, match="graph positions are 2-D or 3-D; SO4 acts on R\\^4"):
        GraphAction().check_group(_Rotations4D())
    GraphAction().check_group(symwrap.get_group("O2xS"))
    GraphAction().check_group(symwrap.groups.TranslationGroup(4))  # only linear maps need 2-D or 3-D positions


class _Rotations4D(symwrap.groups.SO3):
    name, dim = "SO4", 4


# --- graphs: the optional dependency, finiteness, node counts and edge types, each with its message ------------
def test_the_graph_action_without_torch_geometric_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch_geometric.data", None)  # makes the import fail
    message = ("the 'graph' action needs the optional package 'torch_geometric', which is not installed. Install it "
               "with: pip install 'symwrap[pyg]'")
    with pytest.raises(symwrap.errors.MissingDependencyError, match=f"^{re.escape(message)}$"):
        GraphAction().validate(object())


def test_graph_validation_checks_finiteness_only_when_asked():
    pyg = pytest.importorskip("torch_geometric.data")
    graph = pyg.Data(pos=torch.tensor([[0.0, 0.0, 0.0], [float("nan"), 1.0, 0.0]]))
    GraphAction().validate(graph)
    with pytest.raises(symwrap.errors.NonFiniteInputError):
        GraphAction().validate(graph, check_finite=True)


def test_graph_validation_names_what_is_missing_or_mistyped():
    pyg = pytest.importorskip("torch_geometric.data")
    message = "the graph has no node count: give it node features data.x, positions data.pos, or set data.num_nodes"
    with pytest.raises(ActionError, match=f"^{re.escape(message)}$"):
        GraphAction().validate(pyg.Data(name="a"))
    with pytest.raises(ActionError, match=r"^'graph' data must be a torch_geometric Data or Batch; got Tensor$"):
        GraphAction().validate(torch.zeros(3, 3))
    graph = pyg.Data(pos=torch.zeros(3, 3))
    graph.edge_index = [[0, 1], [1, 0]]
    with pytest.raises(ActionError, match=r"got a list of 2 item\(s\)"):
        GraphAction().validate(graph)


def test_dict_fields_of_different_sizes_are_moved_by_groups_without_a_permutation_part():
    """Context and target points of a neural-process task: one translation moves both, whatever their counts."""
    from symwrap.errors import ActionError

    action = symwrap.get_action({"context": "points", "target": "points"})
    x = {"context": torch.randn(2, 3, 1), "target": torch.randn(2, 5, 1)}
    t1 = symwrap.get_group("T1")
    action.validate(x, t1)
    shift = torch.tensor([[0.5], [-1.0]])
    moved = action.act(t1, shift, x)
    assert torch.equal(moved["target"], x["target"] + shift[:, None])
    with pytest.raises(ActionError, match="same number of set members"):
        action.validate({"context": torch.randn(2, 3, 3), "target": torch.randn(2, 5, 3)}, symwrap.get_group("S"))
