"""The S_n interface network of probabilistic symmetrization (Kim et al. 2023, "Learning Probabilistic
Symmetrization for Architecture Agnostic Equivariance", arXiv 2306.02866).

A small permutation-equivariant network (:class:`GINInterface`) reads the input and i.i.d. noise per node and
gives one score per node; sorting the scores picks a permutation. Scores move with the nodes,
``scores(h·x, h·noise) = h·scores(x, noise)``, so the permutation picked for ``h·x`` is ``h`` composed with the
one picked for ``x``: the distribution over permutations is equivariant, as symmetrization needs. Sorting is
not differentiable, so training uses a straight-through estimator (:func:`straight_through_permutation`): the
forward value is the hard permutation matrix, the gradient that of a relaxed one, SoftSort (Prillo &
Eisenschlos 2020, arXiv 2006.16038) refined by :func:`sinkhorn`, kept close to the hard matrix by
:func:`permutation_penalty`.

Conventions, for ``scores (B, N)``:

* The *sorting matrix* ``P (B, N, N)`` has ``P[b, k, j] = 1`` when member ``j`` has the ``k``-th largest
  score, so ``P @ x`` lists the members by descending score. :func:`soft_sort` and :func:`sinkhorn` relax it
  (rows: sorted positions, columns: members).
* The *element* ``g (B, N)`` is the argsort, ``g[b, k] = j`` for the same ``j``, read as an element of
  :class:`~symwrap.groups.permutations.PermutationGroup`, where member ``k`` moves to position ``g[k]``. It
  is the element that brought the sorted (canonical) set to the input: ``g⁻¹·x = P @ x`` (``P`` is
  ``group.matrix(group.inverse(g))``), which is how symwrap's strategies use sampled elements,
  ``g·f(g⁻¹·x)``. Its equivariance reads ``g(h·x) = group.compose(h, g(x))``.
* Ragged batches: ``mask (B, N)`` is True for real members. Padded members sort after every real one, in
  their original order, and never mix with real ones in any matrix here: the padded block of ``P`` matches
  the ``r``-th padded sorted position to the ``r``-th padded member. With symwrap's layout (real members
  first, as in ``PermutationGroup.sized(N, lengths)``) that block is the identity and ``g`` leaves the padded
  positions in place, so ``g`` belongs to the group bound to ``lengths = mask.sum(1)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, ShapeError
from .egnn import _require_shape

__all__ = [
    "GINInterface",
    "hard_permutation",
    "permutation_penalty",
    "sinkhorn",
    "soft_sort",
    "straight_through_permutation",
]


def _check_scores(where: str, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """Validate ``scores (B, N)`` and ``mask (B, N)``; return the mask as booleans."""
    _require_shape(where, "scores", scores, ("B", "N"), (None, None))
    if not torch.is_floating_point(scores):
        raise ShapeError(f"{where} takes floating-point scores; got dtype {scores.dtype}")
    if mask is None:
        return None
    _require_shape(where, "mask", mask, ("B", "N"), tuple(scores.shape))
    return mask.bool()


def _check_tau(where: str, tau: float) -> None:
    if not tau > 0:
        raise ConfigError(f"{where} needs a temperature tau > 0; got tau={tau}")


def _descending_order(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, N)`` argsort: position ``k`` of the descending sort holds member ``order[k]``. Ties keep their
    original order; padded members come after every real one (even a real ``-inf``), in their original order."""
    if mask is None:
        return torch.argsort(scores, dim=1, descending=True, stable=True)
    keys = scores.masked_fill(~mask, float("-inf"))
    order = torch.argsort(keys, dim=1, descending=True, stable=True)
    padded_last = torch.argsort((~mask).gather(1, order).to(torch.uint8), dim=1, stable=True)
    return order.gather(1, padded_last)


def _sorted_mask(mask: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` booleans: True for the sorted positions that real members fill (the first ``mask.sum(1)``)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    return positions < mask.sum(1, keepdim=True)


def _padded_matching(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``(B, N, N)`` booleans pairing the ``r``-th padded row with the ``r``-th padded column."""
    row_rank = torch.cumsum(~rows, dim=1) - 1
    column_rank = torch.cumsum(~columns, dim=1) - 1
    same_rank = row_rank[:, :, None] == column_rank[:, None, :]
    return same_rank & ~rows[:, :, None] & ~columns[:, None, :]


def _mask_log_matrix(log_alpha: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Keep ``log_alpha`` on the real block; the padded block becomes the log of its 0/1 matching (0 on the
    pairs, ``-inf`` elsewhere), and real-padded entries ``-inf``."""
    real = rows[:, :, None] & columns[:, None, :]
    padded = torch.zeros((), dtype=log_alpha.dtype, device=log_alpha.device)
    outside = torch.full((), float("-inf"), dtype=log_alpha.dtype, device=log_alpha.device)
    return torch.where(real, log_alpha, torch.where(_padded_matching(rows, columns), padded, outside))


def _soft_sort_logits(scores: torch.Tensor, tau: float, mask: torch.Tensor | None) -> torch.Tensor:
    """SoftSort logits ``-|sorted_i - s_j| / tau``, masked as in :func:`_mask_log_matrix`."""
    if mask is not None:
        # garbage in padded scores (inf, NaN) must not reach the real block or the gradient
        scores = torch.where(mask, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    sorted_scores = scores.gather(1, _descending_order(scores, mask))
    logits = -(sorted_scores[:, :, None] - scores[:, None, :]).abs() / tau
    return logits if mask is None else _mask_log_matrix(logits, _sorted_mask(mask), mask)


def soft_sort(scores: torch.Tensor, tau: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SoftSort (Prillo & Eisenschlos 2020): a row-stochastic relaxation of the descending sorting matrix.

    Row ``i`` is ``softmax_j(-|sorted_i - s_j| / tau)``, where ``sorted`` is ``scores`` sorted in descending
    order. As ``tau -> 0`` it tends to the hard sorting matrix of :func:`hard_permutation` (ties aside).

    Args:
        scores: Scores ``(B, N)``.
        tau: Temperature, > 0.
        mask: ``(B, N)`` booleans, True for real members, or None. Rows of real sorted positions put all
            their mass on real members; the padded block is the 0/1 matching of the module docstring
            (the identity for padding at the end).

    Returns:
        ``(B, N, N)``: rows are sorted positions, columns members; every row sums to 1.
    """
    mask = _check_scores("soft_sort", scores, mask)
    _check_tau("soft_sort", tau)
    return torch.softmax(_soft_sort_logits(scores, tau, mask), dim=-1)


def sinkhorn(
    log_alpha: torch.Tensor,
    iterations: int = 20,
    mask: torch.Tensor | None = None,
    column_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sinkhorn normalization in log space: alternately normalize the rows and the columns of ``exp(log_alpha)``.

    Each iteration normalizes the rows, then the columns, so the columns sum to 1 exactly and the rows
    approximately (to within the convergence of ``iterations`` steps).

    Args:
        log_alpha: Log-weights ``(B, N, N)``; ``-inf`` entries stay 0.
        iterations: Number of row-and-column normalizations, >= 0 (0 returns ``exp(log_alpha)``).
        mask: ``(B, N)`` booleans, True for real rows, or None for all rows real.
        column_mask: ``(B, N)`` booleans, True for real columns; None uses ``mask``. Each sample needs as
            many real columns as real rows.

    Returns:
        ``(B, N, N)``, doubly stochastic on the real block and 0 between real and padded rows and columns.
        The padded block is the 0/1 matching of the ``r``-th padded row with the ``r``-th padded column (the
        identity when the masks agree), so the whole matrix stays doubly stochastic and a permutation on
        the padded part.
    """
    where = "sinkhorn"
    _require_shape(where, "log_alpha", log_alpha, ("B", "N", "N"), (None, None, None))
    if log_alpha.shape[1] != log_alpha.shape[2]:
        raise ShapeError(f"{where} takes square log_alpha (B, N, N); got shape {tuple(log_alpha.shape)}")
    if iterations < 0:
        raise ConfigError(f"{where} needs iterations >= 0; got {iterations}")
    if mask is not None or column_mask is not None:
        b, n = log_alpha.shape[:2]
        rows = mask if mask is not None else torch.ones(b, n, dtype=torch.bool, device=log_alpha.device)
        columns = column_mask if column_mask is not None else rows
        _require_shape(where, "mask", rows, ("B", "N"), (b, n))
        _require_shape(where, "column_mask", columns, ("B", "N"), (b, n))
        rows, columns = rows.bool(), columns.bool()
        if not torch.equal(rows.sum(1), columns.sum(1)):
            raise ShapeError(f"{where} needs as many real rows as real columns in every sample; got "
                             f"{rows.sum(1).tolist()} rows and {columns.sum(1).tolist()} columns")
        log_alpha = _mask_log_matrix(log_alpha, rows, columns)
    for _ in range(iterations):
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-1, keepdim=True)
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-2, keepdim=True)
    return log_alpha.exp()


def hard_permutation(scores: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The permutation that sorts ``scores`` in descending order, as a matrix and as group elements.

    Args:
        scores: Scores ``(B, N)``.
        mask: ``(B, N)`` booleans, True for real members, or None. Padded members sort last, in their
            original order (in place, for padding at the end).

    Returns:
        The 0/1 sorting matrix ``P (B, N, N)`` in the dtype of ``scores`` (``P @ x`` sorts ``x``), and the
        elements ``g (B, N)`` of S_N in symwrap's convention with ``g⁻¹·x = P @ x`` (see the module
        docstring).
    """
    mask = _check_scores("hard_permutation", scores, mask)
    order = _descending_order(scores, mask)
    matrix = nn.functional.one_hot(order, scores.shape[1]).to(scores.dtype)
    return matrix, order


def straight_through_permutation(
    scores: torch.Tensor, tau: float, sinkhorn_iterations: int = 20, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard sorting permutation with the gradient of its relaxation (SoftSort, then Sinkhorn).

    Args:
        scores: Scores ``(B, N)``.
        tau: SoftSort temperature, > 0.
        sinkhorn_iterations: Sinkhorn iterations applied to the SoftSort logits (0 keeps plain SoftSort).
        mask: ``(B, N)`` booleans, True for real members, or None.

    Returns:
        ``(hard, soft, elements)``: ``hard (B, N, N)`` equals the sorting matrix of :func:`hard_permutation`
        exactly in value and carries the gradient of ``soft``; ``soft (B, N, N)`` is the relaxed matrix (use
        it in :func:`permutation_penalty`); ``elements (B, N)`` are the S_N elements of :func:`hard_permutation`.
    """
    where = "straight_through_permutation"
    mask = _check_scores(where, scores, mask)
    _check_tau(where, tau)
    logits = _soft_sort_logits(scores, tau, mask)
    if sinkhorn_iterations == 0:
        soft = torch.softmax(logits, dim=-1)
    else:
        # the logits are already masked; the first row normalization is SoftSort's softmax
        soft = sinkhorn(logits, sinkhorn_iterations)
    hard, elements = hard_permutation(scores.detach(), mask)
    return hard + (soft - soft.detach()), soft, elements


def permutation_penalty(soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between a relaxed and a hard permutation matrix; training on it keeps the
    relaxation (and so the straight-through gradient) close to the permutation actually used.

    Args:
        soft: Relaxed matrices ``(B, N, N)``.
        hard: Hard matrices of the same shape; treated as a constant target (detached), so the straight-through
            ``hard`` of :func:`straight_through_permutation` can be passed as it is.

    Returns:
        A scalar, zero when ``soft == hard``.
    """
    if soft.shape != hard.shape:
        raise ShapeError(f"permutation_penalty takes soft and hard of one shape; got {tuple(soft.shape)} "
                         f"and {tuple(hard.shape)}")
    return (soft - hard.detach().to(soft.dtype)).pow(2).mean()


def _update(hidden: int) -> nn.Sequential:
    """Pre-norm MLP of a residual update. The norm is per node, so it keeps the equivariance, and it keeps
    the scale of sums over many neighbours in check: without it, dense graphs push every unit into the
    flat part of the ReLU at initialization and all nodes get the same score, noise or not."""
    return nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))


class GINInterface(nn.Module):
    """Permutation-equivariant scores ``(B, N)`` from node features, an optional graph and per-node noise.

    The features and the noise are concatenated and embedded, then ``layers`` updates run:

    * with a dense adjacency ``A``, GIN (Xu et al. 2019): ``h ← h + MLP((1 + ε) h + A h)``, ``ε`` learned per
      layer (``A`` may hold edge weights; ``(A h)_i = Σ_j A_ij h_j``);
    * without one, a DeepSets-style set network: ``h ← h + MLP(h + mean of h over the real members)``.

    Each MLP starts with a per-node LayerNorm; with the residual connection this keeps the per-node noise
    visible to the scores however dense the graph. A final MLP gives one score per node.

    Every step is per node or a sum/mean over nodes, so ``scores(P x, P A Pᵀ, P noise) = P scores(x, A, noise)``
    for every permutation ``P``. The noise is i.i.d. per node, so its distribution is invariant, and it breaks
    ties between identical nodes. Padded nodes (``mask`` False) neither send nor receive messages, are left out
    of the mean and score 0.

    Args:
        in_features: Node features ``F``.
        hidden: Width of the node features.
        layers: Number of message-passing (or set) updates, >= 1.
        noise_scale: Standard deviation of the noise drawn by :meth:`sample_noise`.
        noise_dim: Noise channels per node.
    """

    def __init__(
        self, in_features: int, hidden: int = 64, layers: int = 3, noise_scale: float = 1.0, noise_dim: int = 1
    ) -> None:
        super().__init__()
        if in_features < 0 or hidden < 1 or layers < 1 or noise_dim < 0 or in_features + noise_dim < 1:
            raise ConfigError(
                "GINInterface needs in_features >= 0, hidden >= 1, layers >= 1, noise_dim >= 0 and at least one "
                f"input channel; got in_features={in_features}, hidden={hidden}, layers={layers}, "
                f"noise_dim={noise_dim}"
            )
        self.in_features = in_features
        self.hidden = hidden
        self.noise_scale = noise_scale
        self.noise_dim = noise_dim
        self.embedding = nn.Linear(in_features + noise_dim, hidden)
        self.epsilon = nn.Parameter(torch.zeros(layers))
        self.updates = nn.ModuleList(_update(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def sample_noise(
        self,
        batch: int,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """I.i.d. Gaussian noise ``(batch, n, noise_dim)`` with standard deviation ``noise_scale``.

        Args:
            batch: Batch size ``B``.
            n: Nodes per sample ``N``.
            generator: Random generator, or None for the global one.
            device: Device of the noise.
            dtype: Floating dtype of the noise (the default dtype if None).
        """
        noise = torch.randn(batch, n, self.noise_dim, generator=generator, device=device, dtype=dtype)
        return self.noise_scale * noise

    def forward(
        self,
        x: torch.Tensor,
        adjacency: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores ``(B, N)``, one per node.

        Args:
            x: Node features ``(B, N, F)``.
            adjacency: Dense adjacency (or edge weights) ``(B, N, N)``, or None for a set network.
            mask: ``(B, N)`` booleans, True for real nodes, or None when every node is real.
            noise: ``(B, N, noise_dim)``, or None to draw it with :meth:`sample_noise` from the global
                random generator. Pass it to control the randomness (the same noise, permuted with the
                nodes, gives permuted scores).
        """
        where = "GINInterface"
        x = _require_shape(where, "x", x, ("B", "N", "F"), (None, None, self.in_features))
        b, n, _ = x.shape
        if noise is None:
            noise = self.sample_noise(b, n, device=x.device, dtype=x.dtype)
        _require_shape(where, "noise", noise, ("B", "N", "noise_dim"), (b, n, self.noise_dim))
        if adjacency is not None:
            _require_shape(where, "adjacency", adjacency, ("B", "N", "N"), (b, n, n))
        if mask is not None:
            _require_shape(where, "mask", mask, ("B", "N"), (b, n))
            mask = mask.bool()

        h = torch.cat([x, noise.to(x.dtype)], dim=-1)
        zero = torch.zeros((), dtype=h.dtype, device=h.device)
        if mask is not None:
            node = mask.unsqueeze(-1)
            h = torch.where(node, h, zero)  # torch.where, not a product: padding may hold NaN
        h = self.embedding(h)
        if adjacency is not None:
            adjacency = adjacency.to(h.dtype)
            if mask is not None:
                adjacency = torch.where(mask[:, :, None] & mask[:, None, :], adjacency, zero)
        members = (mask.sum(1, keepdim=True) if mask is not None else torch.full((b, 1), n, device=h.device))
        members = members.clamp_min(1).to(h.dtype).unsqueeze(-1)  # (B, 1, 1)

        for epsilon, update in zip(self.epsilon, self.updates):
            if mask is not None:
                h = torch.where(node, h, zero)
            if adjacency is None:
                h = h + update(h + h.sum(1, keepdim=True) / members)
            else:
                h = h + update((1 + epsilon) * h + adjacency @ h)
        scores = self.head(h).squeeze(-1)
        return scores if mask is None else torch.where(mask, scores, zero)
