"""REMUL: an unconstrained model trained to be approximately equivariant by a second loss.

loss = α·ℓ(f(x), y) + Σ_groups β·ℓ_equi (Elhag, Di Giovanni, Bronstein, Rusch, "Relaxed
Equivariance via Multitask Learning", arXiv 2410.17878). Nothing is added to the model:
``forward`` is the backbone, so inference costs exactly what the backbone costs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...actions.batching import TransformedPredictions, predict_transformed_many
from ...errors import ConfigError
from ...groups import Group, get_group
from ...losses import equivariance_loss
from ...metrics import errors_from_copies
from ..base import SymmetricModel
from ..registry import register_strategy
from .config import RemulConfig
from .weighting import GradNorm, SymmetryLevels


@register_strategy("remul")
class Remul(SymmetricModel):
    """Trains the unconstrained backbone with α·task + β·equivariance losses; inference is the bare backbone.

    ``wrap(model, group="SO3", strategy="remul", input="points", output="points", beta=1.0)``

    ``group`` may be a list of groups (``["SO2z", "SO3"]``) or a dict of groups and their β.
    Train with ``model.loss(model(x), y, x)["total"]``: the dict also holds the weighted
    ``task`` and ``equivariance`` terms (``equivariance_<group>`` for several groups).
    After each training loss, :attr:`last_metrics` holds both equivariance errors of the
    batch per group (E′ ``relative`` and E ``averaged``, REMUL's two metrics), measured on
    the transformed predictions the loss already made; :meth:`loss_weights` gives the
    current α and β (as tuned by GradNorm or ``beta="auto"``).
    """

    config_class = RemulConfig
    config: RemulConfig
    group_weights_field = "beta"

    def __init__(self, backbone: nn.Module, group: Group | Sequence[Group], input_action, output_action,
                 config: RemulConfig) -> None:
        groups = list(group) if isinstance(group, (list, tuple)) else [group]
        if not groups:
            raise ConfigError("REMUL needs at least one group")
        super().__init__(backbone, groups[0], input_action, output_action, config)
        for extra in groups[1:]:
            input_action.check_group(extra)
            output_action.check_group(extra)
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ConfigError(f"each group may appear once; got {names}")
        self.groups = dict(zip(names, groups))
        self._betas = self._initial_betas(config, names)
        self.gradnorm = (
            GradNorm([config.alpha, *self._betas], config.gradnorm_asymmetry, config.gradnorm_lr)
            if config.weighting == "gradnorm" else None
        )
        self.levels = (
            SymmetryLevels(len(names), config.auto_beta, config.auto_warmup_steps, config.auto_power,
                           config.auto_momentum)
            if config.beta == "auto" else None
        )
        self.last_metrics: dict[str, dict[str, float]] = {}

    @staticmethod
    def _initial_betas(config: RemulConfig, names: list[str]) -> list[float]:
        beta = config.beta
        if beta == "auto":
            return [config.auto_beta] * len(names)
        if isinstance(beta, dict):
            given = {get_group(key).name: float(value) for key, value in beta.items()}
            if set(given) != set(names):
                raise ConfigError(f"beta must give one weight per group {names}; got weights for {sorted(given)}")
            return [given[name] for name in names]
        return [float(beta)] * len(names)

    def group_spec(self) -> str | list[str]:
        names = list(self.groups)
        return names[0] if len(names) == 1 else names

    # --- inference: the bare backbone ---------------------------------------------------------
    predicts_with_backbone = True

    def forward(self, x: Any) -> Any:
        """The backbone's prediction, untouched: REMUL adds nothing at inference."""
        self._check_input(x)
        return self.run_backbone(x)

    # --- training --------------------------------------------------------------------------------
    def loss_weights(self) -> dict[str, float]:
        """The current weights: ``alpha`` and one β per group."""
        if self.gradnorm is not None:
            weights = self.gradnorm.weights.tolist()
            alpha, betas = weights[0], weights[1:]
        else:
            alpha = self.config.alpha
            betas = self.levels.weights().tolist() if self.levels is not None else self._betas
        return {"alpha": alpha, **{f"beta_{name}": beta for name, beta in zip(self.groups, betas)}}

    def _term_name(self, group_name: str) -> str:
        return "equivariance" if len(self.groups) == 1 else f"equivariance_{group_name}"

    def loss(self, pred: Any, target: Any, x: Any = None) -> dict[str, torch.Tensor]:
        """Weighted ``task`` and ``equivariance`` terms and their ``total``.

        ``x`` is needed for the equivariance terms (``f(g·x)``): one backbone call on the
        ``num_samples_train`` (in evaluation mode ``num_samples_eval``) transformed copies of the batch for
        every group, all groups together.
        """
        task = self.task_loss(pred, target)
        equivariance = self._equivariance_losses(pred, target, x) if x is not None else {}
        if x is None and any(beta > 0 for beta in self._betas):
            raise ConfigError("REMUL's loss needs the input for its equivariance term: call model.loss(pred, y, x)")
        return self._weighted(task, equivariance)

    def auxiliary_loss(self, x: Any) -> dict[str, torch.Tensor]:
        """Self-consistency terms ‖f(g·x) − g·f(x)‖² for unlabelled ``x`` (weighted by β)."""
        pred = self.run_backbone(x)
        losses = self._equivariance_losses(pred, None, x, target_kind="prediction")
        weights = self._current_weights(None, losses)
        return {self._term_name(name): beta * losses[name] for name, beta in zip(self.groups, weights[1:])}

    def _equivariance_losses(self, pred: Any, target: Any, x: Any, target_kind: str | None = None
                             ) -> dict[str, torch.Tensor]:
        self._check_input(x)
        kind = target_kind or self.config.target
        active = [name for name, beta in zip(self.groups, self._betas)
                  if beta > 0 or self.gradnorm is not None or self.levels is not None]
        if not active:
            return {}
        probe = self.input_action.probe(x)
        moved_all = predict_transformed_many(
            self.run_backbone, x, [self.groups[name] for name in active], self.input_action,
            num_samples=self.config.samples_for(self.training), generator=self.generator_for(probe.device),
        )
        losses = {}
        for name, moved in zip(active, moved_all):
            if kind == "label":
                losses[name] = equivariance_loss(moved, target, self.output_action, distance=self.task_loss)
            else:
                losses[name] = equivariance_loss(moved, pred, self.output_action)
            self._record_metrics(name, moved, pred)
        return losses

    def _record_metrics(self, name: str, moved: TransformedPredictions, pred: Any) -> None:
        if isinstance(pred, torch.Tensor) and not torch.is_floating_point(pred):
            return
        self.last_metrics[name] = errors_from_copies(moved, pred, self.output_action)

    def _current_weights(self, task: torch.Tensor | None, equivariance: dict[str, torch.Tensor]) -> list[float]:
        """α and the β per group, after this step's update of GradNorm or the automatic levels."""
        learning = self.training and torch.is_grad_enabled()
        if self.gradnorm is not None and learning and task is not None and len(equivariance) == len(self.groups):
            self.gradnorm.update([task, *equivariance.values()], self._shared_parameters())
        if self.levels is not None and learning and len(equivariance) == len(self.groups):
            self.levels.update(list(equivariance.values()))
        weights = self.loss_weights()
        return [weights["alpha"], *(weights[f"beta_{name}"] for name in self.groups)]

    def _weighted(self, task: torch.Tensor, equivariance: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights = self._current_weights(task, equivariance)
        terms = {"task": weights[0] * task}
        for name, beta in zip(self.groups, weights[1:]):
            if name in equivariance:
                terms[self._term_name(name)] = beta * equivariance[name]
        terms["total"] = sum(terms.values())
        return terms

    def _shared_parameters(self) -> list[torch.Tensor]:
        """Parameters of the last shared layer, where GradNorm compares gradient norms."""
        name = self.config.shared_layer
        if name is not None:
            try:
                module = self.backbone.get_submodule(name)
            except AttributeError as error:
                raise ConfigError(f"shared_layer {name!r} is not a submodule of the backbone") from error
            parameters = [p for p in module.parameters() if p.requires_grad]
        else:
            holders = [m for m in self.backbone.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
            parameters = [p for p in holders[-1].parameters(recurse=False) if p.requires_grad] if holders else []
        if not parameters:
            raise ConfigError("GradNorm needs a shared layer with trainable parameters; set shared_layer=")
        return parameters

    # --- measuring -------------------------------------------------------------------------------------
    def equivariance_metrics(self, x: Any, n: int | None = None,
                             generator: torch.Generator | None = None) -> dict[str, dict[str, float]]:
        """Deprecated: :meth:`equivariance_errors`, which every strategy has."""
        warnings.warn("Remul.equivariance_metrics is deprecated; use equivariance_errors", DeprecationWarning,
                      stacklevel=2)
        return self.equivariance_errors(x, n, generator)
