import pytest
import torch
from helpers import make_generator
from hypothesis import given
from hypothesis import strategies as st

import symwrap
from symwrap.actions import GraphAction, ImageAction, get_action
from symwrap.errors import (
    ActionError,
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
