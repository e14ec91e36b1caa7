"""Probabilistic symmetrization: f(x) = E_{g~p(g|x)} g·φ(g⁻¹·x) with a learned, equivariant
p(g|x) (Kim et al., "Learning Probabilistic Symmetrization for Architecture Agnostic
Equivariance", NeurIPS 2023). Equivariant in distribution for ANY backbone φ; the k samples
are one backbone call on a k·B batch."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ...actions import group_copies, mix_inverse_copies
from ...errors import ConfigError
from ...groups import Group
from ..base import SymmetricModel
from ..registry import register_strategy
from .config import SymmetrizationConfig
from .interfaces import Sample, build_interface, resolve_config, rigid_part


@register_strategy("symmetrization")
class Symmetrization(SymmetricModel):
    """Averages the backbone over k elements sampled from a learned, equivariant p(g|x), all in one call.

    ``wrap(backbone, group="S", strategy="symmetrization", input="adjacency", output="invariant")``

    The interface network (``model.interface``) is chosen by the group: permutations, 3-D rotations
    (with translations), their products (``"E3xS"``), or C_n/D_n on images; pass your own with
    ``interface_network=``. Train with ``model.loss(model(x), y, x)["total"]``: the task loss plus the
    ``penalty`` that keeps the relaxed permutation close to the hard one.
    """

    config_class = SymmetrizationConfig
    config: SymmetrizationConfig
    module_arguments = ("interface_network",)

    def __init__(self, backbone: nn.Module, group: Group, input_action, output_action,
                 config: SymmetrizationConfig, interface_network: nn.Module | None = None) -> None:
        super().__init__(backbone, group, input_action, output_action, config)
        if interface_network is None:
            self.config = config = resolve_config(config, group, input_action, self.backbone)
            interface_network = build_interface(group, config, input_action)
        self.interface = interface_network
        if config.eval_sampling == "mode" and not _takes_mode(interface_network):
            raise ConfigError(
                f"eval_sampling='mode' asks the interface for its most likely element, but the interface network "
                f"{type(interface_network).__name__} takes no mode= argument; give its forward a mode: bool "
                "keyword (no noise when True), or use eval_sampling='random'"
            )
        self._last_gap: torch.Tensor | None = None

    def sample(self, x: Any, k: int = 1, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, mode: bool = False) -> tuple[Group, Any, Sample]:
        """``k`` elements per input from p(g|x): the bound group, the repeated batch (copy-major) and the
        sample. ``noise`` for the k·B repeated batch fixes the interface's randomness; ``mode``: the interface's
        most likely element, without noise."""
        x_rep = self.input_action.repeat(x, k)
        group = self.input_action.bind(self.group, x_rep)
        extra: dict[str, Any] = {} if noise is None else {"noise": noise}
        if mode:
            extra["mode"] = True
        if k > 1 and getattr(self.interface, "scores_each_input_once", False):
            # the interface's network is deterministic and its noise comes after it: score each input once
            return group, x_rep, self.interface(self.input_action, group, x, generator, repeats=k, **extra)
        return group, x_rep, self.interface(self.input_action, group, x_rep, generator, **extra)

    def forward(self, x: Any) -> Any:
        if self.training:
            return self.symmetrize(x, self.config.num_samples_train)
        return self.symmetrize(x, self.config.num_samples_eval, mode=self.config.eval_sampling == "mode")

    def export_obstacle(self, x: Any) -> str | None:
        if self.config.eval_sampling == "mode":
            return None
        return (f"with eval_sampling={self.config.eval_sampling!r} its evaluation samples elements from p(g|x) on "
                "every call, which no fixed module reproduces. Wrap it with eval_sampling='mode', "
                "num_samples_eval=1 (the interface's most likely element, deterministic), or set "
                "model.config.eval_sampling = 'mode' and model.config.num_samples_eval = 1 before exporting")

    def symmetrize(self, x: Any, k: int, noise: torch.Tensor | None = None, mode: bool = False) -> Any:
        """The k-sample estimate of E_{g~p(g|x)} g·φ(g⁻¹·x); ``noise`` and ``mode`` as in :meth:`sample`.

        Given the same noise moved with the input (``h·x`` with ``h·noise``), the estimate is
        exactly equivariant; with fresh noise it is equivariant in distribution. With ``mode`` (no noise) it is
        deterministic, and exactly equivariant wherever the interface's most likely element is unique.
        """
        self._check_input(x)
        probe = self.input_action.probe(x)
        group, x_rep, sample = self.sample(x, k, self.generator_for(probe.device), noise=noise, mode=mode)
        canonical = self._inverse_act(group, sample, x_rep)
        y = self.run_backbone(canonical)
        self._last_gap = sample.gap
        return self.output_action.mean(self.output_action.act(group, sample.elements, y), k)

    def _inverse_act(self, group: Group, sample: Sample, x: Any) -> Any:
        """g⁻¹·x, carrying the straight-through gradient to the interface while training."""
        straight_through = self.training and self.config.gradient == "straight_through"
        if straight_through and sample.matrices is not None and self.input_action.soft_permutations:
            if group.has_linear or group.has_translation:
                x = self.input_action.act(group, group.inverse(rigid_part(group, sample.elements)), x)
            return self.input_action.permute_by_matrix(x, sample.matrices)
        if straight_through and sample.weights is not None and isinstance(x, torch.Tensor):
            copies = group_copies(self.input_action, group, x, samples=1, max_exhaustive_order=group.order)
            return mix_inverse_copies(self.input_action, copies, sample.weights)
        return self.input_action.act(group, group.inverse(sample.elements), x)

    def auxiliary_loss(self, x: Any) -> dict[str, torch.Tensor]:
        """``penalty``: the weighted gap between the relaxed and the hard permutation of the last call."""
        if self._last_gap is None or not self.config.penalty_weight:
            return {}
        return {"penalty": self.config.penalty_weight * self._last_gap}


def _takes_mode(interface: nn.Module) -> bool:
    """Whether ``interface``'s forward takes a ``mode`` keyword (the built-in interfaces do)."""
    try:
        parameters = inspect.signature(interface.forward).parameters
    except (TypeError, ValueError):
        return False
    return "mode" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
