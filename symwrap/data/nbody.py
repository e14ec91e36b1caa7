"""The charged N-body system of Kipf et al. (2018, NRI), as used by EGNN and REMUL.

Each trajectory holds :attr:`NBodyConfig.n_particles` = 5 particles of unit mass in
:attr:`NBodyConfig.dim` = 3 dimensions. The default settings follow NRI's ``ChargedParticlesSim``
and EGNN's 3-D copy of it (``n_body_system/dataset/synthetic_sim.py``):

* charges ``q_i`` drawn uniformly from {−1, +1};
* initial positions ``x_i ~ N(0, loc_std²)`` per coordinate, ``loc_std = 1.0``;
* initial velocities Gaussian in direction, rescaled so every particle has speed ``vel_norm = 0.5``;
* Coulomb forces ``F_i = Σ_j k q_i q_j (x_i − x_j) / |x_i − x_j|³`` with ``k = interaction_strength = 1.0``
  (like charges repel);
* time step ``dt = 0.001``; the sample is ``(pos, vel, charge)`` at ``t0`` and the target is the
  position ``steps = 1000`` steps (1.0 time unit) later;
* the integrator of NRI: each step first kicks ``v += dt F(x)``, then drifts ``x += dt v``
  (symplectic Euler, NRI's "leapfrog"), so that integrating ``a`` then ``b`` steps equals
  integrating ``a + b`` steps;
* no walls (``box_size = None``), as in EGNN's 3-D data.

Two deliberate departures keep the dynamics exactly E(3)-equivariant and momentum-conserving:

* NRI clips each *component* of each particle's *net* force to ``±0.1 / dt``, which depends on the
  axes and breaks ``Σ_i F_i = 0``. Here each *pair* force is clipped in *magnitude* to
  ``max_force = 0.1 / dt = 100`` (equivalently, its distance is floored at ``sqrt(k |q_i q_j| / max_force)``
  = 0.1 for unit charges): the clip depends only on distances and pair forces stay antisymmetric.
* NRI's elastic walls at ``±box_size`` (5.0 in NRI) are available with ``box_size=5.0`` but off by
  default: walls fix an axis-aligned box, so they break rotation and translation equivariance and
  momentum conservation.

EGNN's ``nbody_small`` takes ``t0`` at step 3,100 of each trajectory and the target at step 4,100;
``burn_in=3100`` reproduces that timing (default 0: ``t0`` is the sampled initial state).

Simulation runs in float64 whatever the output dtype, vectorized over trajectories and particles
(only the time steps are a Python loop). Random draws come from a CPU generator seeded with
``seed``, so a seed gives the same data on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from ..errors import ActionError, ConfigError, InputDtypeError

__all__ = ["NBodyConfig", "NBodyData", "integrate", "load_nbody", "simulate"]

_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class NBodyConfig:
    """Settings of the charged N-body simulation (defaults: NRI / EGNN; see the module docstring).

    Attributes:
        n_particles: particles per trajectory (5).
        dim: spatial dimension (3).
        steps: integrator steps between ``t0`` and the target position (1,000).
        dt: integrator time step (0.001; ``steps * dt`` = 1.0 time unit).
        loc_std: standard deviation of each initial coordinate (1.0).
        vel_norm: speed of every particle in the initial state (0.5).
        interaction_strength: Coulomb constant ``k`` (1.0).
        box_size: half-width of NRI's elastic-wall box, or ``None`` for free space (``None``;
            NRI uses 5.0). Walls break E(3) equivariance and momentum conservation.
        max_force: cap on the magnitude of each pair force, or ``None`` for no cap
            (``0.1 / 0.001 = 100``, NRI's value).
        burn_in: steps integrated from the sampled initial state before ``t0`` (0; EGNN's
            ``nbody_small`` corresponds to 3,100).
    """

    n_particles: int = 5
    dim: int = 3
    steps: int = 1000
    dt: float = 0.001
    loc_std: float = 1.0
    vel_norm: float = 0.5
    interaction_strength: float = 1.0
    box_size: float | None = None
    max_force: float | None = 100.0
    burn_in: int = 0

    def __post_init__(self) -> None:
        for name, low in (("n_particles", 1), ("dim", 1), ("steps", 0), ("burn_in", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"NBodyConfig.{name} must be an integer >= {low}; got {value!r}")
        bounds = {"dt": ">", "loc_std": ">=", "vel_norm": ">=", "interaction_strength": "", "box_size": ">",
                  "max_force": ">"}
        for name, bound in bounds.items():
            value = getattr(self, name)
            optional = name in ("box_size", "max_force")
            if optional and value is None:
                continue
            valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not valid or (bound == ">" and value <= 0) or (bound == ">=" and value < 0):
                expected = f"a finite number{f' {bound} 0' if bound else ''}{' or None' if optional else ''}"
                raise ConfigError(f"NBodyConfig.{name} must be {expected}; got {value!r}")


@dataclass(frozen=True, eq=False)
class NBodyData:
    """A batch of ``B`` trajectories: the state at ``t0`` and the position ``steps`` steps later.

    Attributes:
        pos: positions at ``t0``, (B, N, d).
        vel: velocities at ``t0``, (B, N, d).
        charge: charges, (B, N, 1), each −1 or +1.
        target: positions ``config.steps`` steps after ``t0``, (B, N, d).

    ``len(data)`` is ``B``; ``data[idx]`` indexes the batch dimension of every field (an int
    selects a batch of one, so fields stay batched); :meth:`inputs` gives the dict that the
    action ``{"pos": "points", "vel": "vectors", "charge": "scalars"}`` acts on.
    """

    pos: torch.Tensor
    vel: torch.Tensor
    charge: torch.Tensor
    target: torch.Tensor

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, torch.Tensor):
                raise ActionError(f"NBodyData.{field.name} must be a tensor; got {type(value).__name__}")
        if self.pos.ndim != 3:
            raise ActionError(f"NBodyData.pos must be (B, N, d); got shape {tuple(self.pos.shape)}")
        expected = {"vel": self.pos.shape, "target": self.pos.shape, "charge": (*self.pos.shape[:2], 1)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ActionError(
                    f"NBodyData.{name} must have shape {tuple(shape)} to match pos {tuple(self.pos.shape)}; "
                    f"got {tuple(getattr(self, name).shape)}"
                )

    def __len__(self) -> int:
        return self.pos.shape[0]

    def __getitem__(self, idx: int | slice | torch.Tensor | list[int]) -> NBodyData:
        if isinstance(idx, torch.Tensor) and idx.ndim == 0 or isinstance(idx, np.integer):
            idx = int(idx)
        if isinstance(idx, int):
            if not -len(self) <= idx < len(self):
                raise IndexError(f"index {idx} is out of range for {len(self)} trajectories")
            idx = slice(idx % len(self), idx % len(self) + 1)
        return NBodyData(self.pos[idx], self.vel[idx], self.charge[idx], self.target[idx])

    def inputs(self) -> dict[str, torch.Tensor]:
        """``{"pos": pos, "vel": vel, "charge": charge}``: points, vectors and scalars."""
        return {"pos": self.pos, "vel": self.vel, "charge": self.charge}

    def to(self, *args, **kwargs) -> NBodyData:
        """Every field moved or cast with ``Tensor.to(*args, **kwargs)`` (device, dtype, ...)."""
        return NBodyData(*(getattr(self, field.name).to(*args, **kwargs) for field in fields(self)))


def _check_state(pos: torch.Tensor, vel: torch.Tensor, charge: torch.Tensor, config: NBodyConfig) -> None:
    given = {"pos": pos, "vel": vel, "charge": charge}
    for name, value in given.items():
        if not isinstance(value, torch.Tensor):
            raise ActionError(f"integrate: {name} must be a tensor; got {type(value).__name__}")
        if not value.is_floating_point():
            raise InputDtypeError(f"integrate: {name} must be a floating-point tensor; got {value.dtype}")
    n, d = config.n_particles, config.dim
    if pos.ndim != 3 or pos.shape[1:] != (n, d):
        raise ActionError(f"integrate: pos must be (B, {n}, {d}) for this config; got shape {tuple(pos.shape)}")
    expected = {"vel": pos.shape, "charge": (pos.shape[0], n, 1)}
    for name, shape in expected.items():
        if given[name].shape != shape:
            raise ActionError(
                f"integrate: {name} must have shape {tuple(shape)} to match pos; got {tuple(given[name].shape)}"
            )


def _reflect(pos: torch.Tensor, vel: torch.Tensor, box: float) -> tuple[torch.Tensor, torch.Tensor]:
    over, under = pos > box, pos < -box
    pos = torch.where(over, 2 * box - pos, torch.where(under, -2 * box - pos, pos))
    vel = torch.where(over, -vel.abs(), torch.where(under, vel.abs(), vel))
    return pos, vel


def integrate(
    pos: torch.Tensor,
    vel: torch.Tensor,
    charge: torch.Tensor,
    config: NBodyConfig = NBodyConfig(),
    *,
    steps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance a batch of states by ``steps`` integrator steps (default ``config.steps``).

    Args:
        pos: positions (B, N, d), with ``N = config.n_particles`` and ``d = config.dim``.
        vel: velocities (B, N, d).
        charge: charges (B, N, 1); any real values, not only ±1.
        config: the forces, time step and walls to use.
        steps: how many steps; ``None`` means ``config.steps``.

    Returns:
        ``(pos, vel)`` after the steps, in the dtype and on the device of ``pos``. The inputs are
        not modified. Without walls the map commutes with rotations, reflections, translations
        and permutations of the particles, and keeps ``vel.sum(1)`` (total momentum) fixed.

    Raises:
        ActionError: a field of the wrong shape or not a tensor.
        InputDtypeError: an integer tensor.
        ConfigError: ``steps`` is not an integer >= 0.
    """
    _check_state(pos, vel, charge, config)
    steps = config.steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"integrate: steps must be an integer >= 0 or None; got {steps!r}")
    dtype = pos.dtype
    vel, charge = vel.to(dtype), charge.to(dtype)
    pair_charge = charge @ charge.transpose(-1, -2)
    strength = config.interaction_strength * pair_charge
    # |F_ij| = k|q_i q_j| / r² <= max_force  <=>  r² >= k|q_i q_j| / max_force
    floor = strength.abs() / config.max_force if config.max_force is not None else torch.zeros_like(strength)
    # the diagonal's r² of 1 avoids 0/0; its x_i − x_i = 0 still gives no self-force
    eye = torch.eye(config.n_particles, dtype=dtype, device=pos.device)
    for _ in range(steps):
        diff = pos.unsqueeze(2) - pos.unsqueeze(1)
        r2 = diff.square().sum(-1) + eye
        coef = strength / (r2.sqrt() * torch.maximum(r2, floor))
        vel = vel + config.dt * (coef.unsqueeze(-1) * diff).sum(2)
        pos = pos + config.dt * vel
        if config.box_size is not None:
            pos, vel = _reflect(pos, vel, config.box_size)
    return pos, vel


def _check_count(name: str, n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"{name} must be an integer >= 0 (a number of trajectories); got {n!r}")


def simulate(
    n: int,
    config: NBodyConfig = NBodyConfig(),
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> NBodyData:
    """``n`` independent trajectories of the charged N-body system.

    Args:
        n: number of trajectories (0 allowed).
        config: the simulation settings.
        seed: seed of the CPU generator that draws charges, positions and velocities; the same
            seed gives the same data on any device.
        device: where to simulate and return the tensors (default: CPU).
        dtype: floating dtype of the returned tensors; the simulation itself is always float64.

    Returns:
        :class:`NBodyData` with ``pos``, ``vel`` and ``charge`` at ``t0`` (after ``config.burn_in``
        steps) and ``target``, the positions ``config.steps`` steps later.

    Raises:
        ConfigError: ``n`` is not an integer >= 0, ``seed`` is not an integer or ``dtype`` is not floating.
    """
    _check_count("n", n)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating-point torch dtype; got {dtype!r}")
    generator = torch.Generator().manual_seed(seed)
    shape = (n, config.n_particles, config.dim)
    charge = torch.randint(0, 2, (*shape[:2], 1), generator=generator).to(torch.float64) * 2 - 1
    pos = torch.randn(shape, generator=generator, dtype=torch.float64) * config.loc_std
    direction = torch.randn(shape, generator=generator, dtype=torch.float64)
    vel = direction * (config.vel_norm / direction.norm(dim=-1, keepdim=True))
    pos, vel, charge = (t.to(device) for t in (pos, vel, charge))
    if config.box_size is not None:
        pos, vel = _reflect(pos, vel, config.box_size)
    pos, vel = integrate(pos, vel, charge, config, steps=config.burn_in)
    target, _ = integrate(pos, vel, charge, config)
    return NBodyData(pos, vel, charge, target).to(dtype)


def _split_seed(seed: int, split: int) -> int:
    """A seed for one split, mixed from ``(seed, split)`` so that no two (seed, split) pairs share one."""
    return int(np.random.SeedSequence([seed, split]).generate_state(1, np.uint64)[0])


def load_nbody(
    n_train: int = 3000,
    n_val: int = 2000,
    n_test: int = 2000,
    config: NBodyConfig = NBodyConfig(),
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, NBodyData]:
    """Train, validation and test splits of the charged N-body data set, simulated on the fly.

    The defaults (3,000 / 2,000 / 2,000 trajectories) are the sizes of EGNN's ``nbody_small``.
    Each split has its own seed, derived from ``(seed, split)`` with :class:`numpy.random.SeedSequence`
    (so splits never share trajectories, and neither do splits of neighbouring seeds); the same
    ``seed`` always gives the same splits.

    Args:
        n_train: trajectories in ``"train"`` (any size >= 0).
        n_val: trajectories in ``"val"``.
        n_test: trajectories in ``"test"``.
        config: the simulation settings.
        seed: the base seed (an integer >= 0).
        device: where to simulate and put the data.
        dtype: floating dtype of the returned tensors.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``, each an :class:`NBodyData`.

    Raises:
        ConfigError: a size that is not an integer >= 0 or a seed that is not an integer >= 0.
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for split, size in sizes.items():
        _check_count(f"n_{split}", size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0; got {seed!r}")
    return {
        split: simulate(sizes[split], config, seed=_split_seed(seed, index), device=device, dtype=dtype)
        for index, split in enumerate(_SPLITS)
    }
