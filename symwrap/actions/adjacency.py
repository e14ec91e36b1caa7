"""Dense graphs: an adjacency matrix (B, N, N) or edge-feature tensor (B, N, N, F) whose rows and
columns are relabelled together by a permutation: ``(g·A)[p[i], p[j]] = A[i, j]``.

This is the input of a backbone that reads a whole graph at once (an MLP over the flattened
matrix, a ViT over it as an image). Graphs padded to N nodes are graphs with extra isolated
nodes, so permuting all N positions is a symmetry of the padded input too.
"""

from __future__ import annotations

import torch

from ..errors import ActionError, IncompatibleGroupError
from ..groups import Group
from .base import Action, by_matrix, permute_members


class AdjacencyAction(Action):
    """Dense adjacency matrices (B, N, N) or (B, N, N, F): rows and columns permuted together."""

    name = "adjacency"
    soft_permutations = True
    layout = "(B, N, N) or (B, N, N, F): batch, nodes, nodes[, edge features]"

    def check_group(self, group):
        if group.has_linear or group.has_translation or not group.has_permutation:
            raise IncompatibleGroupError(
                f"an adjacency matrix is only relabelled, so it takes permutation groups (S, S{{n}}); got {group.name}"
            )

    def validate(self, x, group=None, *, check_finite=False):
        x = self._require_tensor(x)
        self._require_ndim(x, (3, 4))
        if x.shape[1] != x.shape[2]:
            raise ActionError(f"an adjacency matrix must be square (B, N, N[, F]); got shape {tuple(x.shape)}")
        self.check_nonempty(x)
        if check_finite:
            self._require_finite(x)

    def set_size(self, x):
        return int(x.shape[1]), None

    def act(self, group, g, x):
        self._check_element_count(g, group, x.shape[0])
        permutation = group.permutation_part(g)
        rows = permute_members(x, permutation)
        return permute_members(rows.transpose(1, 2), permutation).transpose(1, 2)

    def permute_by_matrix(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return by_matrix(x, matrix, lambda m, a: m @ a @ m.transpose(1, 2))
        return by_matrix(x, matrix, lambda m, a: torch.einsum("bij,bjkf,blk->bilf", m, a, m))

    def member_feature_count(self, group: Group) -> int:
        return 2

    def members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        """Node features (the degree, and the node's self-loop weight) and the (B, N, N) adjacency, in floating
        point even for integer or boolean adjacency matrices."""
        if not torch.is_floating_point(x):
            x = x.to(torch.get_default_dtype())
        adjacency = x if x.ndim == 3 else x.abs().sum(-1)
        degree = adjacency.sum(-1, keepdim=True)
        loops = torch.diagonal(adjacency, dim1=1, dim2=2).unsqueeze(-1)
        return torch.cat([degree, loops], dim=-1), adjacency, None
