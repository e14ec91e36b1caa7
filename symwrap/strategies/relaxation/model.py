"""Constraint relaxation: an equivariant network trained through relaxed layers f_eq(z) + θ·R(z), with θ scheduled
back to 0, ending as the original, exactly equivariant network (Pertigkiozoglou, Chatzipantazis, Trivedi,
Daniilidis, "Improving Equivariant Model Training via Constraint Relaxation", NeurIPS 2024, arXiv 2408.13242).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from ...groups import Group
from ...saving import restore_modes, training_mode
from ..base import SymmetricModel
from ..registry import register_strategy
from .adapters import RelaxationAdapter, adapter_for, list_relaxation_adapters
from .config import RelaxationConfig, theta_at


@register_strategy("relaxation")
class Relaxation(SymmetricModel):
    """Trains an *equivariant* backbone through relaxed layers; at the end (and in eval mode) it is the backbone.

    ``wrap(equivariant_net, group="SO3", strategy="relaxation", input="points", output="vector", total_steps=2000)``

    Every layer with a relaxation adapter (symwrap's Vector-Neuron layers and :class:`~symwrap.nn.EGNNLayer`,
    escnn's ``R2Conv``; see :func:`~symwrap.strategies.relaxation.register_relaxation_adapter`) gets an
    unconstrained term R, kept in :attr:`terms` and added as θ·R(z) to the layer's output while training.
    :meth:`loss` adds λ·(sqrt(Σ LD) + sqrt(Σ N)): the squared Lie derivative of every R and its squared norm, on
    the layers' detached inputs, so the regulariser trains only R. θ follows the schedule over the model's
    training steps (each :meth:`loss` in training mode is a step; :meth:`step` advances by hand); the count is
    part of the model's state, saved and loaded. In eval mode, or once θ is 0, the model is the backbone bit for
    bit; :meth:`project` returns the bare equivariant network. The terms enter through forward hooks on the
    backbone's own layers, so ``model.backbone`` called directly while training is relaxed too: use
    :meth:`project` for a copy without them.
    """

    config_class = RelaxationConfig
    config: RelaxationConfig
    takes_equivariant_backbone = True

    def __init__(self, backbone: nn.Module, group: Group, input_action, output_action,
                 config: RelaxationConfig) -> None:
        super().__init__(backbone, group, input_action, output_action, config)
        self.terms = nn.ModuleDict()
        self._layers: dict[str, nn.Module] = {}
        self._adapters: dict[str, RelaxationAdapter] = {}  # looked up once: the hooks run on every forward
        for name, module in backbone.named_modules():
            adapter = adapter_for(module)
            if adapter is None or any(name.startswith(other + ".") for other in self._layers):
                continue
            key = name.replace(".", "__") or "backbone"
            self.terms[key] = adapter.build(module, group, config)
            self._layers[key] = module
            self._adapters[key] = adapter
        if not self._layers:
            raise ConfigError(
                f"relaxation needs an equivariant backbone with layers it can relax; {type(backbone).__name__} has "
                f"none of {list_relaxation_adapters()}. Register an adapter for your layer type with "
                "symwrap.strategies.relaxation.register_relaxation_adapter"
            )
        self.register_buffer("relaxation_step", torch.zeros((), dtype=torch.long))
        self._inputs: dict[str, tuple[Any, ...]] = {}
        self._handles = [module.register_forward_hook(self._hook(key), with_kwargs=True)
                         for key, module in self._layers.items()]

    # --- θ ----------------------------------------------------------------------------------------------------
    @property
    def theta(self) -> float:
        """θ at the current step (0 in eval mode: the relaxation terms are dropped)."""
        return theta_at(int(self.relaxation_step), self.config) if self.training else 0.0

    def step(self, steps: int = 1) -> None:
        """Advance the schedule by ``steps`` training steps."""
        self.relaxation_step += steps

    # --- forward ----------------------------------------------------------------------------------------------
    def _hook(self, key: str):
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
            if not self.training:
                return None
            inputs = tuple(_detached(value) for value in (*args, *kwargs.values()))
            self._inputs[key] = inputs
            theta = self.theta
            if theta == 0.0:
                return None
            return self._adapters[key].relax(module, inputs, output, self.terms[key], theta)

        return hook

    def forward(self, x: Any) -> Any:
        self._check_input(x)
        self._inputs = {}
        return self.run_backbone(x)

    # --- training terms ---------------------------------------------------------------------------------------
    def auxiliary_loss(self, x: Any) -> dict[str, torch.Tensor]:
        """``relaxation``: λ·(sqrt(Σ LD) + sqrt(Σ N)) over the relaxed layers, on their inputs of the last
        training forward (run on ``x`` when there was none)."""
        if not self._inputs:
            was_training = self.training
            self.train()
            self.forward(x)
            self.train(was_training)
        derivative, norm = self.regularisers()
        value = self.config.reg_weight * (_sqrt(derivative) + _sqrt(norm))
        return {"relaxation": value}

    def regularisers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ LD, Σ N)`` over the relaxed layers, on their inputs of the last training forward."""
        derivative = norm = None
        for key, inputs in self._inputs.items():
            ld, n = self._adapters[key].regulariser(self._layers[key], inputs, self.terms[key], self.group,
                                                    self.config)
            derivative = ld if derivative is None else derivative + ld
            norm = n if norm is None else norm + n
        if derivative is None:
            raise ConfigError("no relaxed layer ran in the last forward: call the model in training mode first")
        return derivative, norm

    def loss(self, pred: Any, target: Any, x: Any = None) -> dict[str, torch.Tensor]:
        """The task term and the relaxation regulariser; in training mode with gradients on, each call is one
        step of θ's schedule."""
        terms = super().loss(pred, target, x)
        if self.training and torch.is_grad_enabled():
            self.step()
        return terms

    # --- the result -------------------------------------------------------------------------------------------
    def project(self) -> nn.Module:
        """A copy of the bare equivariant backbone (the relaxation terms dropped)."""
        modes = [module.training for module in self.backbone.modules()]
        with training_mode(self.backbone):  # escnn keeps expanded filters in eval mode, which cannot be copied
            copied = copy.deepcopy(self.backbone)
        restore_modes(list(zip(copied.modules(), modes)))
        return _without_hooks(copied)

    def is_exact(self, x: Any) -> bool:
        """No promise beyond the backbone's own: in eval mode this model IS the backbone."""
        return False

    def __deepcopy__(self, memo: dict[int, Any]) -> Relaxation:
        """A copy whose layers call the copy's relaxation terms (a plain deep copy would keep hooks that call the
        original's)."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        modes = [module.training for module in self.modules()]
        with training_mode(self):
            for name, value in self.__dict__.items():
                if name != "_handles":
                    new.__dict__[name] = copy.deepcopy(value, memo)
        restore_modes(list(zip(new.modules(), modes)))
        _without_hooks(new.backbone)
        new._handles = [module.register_forward_hook(new._hook(key), with_kwargs=True)
                        for key, module in new._layers.items()]
        return new


def _without_hooks(copied: nn.Module) -> nn.Module:
    """A deep copy keeps the relaxation hooks of the original layers (closures over the original model): remove
    them from the copy."""
    for module in copied.modules():
        for handle_id, hook in list(module._forward_hooks.items()):
            if getattr(hook, "__qualname__", "").startswith("Relaxation._hook"):
                del module._forward_hooks[handle_id]
                module._forward_hooks_with_kwargs.pop(handle_id, None)
    return copied


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    tensor = getattr(value, "tensor", None)  # an escnn GeometricTensor
    if isinstance(tensor, torch.Tensor) and hasattr(value, "type"):
        return type(value)(tensor.detach(), value.type)
    return value


def _sqrt(value: torch.Tensor) -> torch.Tensor:
    """sqrt that stays differentiable at 0 (where the terms start when R is initialised at zero)."""
    return torch.sqrt(value + torch.finfo(value.dtype).tiny) if value.requires_grad else value.sqrt()

