"""Convolutional conditional neural processes for 1-D regression (Gordon et al. 2020, "Convolutional
Conditional Neural Processes"), as used as the exactly equivariant baseline of Ashman et al. 2024,
"Approximately Equivariant Neural Processes" (reference code: github.com/cambridge-mlg/tnp).

A ConvCNP maps a context set ``{(x_i, y_i)}`` and target inputs ``x_t`` to a Gaussian predictive
``N(mean(x_t), std(x_t)^2)`` in three steps:

1. a SetConv encoder puts the context onto a uniform grid ``t_k = k / points_per_unit`` with RBF weights
   ``φ(t - x) = exp(-(t - x)^2 / (2 ℓ^2))``: a density channel ``Σ_i φ(t - x_i)`` and a signal channel
   ``Σ_i y_i φ(t - x_i) / (density + ε)``;
2. a 1-D CNN (``self.cnn``) processes the ``(B, 2, G)`` grid features;
3. a SetConv decoder reads the CNN output off at the target inputs, ``Σ_k φ(x_t - t_k) f(t_k)``, and a
   pointwise head gives the mean and (softplus, floored) standard deviation.

The grid sits at integer multiples of the spacing and spans the batch's context and target inputs plus a
margin, so shifting every input by a multiple of the spacing shifts the grid by whole points and the model
is exactly translation equivariant for such shifts (and approximately so for any other shift).

Hook point: :meth:`ConvCNP1d.encode` returns the grid positions and grid features, ``self.cnn`` maps
``(B, C, G)`` to ``(B, hidden, G)`` and :meth:`ConvCNP1d.decode` reads the result off at the targets, so a
module that adds fixed learnable inputs to the grid features (approximately equivariant ConvCNPs) can
either call these three pieces itself or override :meth:`ConvCNP1d.grid_features`, which
:meth:`ConvCNP1d.forward` applies between encoder and CNN (identity by default).

Train with the Gaussian negative log-likelihood :func:`symwrap.data.gp.gaussian_nll`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .egnn import _require_shape

__all__ = ["ConvCNP1d", "SetConvEncoder1d", "SetConvDecoder1d", "TransformerNP1d", "TranslationEquivariantAttention1d"]

#: added to the density before it normalises the signal channel
_DENSITY_EPS = 1e-8
#: smallest predictive standard deviation
_MIN_STD = 1e-3


def _rbf(diff: torch.Tensor, log_lengthscale: torch.Tensor) -> torch.Tensor:
    """``exp(-diff^2 / (2 ℓ^2))`` elementwise with ``ℓ = exp(log_lengthscale)``."""
    lengthscale = log_lengthscale.exp().to(diff.dtype)
    return torch.exp(-0.5 * (diff / lengthscale) ** 2)


class _RBFSetConv(nn.Module):
    """An RBF ``φ`` of learnable length scale ``exp(log_lengthscale)``, what both SetConvs weigh points with."""

    def __init__(self, init_lengthscale: float) -> None:
        super().__init__()
        if not init_lengthscale > 0:
            raise ConfigError(f"{type(self).__name__} needs init_lengthscale > 0; got {init_lengthscale}")
        self.log_lengthscale = nn.Parameter(torch.tensor(math.log(init_lengthscale)))

    @property
    def lengthscale(self) -> torch.Tensor:
        """The current RBF length scale (a scalar tensor)."""
        return self.log_lengthscale.exp()


class SetConvEncoder1d(_RBFSetConv):
    """SetConv from a 1-D context set onto grid points: ``(B, Nc, 1), (B, Nc, 1), (G,) -> (B, 2, G)``.

    Channel 0 is the density ``Σ_i m_i φ(t - x_i)``, channel 1 the normalised signal
    ``Σ_i m_i y_i φ(t - x_i) / (density + 1e-8)``, with ``m_i`` the context mask and ``φ`` an RBF of
    learnable length scale ``exp(log_lengthscale)``.

    Args:
        init_lengthscale: Initial length scale (> 0).
    """

    out_channels = 2

    def forward(
        self,
        x_context: torch.Tensor,
        y_context: torch.Tensor,
        grid: torch.Tensor,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Grid features ``(B, 2, G)`` from contexts ``x_context, y_context (B, Nc, 1)``, grid positions
        ``(G,)`` or ``(B, G)`` and an optional ``context_mask (B, Nc)`` (True for real points)."""
        diff = grid.unsqueeze(-1) - x_context[..., 0].unsqueeze(1)
        weights = _rbf(diff, self.log_lengthscale)  # (B, G, Nc)
        if context_mask is not None:
            weights = torch.where(context_mask.unsqueeze(1), weights, torch.zeros((), dtype=weights.dtype,
                                                                                   device=weights.device))
        density = weights.sum(-1)  # (B, G)
        signal = (weights @ y_context)[..., 0] / (density + _DENSITY_EPS)
        return torch.stack([density, signal], dim=1)


class SetConvDecoder1d(_RBFSetConv):
    """SetConv from grid features to 1-D target inputs: ``(G,), (B, C, G), (B, Nt, 1) -> (B, Nt, C)``,
    ``Σ_k φ(x_t - t_k) f(t_k)`` with an RBF ``φ`` of learnable length scale ``exp(log_lengthscale)``.

    Args:
        init_lengthscale: Initial length scale (> 0).
    """

    def forward(self, grid: torch.Tensor, features: torch.Tensor, x_target: torch.Tensor) -> torch.Tensor:
        """Target features ``(B, Nt, C)`` from grid positions ``(G,)`` or ``(B, G)``, grid features
        ``(B, C, G)`` and target inputs ``(B, Nt, 1)``."""
        weights = _rbf(x_target - grid.unsqueeze(-2), self.log_lengthscale)  # (B, Nt, G)
        return weights @ features.transpose(1, 2)


class ConvCNP1d(nn.Module):
    """The translation-equivariant ConvCNP for 1-D regression:
    ``(B, Nc, 1), (B, Nc, 1), (B, Nt, 1) -> mean (B, Nt, 1), std (B, Nt, 1)``.

    Example::

        model = ConvCNP1d(hidden=32, layers=4)
        mean, std = model(x_context, y_context, x_target, context_mask)
        loss = gaussian_nll(mean, std, y_target)  # from symwrap.data.gp

    Args:
        hidden: Channels of the CNN and of the decoded target features.
        layers: Number of ``Conv1d`` layers in the CNN (ReLU between them and after the last one).
        kernel_size: Odd kernel size of the convolutions ('same' padding).
        points_per_unit: Grid density; grid points sit at ``k / points_per_unit`` for integers ``k``.
        margin: How far the grid reaches beyond the smallest and largest (unmasked) context or target input
            of the batch.
        init_lengthscale: Initial length scale of both SetConvs; None for ``2 / points_per_unit``.

    Attributes:
        encoder: The :class:`SetConvEncoder1d`.
        cnn: ``nn.Sequential`` of Conv1d and ReLU, ``(B, 2, G) -> (B, hidden, G)``.
        decoder: The :class:`SetConvDecoder1d`.
        head: Pointwise MLP ``(B, Nt, hidden) -> (B, Nt, 2)`` (mean and pre-softplus std).
    """

    def __init__(
        self,
        hidden: int = 32,
        layers: int = 4,
        kernel_size: int = 9,
        points_per_unit: float = 16,
        margin: float = 0.5,
        init_lengthscale: float | None = None,
    ) -> None:
        super().__init__()
        if hidden < 1 or layers < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"ConvCNP1d needs hidden >= 1, layers >= 1 and an odd kernel_size >= 1; got "
                              f"hidden={hidden}, layers={layers}, kernel_size={kernel_size}")
        if not points_per_unit > 0 or not margin >= 0:
            raise ConfigError(f"ConvCNP1d needs points_per_unit > 0 and margin >= 0; got "
                              f"points_per_unit={points_per_unit}, margin={margin}")
        if init_lengthscale is None:
            init_lengthscale = 2.0 / points_per_unit
        self.hidden = hidden
        self.kernel_size = kernel_size
        self.points_per_unit = float(points_per_unit)
        self.margin = float(margin)
        self.encoder = SetConvEncoder1d(init_lengthscale)
        convs: list[nn.Module] = []
        channels = SetConvEncoder1d.out_channels
        for _ in range(layers):
            convs += [nn.Conv1d(channels, hidden, kernel_size, padding="same"), nn.ReLU()]
            channels = hidden
        self.cnn = nn.Sequential(*convs)
        self.decoder = SetConvDecoder1d(init_lengthscale)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    @property
    def grid_channels(self) -> int:
        """Channels ``C`` of the grid features that ``self.cnn`` takes (2: density and signal)."""
        return SetConvEncoder1d.out_channels

    def _check(
        self,
        x_context: torch.Tensor,
        y_context: torch.Tensor | None,
        x_target: torch.Tensor,
        context_mask: torch.Tensor | None,
    ) -> torch.Tensor | None:
        where = "ConvCNP1d"
        x_context = _require_shape(where, "x_context", x_context, ("B", "Nc", "1"), (None, None, 1))
        b, nc, _ = x_context.shape
        if y_context is not None:
            _require_shape(where, "y_context", y_context, ("B", "Nc", "1"), (b, nc, 1))
        _require_shape(where, "x_target", x_target, ("B", "Nt", "1"), (b, None, 1))
        if context_mask is None:
            return None
        _require_shape(where, "context_mask", context_mask, ("B", "Nc"), (b, nc))
        return context_mask.bool()

    def grid(
        self, x_context: torch.Tensor, x_target: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Grid positions ``(G,)``, shared by the batch: ``k / points_per_unit`` for the integers ``k`` from
        ``floor((lo - margin) * ppu)`` to ``ceil((hi + margin) * ppu)``, where ``lo``/``hi`` are the smallest
        and largest unmasked context input and target input of the batch (``x_context (B, Nc, 1)``,
        ``x_target (B, Nt, 1)``, ``context_mask (B, Nc)`` or None)."""
        mask = self._check(x_context, None, x_target, context_mask)
        xc = x_context[..., 0].detach()
        xt = x_target[..., 0].detach()
        if mask is not None:
            lo_c = torch.where(mask, xc, torch.full_like(xc, math.inf))
            hi_c = torch.where(mask, xc, torch.full_like(xc, -math.inf))
        else:
            lo_c = hi_c = xc
        lo = torch.cat([lo_c.flatten(), xt.flatten()]).min() if lo_c.numel() + xt.numel() else None
        hi = torch.cat([hi_c.flatten(), xt.flatten()]).max() if hi_c.numel() + xt.numel() else None
        lo_value = float(lo) if lo is not None and math.isfinite(float(lo)) else 0.0
        hi_value = float(hi) if hi is not None and math.isfinite(float(hi)) else 0.0
        k_lo = math.floor((lo_value - self.margin) * self.points_per_unit)
        k_hi = math.ceil((hi_value + self.margin) * self.points_per_unit)
        k = torch.arange(k_lo, k_hi + 1, device=x_context.device, dtype=x_context.dtype)
        return k / self.points_per_unit

    def encode(
        self,
        x_context: torch.Tensor,
        y_context: torch.Tensor,
        x_target: torch.Tensor,
        context_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid positions ``(G,)`` and the CNN's input grid features ``(B, 2, G)`` (density, signal);
        arguments as in :meth:`forward`."""
        mask = self._check(x_context, y_context, x_target, context_mask)
        grid = self.grid(x_context, x_target, mask)
        return grid, self.encoder(x_context, y_context, grid, mask)

    def grid_features(self, grid: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Hook applied by :meth:`forward` to the grid features ``(B, C, G)`` before ``self.cnn``, given the
        grid positions ``(G,)``; the identity here. Subclasses may add fixed learnable inputs."""
        return features

    def decode(self, grid: torch.Tensor, features: torch.Tensor, x_target: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std ``(B, Nt, 1)`` at ``x_target (B, Nt, 1)`` from the CNN output ``(B, hidden, G)`` on
        the grid positions ``(G,)``."""
        out = self.head(self.decoder(grid, features, x_target))
        mean, raw_std = out[..., :1], out[..., 1:]
        return mean, _MIN_STD + F.softplus(raw_std)

    def forward(
        self,
        x_context: torch.Tensor,
        y_context: torch.Tensor,
        x_target: torch.Tensor,
        context_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and std ``(B, Nt, 1)`` (std >= 1e-3).

        Args:
            x_context: Context inputs ``(B, Nc, 1)``.
            y_context: Context outputs ``(B, Nc, 1)``.
            x_target: Target inputs ``(B, Nt, 1)``.
            context_mask: ``(B, Nc)`` booleans, True for real context points, or None for all. Masked points
                have no effect (their entries must still be finite).
        """
        grid, features = self.encode(x_context, y_context, x_target, context_mask)
        # where the CNN's input sits, for modules that inject inputs of the absolute position there (a forward
        # pre-hook on ``cnn``, such as the fixed inputs of strategy="fixed_inputs")
        self.cnn.input_positions = grid.unsqueeze(-1)
        features = self.cnn(self.grid_features(grid, features))
        return self.decode(grid, features, x_target)


class TaskDictNP(nn.Module):
    """A neural process that takes a task as one dict and returns ``{"mean", "std"}``: the form symwrap's actions
    move (``input={"x_context": "points", "y_context": "scalars", "x_target": "points", "context_mask":
    "scalars"}`` under translations ``"T1"``; ``output={"mean": "scalars", "std": "scalars"}``), trained with
    ``task_loss="gaussian_nll"``.

    ``context_mask`` is optional in the dict (float or bool, 1 for real context points).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, task: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = task.get("context_mask")
        if mask is not None:
            mask = mask.reshape(mask.shape[0], -1) > 0.5 if mask.is_floating_point() else mask.reshape(
                mask.shape[0], -1).bool()
        mean, std = self.model(task["x_context"], task["y_context"], task["x_target"], mask)
        return {"mean": mean, "std": std}


def _pairwise_mlp(out_features: int, hidden: int = 16) -> nn.Sequential:
    """A small MLP of a 1-D pairwise difference: ``(..., 1) -> (..., out_features)``."""
    return nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, out_features))


class TranslationEquivariantAttention1d(nn.Module):
    """Multi-head attention between tokens at 1-D inputs that sees only the differences of the inputs:
    ``logits_h(i, j) = q_i·k_j / √d + φ_h(x_i − x_j)`` and values ``v_j + ψ(x_i − x_j)`` (per head), with
    ``φ`` and ``ψ`` small MLPs of the difference. Masked keys get ``−inf`` logits; a query without any unmasked
    key gets a zero update (no NaN).

    Args:
        hidden: Token width (a multiple of ``heads``).
        heads: Number of heads.
    """

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.logit_bias = _pairwise_mlp(heads)  # φ
        self.value_shift = _pairwise_mlp(hidden)  # ψ

    def forward(
        self,
        queries: torch.Tensor,
        x_queries: torch.Tensor,
        keys: torch.Tensor,
        x_keys: torch.Tensor,
        key_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Update ``(B, Nq, hidden)`` of tokens ``queries (B, Nq, hidden)`` at ``x_queries (B, Nq, 1)``
        attending to ``keys (B, Nk, hidden)`` at ``x_keys (B, Nk, 1)``; ``key_mask (B, Nk)`` True for real
        keys, or None."""
        b, nq, _ = queries.shape
        nk = keys.shape[1]
        h, d = self.heads, self.head_dim
        q = self.query(queries).reshape(b, nq, h, d).transpose(1, 2)  # (B, H, Nq, d)
        k = self.key(keys).reshape(b, nk, h, d).transpose(1, 2)
        v = self.value(keys).reshape(b, nk, h, d).transpose(1, 2)
        diff = x_queries.unsqueeze(2) - x_keys.unsqueeze(1)  # (B, Nq, Nk, 1)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d) + self.logit_bias(diff).permute(0, 3, 1, 2)
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask[:, None, None, :], -math.inf)
            has_key = key_mask.any(-1)  # (B,)
            # a task without real keys: finite logits for the softmax, then a zero update
            logits = logits.masked_fill(~has_key[:, None, None, None], 0.0)
        weights = torch.softmax(logits, dim=-1)
        if key_mask is not None:
            weights = weights * has_key[:, None, None, None].to(weights.dtype)
        shift = self.value_shift(diff).reshape(b, nq, nk, h, d)
        update = weights @ v + torch.einsum("bhqk,bqkhd->bhqd", weights, shift)  # (B, H, Nq, d)
        return self.out(update.transpose(1, 2).reshape(b, nq, h * d))


class _TransformerNPLayer(nn.Module):
    """Self-attention among the context tokens, then cross-attention from the target tokens to them; each
    followed by residual + LayerNorm and a residual MLP + LayerNorm."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.self_attention = TranslationEquivariantAttention1d(hidden, heads)
        self.cross_attention = TranslationEquivariantAttention1d(hidden, heads)
        self.context_norms = nn.ModuleList([nn.LayerNorm(hidden), nn.LayerNorm(hidden)])
        self.target_norms = nn.ModuleList([nn.LayerNorm(hidden), nn.LayerNorm(hidden)])
        self.context_mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))
        self.target_mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, context: torch.Tensor, x_context: torch.Tensor, target: torch.Tensor, x_target: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.context_norms[0](context + self.self_attention(context, x_context, context, x_context, mask))
        context = self.context_norms[1](context + self.context_mlp(context))
        target = self.target_norms[0](target + self.cross_attention(target, x_target, context, x_context, mask))
        target = self.target_norms[1](target + self.target_mlp(target))
        return context, target


class TransformerNP1d(nn.Module):
    """A translation-equivariant transformer neural process (TE-TNP, Ashman et al. 2024) for 1-D regression:
    ``(B, Nc, 1), (B, Nc, 1), (B, Nt, 1) -> mean (B, Nt, 1), std (B, Nt, 1)``, with the signature of
    :class:`ConvCNP1d` (so ``TaskDictNP(TransformerNP1d())`` works).

    Context tokens start from an embedding of ``y`` plus a learned context flag, target tokens from a learned
    constant; the inputs ``x`` never enter the tokens, only the attention, through learned functions of the
    pairwise differences ``x_i − x_j`` (see :class:`TranslationEquivariantAttention1d`). So shifting every input
    by any constant leaves the prediction unchanged (exactly, up to rounding). Masked context points have no
    effect; a task without any real context point gets the prior prediction of the constant target token.

    Example::

        model = TransformerNP1d(hidden=32, layers=2, heads=4)
        mean, std = model(x_context, y_context, x_target, context_mask)

    Args:
        hidden: Token width (a multiple of ``heads``).
        layers: Number of (self-attention, cross-attention) layers.
        heads: Attention heads.

    Attributes:
        embed: ``(B, Nc, 1) -> (B, Nc, hidden)``, the embedding of the context outputs.
        context_flag: ``(hidden,)`` added to every context token.
        target_token: ``(hidden,)``, every target token's start.
        context_tokens_hook: ``nn.Identity`` applied to the context tokens ``(B, Nc, hidden)`` right after the
            embedding: the place to inject per-token features at the context inputs (e.g.
            ``strategy="fixed_inputs"`` with ``inject="model.context_tokens_hook"``).
        head: Pointwise MLP ``(B, Nt, hidden) -> (B, Nt, 2)`` (mean and pre-softplus std).
    """

    def __init__(self, hidden: int = 32, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        if hidden < 1 or layers < 1 or heads < 1 or hidden % heads:
            raise ConfigError(f"TransformerNP1d needs hidden >= 1, layers >= 1, heads >= 1 and hidden a multiple "
                              f"of heads; got hidden={hidden}, layers={layers}, heads={heads}")
        self.hidden = hidden
        self.heads = heads
        self.embed = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.context_flag = nn.Parameter(0.1 * torch.randn(hidden))
        self.target_token = nn.Parameter(0.1 * torch.randn(hidden))
        self.context_tokens_hook = nn.Identity()
        self.blocks = nn.ModuleList([_TransformerNPLayer(hidden, heads) for _ in range(layers)])
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def _check(self, x_context: torch.Tensor, y_context: torch.Tensor, x_target: torch.Tensor,
               context_mask: torch.Tensor | None) -> torch.Tensor | None:
        where = "TransformerNP1d"
        x_context = _require_shape(where, "x_context", x_context, ("B", "Nc", "1"), (None, None, 1))
        b, nc, _ = x_context.shape
        _require_shape(where, "y_context", y_context, ("B", "Nc", "1"), (b, nc, 1))
        _require_shape(where, "x_target", x_target, ("B", "Nt", "1"), (b, None, 1))
        if context_mask is None:
            return None
        _require_shape(where, "context_mask", context_mask, ("B", "Nc"), (b, nc))
        return context_mask.bool()

    def forward(
        self,
        x_context: torch.Tensor,
        y_context: torch.Tensor,
        x_target: torch.Tensor,
        context_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and std ``(B, Nt, 1)`` (std >= 1e-3); arguments as in :meth:`ConvCNP1d.forward`."""
        mask = self._check(x_context, y_context, x_target, context_mask)
        context = self.context_tokens_hook(self.embed(y_context) + self.context_flag)
        target = self.target_token.expand(x_target.shape[0], x_target.shape[1], self.hidden)
        for block in self.blocks:
            context, target = block(context, x_context, target, x_target, mask)
        out = self.head(target)
        mean, raw_std = out[..., :1], out[..., 1:]
        return mean, _MIN_STD + F.softplus(raw_std)
