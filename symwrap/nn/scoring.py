"""Regular-representation scores of a finite group from any encoder, by scoring transformed copies."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ShapeError


class CopyScores(nn.Module):
    """``(B, |G|)`` scores of a finite group's elements, ``scores(x)[i] = encoder(g_i⁻¹·x)``, for ANY encoder
    giving one number per input (``(N, 1)``).

    They move in the regular representation by construction (copy ``i`` of ``h·x`` is copy ``h⁻¹g_i`` of
    ``x``), so the arg-max is an equivariant choice of element, exactly where the action is exact. One
    encoder call on the ``|G|·B`` copies. Column ``i`` is element ``i`` of ``group.elements()``.
    """

    def __init__(self, encoder: nn.Module, group: Any, action: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.group = group
        self.action = action

    def forward(self, x: Any) -> torch.Tensor:
        from ..actions import group_copies

        batch = self.action.batch_size(x)
        copies = group_copies(self.action, self.group, x, samples=1, max_exhaustive_order=self.group.order or 0)
        moved = self.action.act(copies.group, copies.group.inverse(copies.elements), copies.x)
        scores = self.encoder(moved)
        if not isinstance(scores, torch.Tensor) or scores.shape != (copies.k * batch, 1):
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ShapeError(f"the scoring encoder {type(self.encoder).__name__} must return one score per copy, "
                             f"({copies.k * batch}, 1); got {shape}")
        return scores.reshape(copies.k, batch).T
