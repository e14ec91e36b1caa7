"""Configuration of approximate equivariance by fixed inputs."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...errors import ConfigError
from ..base import StrategyConfig

MODES = ("add", "concat")


@dataclasses.dataclass
class FixedInputsConfig(StrategyConfig):
    """Fixed, learnable inputs that the group does not move (Ashman et al., NeurIPS 2024, arXiv 2406.13488).

    Attributes:
        num_fixed: B, the number of fixed inputs t_1 … t_B: a small network of the absolute position gives B
            values at every position (a pixel of a grid, a point of a set). ``0`` leaves the backbone exactly as it is.
        inject: where they enter: ``"input"`` (the data itself) or the name of a submodule of the backbone, whose
            input (channels-first features on a grid, or ``(batch, members, features)``) they are added to or
            concatenated with, by a forward pre-hook.
        mode: ``"add"`` (a learned linear map of the B values to the features' channels is added) or
            ``"concat"`` (the B values are appended as extra channels: the backbone must take them).
        p_drop: while training, the probability that all fixed inputs of a sample are zeroed, which keeps the
            equivariant component good on its own. Never dropped in evaluation.
        domain: per coordinate ``[low, high]`` of the positions where the fixed inputs live (zero outside, so the
            model is exactly equivariant there), or ``None`` for everywhere. Grid positions run over
            ``[-1, 1]`` along every axis; point positions are the data's own coordinates.
        hidden: width of the network of the position.
        channels: with ``mode="add"``, the width of the features the fixed inputs are added to. ``None`` (the
            default) reads it at ``wrap()`` (the backbone's or the submodule's ``in_channels``, its first
            ``nn.Conv2d``, an escnn module's ``in_type.size``; the coordinates of points) and records it here.
    """

    strategy: ClassVar[str] = "fixed_inputs"
    num_fixed: int = 8
    inject: str = "input"
    mode: str = "add"
    p_drop: float = 0.5
    domain: list[list[float]] | None = None
    hidden: int = 32
    channels: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}; got {self.mode!r}")
        if isinstance(self.num_fixed, bool) or not isinstance(self.num_fixed, int) or self.num_fixed < 0:
            raise ConfigError(f"num_fixed must be an integer >= 0; got {self.num_fixed!r}")
        if self.channels is not None and (isinstance(self.channels, bool) or self.channels < 1):
            raise ConfigError(f"channels must be an integer >= 1 or None; got {self.channels!r}")
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 1:
            raise ConfigError(f"hidden must be an integer >= 1; got {self.hidden!r}")
        if not 0.0 <= self.p_drop <= 1.0:
            raise ConfigError(f"p_drop must be in [0, 1]; got {self.p_drop}")
        if not isinstance(self.inject, str) or not self.inject:
            raise ConfigError(f"inject must be 'input' or the name of a submodule; got {self.inject!r}")
        if self.domain is not None:
            valid = isinstance(self.domain, (list, tuple)) and all(
                isinstance(pair, (list, tuple)) and len(pair) == 2 and float(pair[0]) < float(pair[1])
                for pair in self.domain)
            if not valid or not self.domain:
                raise ConfigError(f"domain must be a list of [low, high] pairs with low < high, one per coordinate; "
                                  f"got {self.domain!r}")
            self.domain = [[float(low), float(high)] for low, high in self.domain]
