"""How REMUL weighs its losses: GradNorm (Chen et al. 2018) and the automatic per-symmetry
weights of Kim et al. (arXiv 2306.00356). Both keep their state in buffers, so it is saved
with the model and not touched by the user's optimizer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class GradNorm(nn.Module):
    """Loss weights w_i adapted so that ‖∇_W w_i·L_i‖ on the shared parameters W tracks
    mean_j ‖∇_W w_j·L_j‖ · r_i^a, with r_i the loss's progress L_i(t)/L_i(0) relative to the
    mean progress: a loss that falls slower gets more weight. The weights stay positive and
    keep their initial sum.
    """

    def __init__(self, initial: Sequence[float], asymmetry: float = 1.5, lr: float = 0.025) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor([float(w) for w in initial], dtype=torch.float64))
        self.register_buffer("initial_losses", torch.zeros(len(initial), dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.total = float(sum(initial))
        self.asymmetry = asymmetry
        self.lr = lr

    def update(self, losses: Sequence[torch.Tensor], shared: Sequence[torch.Tensor]) -> None:
        """One step of the weights from the current (unweighted) losses; call before ``backward``."""
        norms = []
        for loss in losses:
            grads = torch.autograd.grad(loss, list(shared), retain_graph=True, allow_unused=True)
            squares = [g.double().pow(2).sum() for g in grads if g is not None]
            norms.append(torch.stack(squares).sum().sqrt() if squares else torch.zeros((), dtype=torch.float64))
        norms_t = torch.stack(norms).to(self.weights.device)
        values = torch.stack([loss.detach().double() for loss in losses]).to(self.weights.device)
        if int(self.steps) == 0:
            self.initial_losses.copy_(values.clamp_min(1e-12))
        progress = values / self.initial_losses
        relative = progress / progress.mean().clamp_min(1e-12)
        weighted_norms = self.weights * norms_t
        target = weighted_norms.mean() * relative.pow(self.asymmetry)
        step = torch.sign(weighted_norms - target) * norms_t / norms_t.sum().clamp_min(1e-12)
        weights = (self.weights - self.lr * self.total * step).clamp_min(1e-3 * self.total / len(norms))
        self.weights.copy_(weights * self.total / weights.sum())
        self.steps += 1


class SymmetryLevels(nn.Module):
    """Per-group weights β_i = β · (R_i / min_j R_j)^(−p) after a warm-up of equal weights,
    with R_i the running mean of group i's equivariance loss (Kim et al., arXiv 2306.00356):
    the less the data lets a model respect a symmetry, the less it is enforced."""

    def __init__(self, groups: int, beta: float, warmup_steps: int, power: float, momentum: float) -> None:
        super().__init__()
        self.register_buffer("running", torch.zeros(groups, dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.beta, self.warmup_steps, self.power, self.momentum = beta, warmup_steps, power, momentum

    def update(self, losses: Sequence[torch.Tensor]) -> None:
        """Fold the current equivariance losses into the running means."""
        values = torch.stack([loss.detach().double() for loss in losses]).to(self.running.device)
        if int(self.steps) == 0:
            self.running.copy_(values)
        else:
            self.running.mul_(self.momentum).add_((1 - self.momentum) * values)
        self.steps += 1

    def weights(self) -> torch.Tensor:
        """The current β_i (float64)."""
        if int(self.steps) < max(self.warmup_steps, 1):
            return torch.full_like(self.running, self.beta)
        levels = self.running.clamp_min(1e-12)
        return self.beta * (levels / levels.min()).pow(-self.power)
