"""A plain transformer over the particles of a system: the unconstrained backbone that REMUL,
symmetry cloning and probabilistic symmetrization make (approximately) equivariant.

It is permutation-equivariant (no positional encoding) but not rotation- or
translation-equivariant: it reads raw coordinates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import ShapeError


class ParticleTransformer(nn.Module):
    """``{"pos": (B, N, d), "vel": (B, N, d), "charge": (B, N, 1)} -> (B, N, d)`` predicted positions.

    Each particle's fields are concatenated into one token, embedded linearly, passed through
    a pre-norm :class:`torch.nn.TransformerEncoder`, and read out as a displacement added to
    its position (``pos + Δ``).

    Args:
        in_features: Features per particle once the fields are concatenated (3 + 3 + 1 = 7 for
            the charged N-body system).
        dim: Dimension of the positions (the output).
        hidden: Token width.
        layers: Encoder layers.
        heads: Attention heads.
        feedforward: Width of each layer's feed-forward block (default ``2 * hidden``).
        keys: The dict fields read, in order; the first is the position that the displacement
            is added to. Other keys are ignored.
    """

    def __init__(self, in_features: int = 7, dim: int = 3, hidden: int = 64, layers: int = 4, heads: int = 4,
                 feedforward: int | None = None, keys: Sequence[str] = ("pos", "vel", "charge")) -> None:
        super().__init__()
        self.keys = tuple(keys)
        self.in_features = in_features
        self.embed = nn.Linear(in_features, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, feedforward or 2 * hidden, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, dim)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Predicted positions ``(B, N, dim)``."""
        missing = [key for key in self.keys if key not in inputs]
        if missing:
            raise ShapeError(f"ParticleTransformer reads fields {list(self.keys)}; missing {missing}")
        fields = [inputs[key] if inputs[key].ndim == 3 else inputs[key].unsqueeze(-1) for key in self.keys]
        tokens = torch.cat(fields, dim=-1)
        if tokens.shape[-1] != self.in_features:
            widths = {key: field.shape[-1] for key, field in zip(self.keys, fields)}
            raise ShapeError(
                f"ParticleTransformer was built for {self.in_features} features per particle; "
                f"the fields give {tokens.shape[-1]} ({widths})"
            )
        hidden = self.norm(self.encoder(self.embed(tokens)))
        return inputs[self.keys[0]] + self.head(hidden)
