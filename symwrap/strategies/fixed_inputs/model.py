"""Approximate equivariance by fixed inputs: an equivariant map ρ gets B extra inputs t that the group does not move,
ρ̃(Z) = ρ(Z, t), learned from data; with t = 0 it is the equivariant model again (Ashman, Diaconu, Kim, Sivaraya,
Markou, Requeima, Bruinsma, Turner, "Approximately Equivariant Neural Processes", NeurIPS 2024, arXiv 2406.13488).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError, ShapeError
from ...groups import Group
from ..base import SymmetricModel
from ..registry import register_strategy
from .config import FixedInputsConfig


class PositionNetwork(nn.Module):
    """``t(p)``: B fixed inputs at every position p ∈ R^d, an MLP of the absolute position, zero outside the
    domain. The last layer starts at zero, so the wrapped model starts as the equivariant one."""

    def __init__(self, dim: int, num_fixed: int, hidden: int, domain: list[list[float]] | None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, num_fixed))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.dim = dim
        self.domain = domain
        if domain is not None and len(domain) != dim:
            raise ConfigError(f"domain has {len(domain)} [low, high] pairs; the positions have {dim} coordinates")

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        values = self.net(positions)
        if self.domain is None:
            return values
        bounds = torch.tensor(self.domain, dtype=positions.dtype, device=positions.device)
        inside = ((positions >= bounds[:, 0]) & (positions <= bounds[:, 1])).all(dim=-1, keepdim=True)
        return values * inside.to(values.dtype)


def grid_positions(shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(*shape, len(shape))`` coordinates of the pixel centres of a grid, running over ``[-1, 1]`` along every
    axis (the first axis is y, growing downwards, like rows)."""
    axes = [torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device) if n > 1 else
            torch.zeros(1, dtype=dtype, device=device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


@register_strategy("fixed_inputs")
class FixedInputs(SymmetricModel):
    """An exactly equivariant backbone made approximately equivariant by fixed, learnable inputs.

    ``wrap(equivariant_cnn, group="C4", strategy="fixed_inputs", input="image", output="invariant", num_fixed=8)``

    At every position of the data (the pixels of a grid, the points of a set) a small network of the absolute
    position gives B fixed inputs; the group moves the data but not them. They are added to (``mode="add"``,
    through a learned linear map to the channels) or concatenated with (``mode="concat"``) the data
    (``inject="input"``) or the input of a submodule (``inject="NAME"``, e.g. the features after an encoder).
    While training, each sample's fixed inputs are zeroed with probability ``p_drop``; never in evaluation.
    Grid features sit at ``[-1, 1]`` along every axis, unless the injected submodule carries the absolute
    positions of its input as ``input_positions`` (``(*grid, d)``, set by the backbone before it calls the
    submodule, as :class:`~symwrap.nn.ConvCNP1d` does for its ``cnn``).
    :meth:`equivariant_component` gives the model with t = 0, which is exactly the backbone;
    :meth:`equivariance_deviation` measures how far the fixed inputs move the prediction.
    """

    config_class = FixedInputsConfig
    config: FixedInputsConfig
    takes_equivariant_backbone = True

    def __init__(self, backbone: nn.Module, group: Group, input_action, output_action,
                 config: FixedInputsConfig) -> None:
        super().__init__(backbone, group, input_action, output_action, config)
        if input_action.grid_axes == 0 and not input_action.has_positions:
            raise ConfigError(
                f"fixed inputs live at positions: a grid (images, fields) or point positions; input "
                f"{input_action.spec()!r} has neither"
            )
        self.dim = input_action.grid_axes or group.dim
        if self.dim is None:
            raise ConfigError(f"fixed inputs of {input_action.spec()!r} data need the dimension of its positions; "
                              f"{group.name} does not say it")
        self.target: nn.Module | None = None
        if config.inject == "input" and not isinstance(input_action.spec(), str):
            raise ConfigError(f"inject='input' adds fixed inputs to one tensor; {input_action.spec()!r} data has "
                              "several fields: inject them into a submodule (inject='NAME')")
        if config.inject != "input":
            try:
                self.target = backbone.get_submodule(config.inject)
            except AttributeError as error:
                names = [name for name, _ in backbone.named_modules() if name][:20]
                raise ConfigError(f"inject={config.inject!r} is not a submodule of the backbone "
                                  f"{type(backbone).__name__}; its submodules include {names}") from error
        if config.mode == "add" and config.channels is None:
            config = dataclasses.replace(config, channels=self._read_channels(backbone))
            self.config = config
        self.positions_net = PositionNetwork(self.dim, config.num_fixed, config.hidden, config.domain)
        self.projection = (nn.Linear(config.num_fixed, config.channels, bias=False) if config.mode == "add"
                           else None)
        self._zeroed = False
        self._keep: torch.Tensor | None = None
        self._points: torch.Tensor | None = None
        self._handle = self.target.register_forward_pre_hook(self._pre_hook) if self.target is not None else None

    def _read_channels(self, backbone: nn.Module) -> int:
        """The width of what the fixed inputs are added to, read from the modules (see ``channels``)."""
        from ...nn import image_channels

        if self.target is None and self.input_action.grid_axes == 0:
            return self.dim
        module = self.target if self.target is not None else backbone
        for candidate in (getattr(module, "in_channels", None), getattr(getattr(module, "in_type", None), "size", None),
                          image_channels(module) if self.target is None else None):
            if isinstance(candidate, int) and not isinstance(candidate, bool) and candidate > 0:
                return candidate
        raise ConfigError(
            f"mode='add' adds the fixed inputs to the channels of {type(module).__name__}'s input, which it does not "
            "tell (no in_channels, in_type or nn.Conv2d): pass channels="
        )

    # --- the fixed inputs -------------------------------------------------------------------------------------
    def fixed_values(self, positions: torch.Tensor) -> torch.Tensor:
        """``t(p)``: ``(..., B)`` fixed inputs at ``positions`` ``(..., d)``."""
        return self.positions_net(positions)

    def _features(self, z: torch.Tensor, channels_first: bool, positions: torch.Tensor) -> torch.Tensor:
        """``z`` with the fixed inputs at ``positions`` added or concatenated (channels at dim 1 or last)."""
        values = self.fixed_values(positions.to(z.dtype))  # (*grid, B) for grids, (batch, N, B) for points
        if values.ndim < z.ndim:
            values = values.unsqueeze(0).expand(z.shape[0], *values.shape)
        if self._keep is not None:  # the samples whose fixed inputs were not dropped this step
            values = values * self._keep.to(values.dtype).reshape(-1, *([1] * (values.ndim - 1)))
        if self.config.mode == "add":
            projection = self._projection_for(z.shape[1] if channels_first else z.shape[-1], z)
            values = projection(values)
        if channels_first:
            values = values.movedim(-1, 1)
            return z + values if self.config.mode == "add" else torch.cat([z, values], dim=1)
        return z + values if self.config.mode == "add" else torch.cat([z, values], dim=-1)

    def _projection_for(self, channels: int, z: torch.Tensor) -> nn.Module:
        if self.projection is None or self.projection.out_features != channels:
            raise ShapeError(
                f"mode='add' adds the fixed inputs to {channels} channels, but the projection was built for "
                f"{None if self.projection is None else self.projection.out_features}; the injected features "
                "must keep the width they had at wrap()"
            )
        return self.projection

    def _join(self, z: Any, points: torch.Tensor | None) -> Any:
        """The fixed inputs joined to ``z``: channels-first grid features, or (batch, members, features)."""
        if self._zeroed or self.config.num_fixed == 0:
            return z
        tensor = getattr(z, "tensor", z)  # escnn GeometricTensor: its tensor
        if not isinstance(tensor, torch.Tensor):
            raise ShapeError(f"fixed inputs are injected into tensors; got {type(z).__name__}")
        if points is not None and tensor.ndim == 3 and tensor.shape[1] == points.shape[1]:
            joined = self._features(tensor, False, points)
        elif tensor.ndim >= 3:
            declared = getattr(self.target, "input_positions", None) if self.target is not None else None
            if isinstance(declared, torch.Tensor) and declared.shape[:-1] == tensor.shape[2:]:
                grid = declared.to(tensor.dtype)  # the absolute positions the backbone says its grid sits at
            else:
                grid = grid_positions(tuple(tensor.shape[2:]), dtype=tensor.dtype, device=tensor.device)
            joined = self._features(tensor, True, grid)
        else:
            raise ShapeError(f"fixed inputs need features on a grid (B, C, ...) or per point (B, N, F); got shape "
                             f"{tuple(tensor.shape)}")
        if joined is not tensor and hasattr(z, "tensor") and hasattr(z, "type"):
            if self.config.mode == "concat":
                raise ConfigError("mode='concat' changes the field type of an escnn tensor; use mode='add'")
            return type(z)(joined, z.type)
        return joined

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not args:
            return None
        return (self._join(args[0], self._points), *args[1:])

    # --- forward ----------------------------------------------------------------------------------------------
    def forward(self, x: Any) -> Any:
        self._check_input(x)
        batch = self.input_action.batch_size(x)
        self._keep = None
        if self.training and self.config.p_drop > 0:
            probe = self.input_action.probe(x)
            draw = torch.rand(batch, generator=self.generator_for(probe.device), device=probe.device)
            self._keep = draw >= self.config.p_drop
        self._points = self.input_action.positions(x) if self.input_action.grid_axes == 0 else None
        try:
            if self.target is None:
                x = self._inject_into_input(x)
            return self.run_backbone(x)
        finally:
            self._keep = None
            self._points = None

    def _inject_into_input(self, x: Any) -> Any:
        if self.input_action.grid_axes > 0:
            return self._join(x, None)
        points = self.input_action.positions(x)
        if isinstance(x, torch.Tensor):
            return self._join(x, points)
        raise ConfigError(f"inject='input' adds fixed inputs to tensors; {self.input_action.spec()!r} data is a "
                          f"{type(x).__name__}: inject them into a submodule (inject='NAME')")

    @contextlib.contextmanager
    def equivariant_component(self) -> Iterator[FixedInputs]:
        """The model with every fixed input zeroed: exactly the equivariant backbone."""
        previous, self._zeroed = self._zeroed, True
        try:
            yield self
        finally:
            self._zeroed = previous

    @torch.no_grad()
    def equivariance_deviation(self, x: Any, field: str | None = None) -> float:
        """Δ = mean |ρ(Z, t) − ρ(Z, 0)|: how much the fixed inputs move the prediction on ``x`` (of one ``field`` of
        a dict output, e.g. the ``"mean"`` of a neural process's predictive, as the paper measures it)."""
        with_fixed = self.forward(x)
        with self.equivariant_component():
            without = self.forward(x)
        if field is not None:
            if not isinstance(with_fixed, dict) or field not in with_fixed:
                has = sorted(with_fixed) if isinstance(with_fixed, dict) else type(with_fixed).__name__
                raise ConfigError(f"field={field!r} names a field of a dict output; the output has {has}")
            return float((with_fixed[field] - without[field]).abs().mean())
        return float((self.output_action.flatten(with_fixed) - self.output_action.flatten(without)).abs().mean())

    def is_exact(self, x: Any) -> bool:
        """Exact only with no fixed inputs (``num_fixed=0``): the point is to depart from the symmetry."""
        return False

