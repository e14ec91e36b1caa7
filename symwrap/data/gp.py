"""Synthetic 1-D Gaussian-process regression tasks with a non-stationary Gibbs kernel.

This is the synthetic regression setting of Ashman et al. (2024), "Approximately Equivariant Neural
Processes" (NeurIPS 2024, arXiv 2406.13488): each task is a function drawn from a zero-mean GP prior
whose kernel is the non-stationary Gibbs kernel

    k(x, x') = σ² sqrt(2 l(x) l(x') / (l(x)² + l(x')²)) exp(−(x − x')² / (l(x)² + l(x')²)),

with a length-scale function that switches between :data:`LONG_LENGTHSCALE` = 4.0 and
:data:`SHORT_LENGTHSCALE` = 0.1 at a changepoint ``c`` drawn from :data:`CHANGEPOINTS` = {−1, 0, 1},
in a direction drawn per task (``l(x) = 4.0`` for ``x < c`` and 0.1 for ``x ≥ c``, or the reverse).
With a constant length scale ``l`` the Gibbs kernel is the RBF kernel ``σ² exp(−(x − x')² / (2 l²))``.

The data is translation equivariant only up to the changepoint: shifting every input *and* the
changepoint by a constant (``shift``) gives the same distribution of tasks, which is how the tasks
test a model outside its training domain.

* :func:`sample_gp_tasks` draws a batch of tasks (:class:`GPTasks`): a random number of context points
  per task (padded, with a mask), targets, and noisy observations.
* :func:`gp_posterior` and :func:`gp_log_likelihood` give the exact posterior predictive of the
  generating GP: the best any model can do on these tasks.
* :func:`gaussian_nll` is the mean negative Gaussian log-likelihood, a task loss.

Sampling and the posterior run in float64 whatever the output dtype. Random draws come from a CPU
:class:`torch.Generator`, so the same seed gives the same tasks on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch

from ..errors import ConfigError, InputDtypeError, ShapeError
from ..losses import gaussian_nll  # noqa: F401 - the task loss lives with the other losses

__all__ = [
    "CHANGEPOINTS",
    "GP_JITTER",
    "LONG_LENGTHSCALE",
    "SHORT_LENGTHSCALE",
    "GPTasks",
    "gaussian_nll",
    "gibbs_kernel",
    "gp_log_likelihood",
    "gp_posterior",
    "sample_gp_tasks",
    "switching_lengthscale",
]

#: the changepoints a task's length-scale function switches at (one drawn uniformly per task)
CHANGEPOINTS: tuple[float, ...] = (-1.0, 0.0, 1.0)
#: the long length scale of the Gibbs kernel
LONG_LENGTHSCALE = 4.0
#: the short length scale of the Gibbs kernel
SHORT_LENGTHSCALE = 0.1
#: the jitter added to the diagonal of the latent covariance (sampling and posterior alike)
GP_JITTER = 1e-6
#: the kernel variance σ² of the generating GP
_VARIANCE = 1.0

LengthscaleFn = Callable[[torch.Tensor], torch.Tensor]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def switching_lengthscale(
    changepoint: torch.Tensor | float,
    long_left: torch.Tensor | bool,
    *,
    long: float = LONG_LENGTHSCALE,
    short: float = SHORT_LENGTHSCALE,
) -> LengthscaleFn:
    """The length-scale function that switches between ``long`` and ``short`` at ``changepoint``.

    Args:
        changepoint: the changepoint ``c``, a number or one per task, shape (B,).
        long_left: ``True`` for ``l(x) = long`` when ``x < c`` and ``short`` when ``x ≥ c``; ``False``
            for the reverse. A bool or one per task, shape (B,).
        long: the long length scale (4.0).
        short: the short length scale (0.1).

    Returns:
        A function mapping inputs of shape (B, ...) (or any shape, for a scalar changepoint and
        direction) to their length scales, same shape and dtype.

    Raises:
        ConfigError: a length scale that is not a finite number > 0.
    """
    for name, value in (("long", long), ("short", short)):
        if not _is_number(value) or value <= 0:
            raise ConfigError(f"switching_lengthscale: {name} must be a finite number > 0; got {value!r}")
    changepoint = torch.as_tensor(changepoint)
    long_left = torch.as_tensor(long_left, dtype=torch.bool)

    def lengthscale(x: torch.Tensor) -> torch.Tensor:
        c = changepoint.to(device=x.device, dtype=x.dtype)
        left = long_left.to(device=x.device)
        trailing = (1,) * (x.ndim - 1)
        c = c.reshape(*c.shape, *trailing) if c.ndim else c
        left = left.reshape(*left.shape, *trailing) if left.ndim else left
        is_long = (x < c) == left
        return torch.where(is_long, torch.as_tensor(long, dtype=x.dtype), torch.as_tensor(short, dtype=x.dtype))

    return lengthscale


def gibbs_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor,
    lengthscale_fn: LengthscaleFn | float,
    variance: float = 1.0,
) -> torch.Tensor:
    """The non-stationary Gibbs kernel matrix between two sets of 1-D inputs.

    ``k(x, x') = σ² sqrt(2 l(x) l(x') / (l(x)² + l(x')²)) exp(−(x − x')² / (l(x)² + l(x')²))``;
    with a constant ``l`` it is the RBF kernel ``σ² exp(−(x − x')² / (2 l²))``.

    Args:
        x1: inputs (..., N).
        x2: inputs (..., M); the batch dimensions broadcast with those of ``x1``.
        lengthscale_fn: maps inputs to their (positive) length scales, same shape; or a number
            for a constant length scale.
        variance: the kernel variance σ² (> 0).

    Returns:
        The kernel matrix (..., N, M), in the promoted dtype of ``x1`` and ``x2``.

    Raises:
        ShapeError: an input that is not a tensor of at least one dimension, or a length-scale
            function whose output does not have its input's shape.
        InputDtypeError: an input that is not floating point.
        ConfigError: a variance or length scale that is not a finite number > 0.
    """
    for name, value in (("x1", x1), ("x2", x2)):
        if not isinstance(value, torch.Tensor) or value.ndim < 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ShapeError(f"gibbs_kernel: {name} must be a tensor of shape (..., N); got {shape}")
        if not value.is_floating_point():
            raise InputDtypeError(f"gibbs_kernel: {name} must be a floating-point tensor; got {value.dtype}")
    if not _is_number(variance) or variance <= 0:
        raise ConfigError(f"gibbs_kernel: variance must be a finite number > 0; got {variance!r}")
    if not callable(lengthscale_fn):
        if not _is_number(lengthscale_fn) or lengthscale_fn <= 0:
            raise ConfigError(
                f"gibbs_kernel: lengthscale_fn must be a callable or a finite number > 0; got {lengthscale_fn!r}"
            )
        constant = float(lengthscale_fn)

        def lengthscale_fn(x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, constant)

    dtype = torch.promote_types(x1.dtype, x2.dtype)
    x1, x2 = x1.to(dtype), x2.to(dtype)
    scales = []
    for name, x in (("x1", x1), ("x2", x2)):
        scale = lengthscale_fn(x)
        if not isinstance(scale, torch.Tensor) or scale.shape != x.shape:
            shape = tuple(scale.shape) if isinstance(scale, torch.Tensor) else type(scale).__name__
            raise ShapeError(
                f"gibbs_kernel: lengthscale_fn({name}) must return a tensor of {name}'s shape {tuple(x.shape)}; "
                f"got {shape}"
            )
        if not bool((scale > 0).all()) or not bool(torch.isfinite(scale).all()):
            raise ConfigError(f"gibbs_kernel: length scales must be finite and > 0; got min {scale.min().item()!r}")
        scales.append(scale.to(dtype))
    l1, l2 = scales[0][..., :, None], scales[1][..., None, :]
    total = l1.square() + l2.square()
    distance = (x1[..., :, None] - x2[..., None, :]).square()
    return variance * torch.sqrt(2 * l1 * l2 / total) * torch.exp(-distance / total)


@dataclass(frozen=True, eq=False)
class GPTasks:
    """A batch of ``B`` 1-D regression tasks; the context is padded to ``Nc`` points per task.

    Attributes:
        x_context: context inputs (B, Nc, 1); padded entries are 0.
        y_context: context observations (B, Nc, 1); padded entries are 0.
        x_target: target inputs (B, Nt, 1).
        y_target: target observations (B, Nt, 1).
        context_mask: (B, Nc) bool, ``True`` for a real context point (real points come first).
        changepoint: the changepoint of each task's length-scale function, (B,) (shift included).
        long_left: (B,) bool, the direction of each switch: ``True`` for length scale 4.0 left of the
            changepoint and 0.1 from it on, ``False`` for the reverse.
        noise: the standard deviation of the observation noise the tasks were drawn with.

    ``len(tasks)`` is ``B``; ``tasks[idx]`` indexes the batch dimension of every tensor (an int selects
    a batch of one).
    """

    x_context: torch.Tensor
    y_context: torch.Tensor
    x_target: torch.Tensor
    y_target: torch.Tensor
    context_mask: torch.Tensor
    changepoint: torch.Tensor
    long_left: torch.Tensor
    noise: float = 0.1

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "noise":
                if not _is_number(value) or value < 0:
                    raise ConfigError(f"GPTasks.noise must be a finite number >= 0; got {value!r}")
            elif not isinstance(value, torch.Tensor):
                raise ShapeError(f"GPTasks.{field.name} must be a tensor; got {type(value).__name__}")
        if self.x_context.ndim != 3 or self.x_context.shape[-1] != 1:
            raise ShapeError(f"GPTasks.x_context must be (B, Nc, 1); got shape {tuple(self.x_context.shape)}")
        if self.x_target.ndim != 3 or self.x_target.shape[-1] != 1 or self.x_target.shape[0] != len(self):
            raise ShapeError(
                f"GPTasks.x_target must be (B, Nt, 1) with B = {len(self)}; got shape {tuple(self.x_target.shape)}"
            )
        expected = {
            "y_context": self.x_context.shape,
            "y_target": self.x_target.shape,
            "context_mask": self.x_context.shape[:2],
            "changepoint": self.x_context.shape[:1],
            "long_left": self.x_context.shape[:1],
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ShapeError(
                    f"GPTasks.{name} must have shape {tuple(shape)}; got {tuple(getattr(self, name).shape)}"
                )
        for name in ("context_mask", "long_left"):
            if getattr(self, name).dtype != torch.bool:
                raise InputDtypeError(f"GPTasks.{name} must be a bool tensor; got {getattr(self, name).dtype}")

    def __len__(self) -> int:
        return self.x_context.shape[0]

    def __getitem__(self, idx: int | slice | torch.Tensor | list[int]) -> GPTasks:
        if isinstance(idx, torch.Tensor) and idx.ndim == 0 or isinstance(idx, np.integer):
            idx = int(idx)
        if isinstance(idx, int):
            if not -len(self) <= idx < len(self):
                raise IndexError(f"index {idx} is out of range for {len(self)} tasks")
            idx = slice(idx % len(self), idx % len(self) + 1)
        tensors = {field.name: getattr(self, field.name)[idx] for field in fields(self) if field.name != "noise"}
        return GPTasks(**tensors, noise=self.noise)

    @property
    def num_context(self) -> torch.Tensor:
        """The number of real context points of each task, (B,) int64."""
        return self.context_mask.sum(-1)

    def lengthscale(self, x: torch.Tensor) -> torch.Tensor:
        """The length scales of each task at inputs ``x`` of shape (B, ...)."""
        return switching_lengthscale(self.changepoint, self.long_left)(x)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GPTasks:
        """The tasks on ``device``, with the floating-point tensors cast to ``dtype`` (masks stay bool)."""
        moved = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
            moved[field.name] = value
        return GPTasks(**moved)


def _pair(name: str, value: object, *, integer: bool) -> tuple:
    if integer and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        kind = "an integer >= 0 or a pair (low, high) of them" if integer else "a pair (low, high) of finite numbers"
        raise ConfigError(f"sample_gp_tasks: {name} must be {kind}; got {value!r}")
    low, high = value
    if integer:
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value) and 0 <= low <= high
        if not ok:
            raise ConfigError(f"sample_gp_tasks: {name} must be integers 0 <= low <= high; got {value!r}")
        return int(low), int(high)
    if not (_is_number(low) and _is_number(high)) or not low < high:
        raise ConfigError(f"sample_gp_tasks: {name} must be finite numbers with low < high; got {value!r}")
    return float(low), float(high)


def sample_gp_tasks(
    batch_size: int,
    *,
    generator: torch.Generator | int | None = None,
    num_context: int | tuple[int, int] = (1, 64),
    num_targets: int = 128,
    context_range: tuple[float, float] = (-2.0, 2.0),
    target_range: tuple[float, float] = (-4.0, 4.0),
    noise: float = 0.1,
    shift: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> GPTasks:
    """Draw ``batch_size`` regression tasks from the GP prior with the switching Gibbs kernel.

    For each task: a changepoint from :data:`CHANGEPOINTS` and a direction (fair coin); a number of
    context points uniform in ``num_context`` (inclusive); context inputs uniform in ``context_range``
    and ``num_targets`` target inputs uniform in ``target_range``; a function ``f`` from the GP prior
    (kernel variance 1, jitter :data:`GP_JITTER`, Cholesky in float64) at all of them; and observations
    ``y = f(x) + noise * ε``, ``ε ~ N(0, 1)``. Finally every input and the changepoint move by ``shift``
    (the observations stay the same: the shifted tasks have exactly the distribution of tasks drawn
    around the shifted changepoint).

    The context is padded to ``max(num_context)`` points (``x`` and ``y`` 0, ``context_mask`` False),
    and the random draws do not depend on how many points each task uses, so a seed gives the same
    tasks for any ``shift``, ``noise`` scale or ``dtype``.

    Args:
        batch_size: the number of tasks ``B`` (>= 1).
        generator: a CPU :class:`torch.Generator`, an integer seed, or ``None`` for torch's global
            random state.
        num_context: the number of context points, fixed (an int) or ``(low, high)``, inclusive.
        num_targets: the number of target points ``Nt`` (>= 1).
        context_range: ``(low, high)`` of the context inputs.
        target_range: ``(low, high)`` of the target inputs.
        noise: the standard deviation of the observation noise (>= 0).
        shift: the constant added to every input and to the changepoint.
        dtype: the floating-point dtype of the tensors.
        device: the device of the tensors (draws are made on the CPU).

    Returns:
        The tasks (:class:`GPTasks`).

    Raises:
        ConfigError: an argument outside the ranges above, a generator that is not a CPU generator,
            or a dtype that is not floating point.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"sample_gp_tasks: batch_size must be an integer >= 1; got {batch_size!r}")
    if isinstance(num_targets, bool) or not isinstance(num_targets, (int, np.integer)) or num_targets < 1:
        raise ConfigError(f"sample_gp_tasks: num_targets must be an integer >= 1; got {num_targets!r}")
    low_count, high_count = _pair("num_context", num_context, integer=True)
    context_low, context_high = _pair("context_range", context_range, integer=False)
    target_low, target_high = _pair("target_range", target_range, integer=False)
    if not _is_number(noise) or noise < 0:
        raise ConfigError(f"sample_gp_tasks: noise must be a finite number >= 0; got {noise!r}")
    if not _is_number(shift):
        raise ConfigError(f"sample_gp_tasks: shift must be a finite number; got {shift!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"sample_gp_tasks: dtype must be a floating-point torch.dtype; got {dtype!r}")
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(int(generator))
    elif generator is not None and (
        not isinstance(generator, torch.Generator) or generator.device.type != "cpu"
    ):
        raise ConfigError(
            f"sample_gp_tasks: generator must be a CPU torch.Generator, an integer seed or None; got {generator!r}"
        )
    batch_size, num_targets = int(batch_size), int(num_targets)
    f64 = torch.float64

    counts = torch.randint(low_count, high_count + 1, (batch_size,), generator=generator)
    changepoint = torch.tensor(CHANGEPOINTS, dtype=f64)[
        torch.randint(0, len(CHANGEPOINTS), (batch_size,), generator=generator)
    ]
    long_left = torch.randint(0, 2, (batch_size,), generator=generator).bool()
    x_context = context_low + (context_high - context_low) * torch.rand(
        batch_size, high_count, generator=generator, dtype=f64
    )
    x_target = target_low + (target_high - target_low) * torch.rand(
        batch_size, num_targets, generator=generator, dtype=f64
    )
    x = torch.cat([x_context, x_target], dim=1)
    z = torch.randn(x.shape, generator=generator, dtype=f64)
    eps = torch.randn(x.shape, generator=generator, dtype=f64)

    covariance = gibbs_kernel(x, x, switching_lengthscale(changepoint, long_left), _VARIANCE)
    covariance = covariance + GP_JITTER * torch.eye(x.shape[1], dtype=f64)
    f = (torch.linalg.cholesky(covariance) @ z.unsqueeze(-1)).squeeze(-1)
    y = f + noise * eps

    mask = torch.arange(high_count) < counts[:, None]
    x_context = torch.where(mask, x_context + shift, 0.0)
    y_context = torch.where(mask, y[:, :high_count], 0.0)

    def out(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype)

    return GPTasks(
        x_context=out(x_context).unsqueeze(-1),
        y_context=out(y_context).unsqueeze(-1),
        x_target=out(x_target + shift).unsqueeze(-1),
        y_target=out(y[:, high_count:]).unsqueeze(-1),
        context_mask=mask.to(device),
        changepoint=out(changepoint + shift),
        long_left=long_left.to(device),
        noise=float(noise),
    )


def _check_tasks(name: str, tasks: object, noise: float | None) -> float:
    if not isinstance(tasks, GPTasks):
        raise ConfigError(f"{name}: tasks must be GPTasks (from sample_gp_tasks); got {type(tasks).__name__}")
    if noise is None:
        return tasks.noise
    if not _is_number(noise) or noise < 0:
        raise ConfigError(f"{name}: noise must be a finite number >= 0 or None; got {noise!r}")
    return float(noise)


def _posterior64(tasks: GPTasks, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior predictive mean and std of the targets, (B, Nt), float64."""
    f64 = torch.float64
    xc = tasks.x_context[..., 0].to(f64)
    xt = tasks.x_target[..., 0].to(f64)
    yc = tasks.y_context[..., 0].to(f64)
    mask = tasks.context_mask
    lengthscale = switching_lengthscale(tasks.changepoint.to(f64), tasks.long_left)
    real = mask.to(f64)
    # padded points are decoupled: zero cross-covariances, unit variance and zero observations
    k_cc = gibbs_kernel(xc, xc, lengthscale, _VARIANCE) * real[:, :, None] * real[:, None, :]
    diagonal = torch.where(mask, real.new_tensor(GP_JITTER + noise**2), real.new_tensor(1.0))
    k_cc = k_cc + torch.diag_embed(diagonal)
    k_ct = gibbs_kernel(xc, xt, lengthscale, _VARIANCE) * real[:, :, None]
    cholesky = torch.linalg.cholesky(k_cc)
    v = torch.linalg.solve_triangular(cholesky, k_ct, upper=False)  # (B, Nc, Nt)
    w = torch.linalg.solve_triangular(cholesky, (yc * real).unsqueeze(-1), upper=False)  # (B, Nc, 1)
    mean = (v * w).sum(1)
    latent = (_VARIANCE + GP_JITTER - v.square().sum(1)).clamp_min(0.0)
    return mean, torch.sqrt(latent + noise**2)


def gp_posterior(tasks: GPTasks, noise: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior predictive of the generating GP at the targets, given the real context points.

    The GP is the one :func:`sample_gp_tasks` draws from (the Gibbs kernel with each task's
    length-scale function, variance 1, jitter :data:`GP_JITTER`); the predictive includes the
    observation noise. Computed in float64.

    Args:
        tasks: the tasks.
        noise: the observation-noise std to condition with; ``None`` (default) for ``tasks.noise``.

    Returns:
        ``(mean, std)`` of ``y_target``, each (B, Nt, 1) in the dtype of ``tasks.x_target``.

    Raises:
        ConfigError: ``tasks`` is not :class:`GPTasks` or ``noise`` is not a finite number >= 0.
    """
    noise = _check_tasks("gp_posterior", tasks, noise)
    mean, std = _posterior64(tasks, noise)
    dtype = tasks.x_target.dtype
    return mean.unsqueeze(-1).to(dtype), std.unsqueeze(-1).to(dtype)


def gp_log_likelihood(tasks: GPTasks, noise: float | None = None) -> torch.Tensor:
    """The mean per-target log-likelihood of ``y_target`` under :func:`gp_posterior`, per task.

    This is the ceiling of what any model can reach on the tasks (in expectation).

    Args:
        tasks: the tasks.
        noise: the observation-noise std; ``None`` (default) for ``tasks.noise``.

    Returns:
        (B,) in the dtype of ``tasks.x_target`` (computed in float64).

    Raises:
        ConfigError: as :func:`gp_posterior`.
    """
    noise = _check_tasks("gp_log_likelihood", tasks, noise)
    mean, std = _posterior64(tasks, noise)
    y = tasks.y_target[..., 0].to(torch.float64)
    log_prob = -0.5 * math.log(2 * math.pi) - std.log() - 0.5 * ((y - mean) / std).square()
    return log_prob.mean(-1).to(tasks.x_target.dtype)
