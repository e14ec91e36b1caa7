"""symwrap.nn.permutation_interface: SoftSort, Sinkhorn, straight-through permutations and the GIN interface."""

import pytest
import torch
from helpers import make_generator as generator
from hypothesis import assume, given
from hypothesis import strategies as st

import symwrap
from symwrap.errors import ConfigError, ShapeError
from symwrap.nn import (
    GINInterface,
    hard_permutation,
    permutation_penalty,
    sinkhorn,
    soft_sort,
    straight_through_permutation,
)

seeds = st.integers(0, 2**31 - 1)


def ragged_mask(lengths: list[int], n: int) -> torch.Tensor:
    return torch.arange(n) < torch.tensor(lengths)[:, None]


def bound_group(n: int, mask: torch.Tensor | None = None):
    return symwrap.get_group("S").sized(n, None if mask is None else mask.sum(1))


def permute_graph(group, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """``P A Pᵀ``: node ``i`` moves to ``h[i]``, so edge ``(i, j)`` becomes ``(h[i], h[j])``."""
    matrix = group.matrix(h).to(adjacency.dtype)
    return matrix @ adjacency @ matrix.transpose(1, 2)


def random_graph(b: int, n: int, seed: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    upper = (torch.rand(b, n, n, generator=generator(seed)) < 0.4).triu(1)
    adjacency = (upper | upper.transpose(1, 2)).float()
    if mask is not None:
        adjacency = adjacency * (mask[:, :, None] & mask[:, None, :])
    return adjacency


# --- SoftSort and Sinkhorn ----------------------------------------------------------------------------------


def test_soft_sort_rows_sum_to_one_and_tend_to_the_hard_sort():
    scores = torch.randn(4, 6, dtype=torch.float64)
    soft = soft_sort(scores, tau=0.5)
    assert torch.allclose(soft.sum(-1), torch.ones(4, 6, dtype=torch.float64))
    hard, _ = hard_permutation(scores)
    assert torch.allclose(soft_sort(scores, tau=1e-4), hard, atol=1e-8)


def test_soft_sort_keeps_padding_last_and_apart():
    mask = ragged_mask([3, 5, 1], 6)
    scores = torch.randn(3, 6, dtype=torch.float64)
    scores[~mask] = 100.0  # padded scores would sort first if they were read
    soft = soft_sort(scores, tau=1.0, mask=mask)
    assert torch.allclose(soft.sum(-1), torch.ones(3, 6, dtype=torch.float64))
    real = mask[:, :, None] & mask[:, None, :]  # the first lengths rows are the real sorted positions
    padded = ~mask[:, :, None] & ~mask[:, None, :]
    assert torch.equal(soft[~real & ~padded], torch.zeros_like(soft[~real & ~padded]))
    eye = torch.eye(6, dtype=torch.float64).expand(3, 6, 6)
    assert torch.equal(soft[padded], eye[padded])


def test_sinkhorn_is_doubly_stochastic():
    log_alpha = torch.randn(5, 7, 7, dtype=torch.float64)
    matrix = sinkhorn(log_alpha, iterations=50)
    ones = torch.ones(5, 7, dtype=torch.float64)
    assert torch.allclose(matrix.sum(-1), ones, atol=1e-6)
    assert torch.allclose(matrix.sum(-2), ones, atol=1e-6)


def test_sinkhorn_with_padding_is_doubly_stochastic_on_the_real_block_and_identity_on_the_padded_one():
    mask = ragged_mask([4, 7, 1, 0], 7)
    log_alpha = torch.randn(4, 7, 7, dtype=torch.float64)
    log_alpha[~mask] = float("nan")  # padded rows are never read
    matrix = sinkhorn(log_alpha, iterations=50, mask=mask)
    assert torch.isfinite(matrix).all()
    ones = torch.ones(4, 7, dtype=torch.float64)
    assert torch.allclose(matrix.sum(-1), ones, atol=1e-6)
    assert torch.allclose(matrix.sum(-2), ones, atol=1e-6)
    real = mask[:, :, None] & mask[:, None, :]
    padded = ~mask[:, :, None] & ~mask[:, None, :]
    eye = torch.eye(7, dtype=torch.float64).expand(4, 7, 7)
    assert torch.equal(matrix[padded], eye[padded])
    assert torch.equal(matrix[~real & ~padded], torch.zeros_like(matrix[~real & ~padded]))


def test_sinkhorn_with_different_row_and_column_masks_matches_padded_rows_to_padded_columns_in_order():
    rows = torch.tensor([[True, True, False, False]])
    columns = torch.tensor([[False, True, False, True]])
    matrix = sinkhorn(torch.randn(1, 4, 4), iterations=30, mask=rows, column_mask=columns)
    assert torch.equal(matrix[0, 2:], torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0]]))
    assert torch.allclose(matrix.sum(-1), torch.ones(1, 4), atol=1e-5)
    with pytest.raises(ShapeError, match="as many real rows"):
        sinkhorn(torch.randn(1, 4, 4), mask=rows, column_mask=torch.tensor([[True, False, False, False]]))


# --- hard and straight-through permutations -----------------------------------------------------------------


@given(seed=seeds, n=st.integers(1, 9), b=st.integers(1, 4))
def test_hard_permutation_sorts_the_scores(seed, n, b):
    scores = torch.randn(b, n, generator=generator(seed), dtype=torch.float64)
    matrix, g = hard_permutation(scores)
    group = bound_group(n)
    group.check_element(g)
    descending = torch.sort(scores, dim=1, descending=True).values
    canonical = symwrap.get_action("scalars").act(group, group.inverse(g), scores)  # g⁻¹·s
    assert torch.equal(canonical, descending)
    assert torch.equal(matrix @ scores.unsqueeze(-1), descending.unsqueeze(-1))
    assert torch.equal(matrix, group.matrix(group.inverse(g)).to(matrix.dtype))


def test_hard_permutation_leaves_padding_in_place():
    mask = ragged_mask([3, 1, 5], 5)
    scores = torch.randn(3, 5, dtype=torch.float64)
    scores[~mask] = 1e6
    matrix, g = hard_permutation(scores, mask)
    positions = torch.arange(5).expand(3, 5)
    assert torch.equal(g[~mask], positions[~mask])
    bound_group(5, mask).check_element(g)
    sorted_scores = (matrix @ scores.unsqueeze(-1)).squeeze(-1)
    for row, length in enumerate([3, 1, 5]):
        assert torch.equal(sorted_scores[row, :length], torch.sort(scores[row, :length], descending=True).values)


def test_straight_through_forward_is_exactly_hard_and_its_gradient_reaches_the_scores():
    mask = ragged_mask([6, 4], 6)
    scores = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    hard_st, soft, g = straight_through_permutation(scores, tau=0.3, sinkhorn_iterations=10, mask=mask)
    hard, g_hard = hard_permutation(scores.detach(), mask)
    assert torch.equal(hard_st, hard)
    assert torch.equal(g, g_hard)
    ones = torch.ones(2, 6, dtype=torch.float64)
    assert torch.allclose(soft.sum(-2), ones, atol=1e-12)  # the last Sinkhorn step normalizes the columns
    assert torch.allclose(soft.sum(-1), ones, atol=1e-2)
    weights = torch.randn(2, 6, 6, dtype=torch.float64)
    (hard_st * weights).sum().backward()
    grad = scores.grad
    assert torch.isfinite(grad).all()
    assert grad[mask].abs().sum() > 0
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))


def test_straight_through_without_sinkhorn_is_soft_sort():
    scores = torch.randn(3, 5, dtype=torch.float64)
    _, soft, _ = straight_through_permutation(scores, tau=0.7, sinkhorn_iterations=0)
    assert torch.allclose(soft, soft_sort(scores, tau=0.7))


def test_permutation_penalty():
    scores = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    hard, _ = hard_permutation(scores.detach())
    assert permutation_penalty(hard.clone(), hard) == 0
    hard_st, soft, _ = straight_through_permutation(scores, tau=1.0, sinkhorn_iterations=5)
    penalty = permutation_penalty(soft, hard_st)
    assert torch.allclose(penalty, (soft - hard).pow(2).mean())
    penalty.backward()
    assert scores.grad.abs().sum() > 0  # the hard target is detached, so the gradient does not cancel


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="tau > 0"):
        soft_sort(torch.randn(2, 3), tau=0.0)
    with pytest.raises(ShapeError, match="scores"):
        hard_permutation(torch.randn(2, 3, 1))
    with pytest.raises(ShapeError, match="one shape"):
        permutation_penalty(torch.zeros(1, 2, 2), torch.zeros(1, 3, 3))
    with pytest.raises(ShapeError, match="x"):
        GINInterface(3)(torch.randn(2, 4, 2))


# --- the GIN interface --------------------------------------------------------------------------------------


def interface_inputs(seed: int, b: int, n: int, features: int, *, graph: bool, lengths: list[int] | None):
    gen = generator(seed)
    x = torch.randn(b, n, features, generator=gen)
    noise = torch.randn(b, n, 1, generator=gen)
    mask = None if lengths is None else ragged_mask(lengths, n)
    adjacency = random_graph(b, n, seed + 1, mask) if graph else None
    return x, adjacency, mask, noise


def run_permuted(model, group, h, x, adjacency, mask, noise):
    """The model on ``(h·x, h·A, h·noise)``; ``h`` keeps padded nodes in place, so the mask is unchanged."""
    act = symwrap.get_action("set").act
    moved = None if adjacency is None else permute_graph(group, h, adjacency)
    return model(act(group, h, x), moved, mask, act(group, h, noise))


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("lengths", [None, [5, 3, 1]])
def test_gin_interface_is_permutation_equivariant(graph, lengths):
    model = GINInterface(in_features=3, hidden=32, layers=3)
    x, adjacency, mask, noise = interface_inputs(0, 3, 5, 3, graph=graph, lengths=lengths)
    group = bound_group(5, mask)
    h = group.sample(3, generator=generator(1))
    scores = model(x, adjacency, mask, noise)
    moved = run_permuted(model, group, h, x, adjacency, mask, noise)
    expected = symwrap.get_action("scalars").act(group, h, scores)
    assert torch.allclose(moved, expected, atol=1e-5, rtol=1e-5)


def test_gin_interface_ignores_padding():
    model = GINInterface(in_features=2, hidden=16, layers=2)
    mask = ragged_mask([3, 2], 5)
    x, adjacency, _, noise = interface_inputs(3, 2, 5, 2, graph=True, lengths=None)
    scores = model(x, adjacency, mask, noise)
    x2, adjacency2, noise2 = x.clone(), adjacency.clone(), noise.clone()
    x2[~mask] = float("nan")
    noise2[~mask] = 50.0
    adjacency2[:, :, 3:] = 1.0  # edges from padded nodes
    adjacency2[:, 3:, :] = 1.0
    scores2 = model(x2, adjacency2, mask, noise2)
    assert torch.equal(scores2, scores)
    assert torch.equal(scores[~mask], torch.zeros_like(scores[~mask]))
    # the real part alone, unpadded, scores the same
    alone = model(x[:1, :3], adjacency[:1, :3, :3], None, noise[:1, :3])
    assert torch.allclose(alone, scores[:1, :3], atol=1e-6)


def test_gin_interface_with_isolated_nodes_and_a_single_node():
    model = GINInterface(in_features=2, hidden=16, layers=2)
    x = torch.randn(1, 4, 2)
    noise = model.sample_noise(1, 4, generator=generator(0))
    adjacency = torch.zeros(1, 4, 4)
    adjacency[0, 0, 1] = adjacency[0, 1, 0] = 1.0  # nodes 2 and 3 are isolated
    group = bound_group(4)
    h = torch.tensor([[3, 2, 0, 1]])
    scores = model(x, adjacency, None, noise)
    moved = run_permuted(model, group, h, x, adjacency, None, noise)
    assert torch.allclose(moved, symwrap.get_action("scalars").act(group, h, scores), atol=1e-5, rtol=1e-5)

    single = model(torch.randn(2, 1, 2), torch.zeros(2, 1, 1), None, model.sample_noise(2, 1))
    assert single.shape == (2, 1) and torch.isfinite(single).all()
    _, g = hard_permutation(single)
    assert torch.equal(g, torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.parametrize("graph", [False, True])
def test_noise_breaks_ties_between_identical_nodes(graph):
    model = GINInterface(in_features=2, hidden=16, layers=2)
    x = torch.ones(2, 6, 2)
    adjacency = torch.ones(2, 6, 6) - torch.eye(6) if graph else None
    scores = model(x, adjacency, None, model.sample_noise(2, 6, generator=generator(4)))
    assert all(len(set(row.tolist())) == 6 for row in scores)
    without_noise = model(x, adjacency, None, torch.zeros(2, 6, 1))
    assert torch.allclose(without_noise, without_noise[:, :1].expand(2, 6))


# --- the composed map: equivariant permutations -------------------------------------------------------------


@given(seed=seeds, n=st.integers(1, 8), graph=st.booleans(), ragged=st.booleans())
def test_sampled_permutation_is_equivariant(seed, n, graph, ragged):
    """For fixed noise, the element for ``(h·x, h·A, h·noise)`` is ``h`` composed with the element for ``x``."""
    b = 3
    torch.manual_seed(seed)
    model = GINInterface(in_features=2, hidden=16, layers=2)
    lengths = torch.randint(1, n + 1, (b,), generator=generator(seed)).tolist() if ragged else None
    x, adjacency, mask, noise = interface_inputs(seed, b, n, 2, graph=graph, lengths=lengths)
    group = bound_group(n, mask)
    h = group.sample(b, generator=generator(seed + 2))

    with torch.no_grad():
        scores = model(x, adjacency, mask, noise)
        moved_scores = run_permuted(model, group, h, x, adjacency, mask, noise)
    # float rounding differs between the two orders of summation: skip (measure-zero) near-ties
    real = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    pairs = real[:, :, None] & real[:, None, :] & ~torch.eye(n, dtype=torch.bool)
    gaps = (scores[:, :, None] - scores[:, None, :]).abs()
    assume(bool((gaps[pairs] > 1e-4).all()))

    _, g = hard_permutation(scores, mask)
    _, g_moved = hard_permutation(moved_scores, mask)
    group.check_element(g)
    assert torch.equal(g_moved, group.compose(h, g))
    # and so the canonical form is invariant: g⁻¹·x is the same for x and h·x
    act = symwrap.get_action("set").act
    moved_x = act(group, h, x)
    assert torch.equal(act(group, group.inverse(g_moved), moved_x), act(group, group.inverse(g), x))

    _, _, g_st = straight_through_permutation(moved_scores, tau=0.5, sinkhorn_iterations=3, mask=mask)
    assert torch.equal(g_st, g_moved)
