"""Symmetry cloning: a student of any architecture learns a symmetry by imitating an equivariant teacher.

Huang, Cheng, Chen, Aspuru-Guzik, "Symmetry From Scratch: Group Equivariance as a Supervised Learning
Task" (arXiv 2410.03989). Stage one (:meth:`Cloning.clone`) matches the student to the teacher on
data, on group-transformed data and on random inputs; stage two (:meth:`Cloning.loss`) fine-tunes
on the task, keeping the symmetry with REMUL's equivariance loss or letting the data break it. ``forward``
is the bare student: inference costs what the student costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...actions import Copies, group_copies
from ...actions.batching import concat_batches, concatenable, predict_transformed, split_outputs
from ...errors import ConfigError, ShapeError
from ...groups import Group
from ...losses import equivariance_loss
from ..base import SymmetricModel
from ..registry import register_strategy
from .config import MODES, CloningConfig
from .inputs import gaussian_like
from .loop import train
from .teachers import resample_parameters

STAGE_BEFORE, STAGE_CLONED, STAGE_FINE_TUNED = "before cloning", "after cloning", "after fine-tuning"


class WeightAnchor(nn.Module):
    """The starting weights θ₀ of a module, as buffers (saved with the model): ``penalty`` is ‖θ − θ₀‖²."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.names = [name for name, _ in module.named_parameters()]
        for name, parameter in module.named_parameters():
            self.register_buffer(self._key(name), parameter.detach().clone())

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    @torch.no_grad()
    def reset(self, module: nn.Module) -> None:
        """Take ``module``'s current weights as θ₀."""
        for name, parameter in module.named_parameters():
            getattr(self, self._key(name)).copy_(parameter)

    def penalty(self, module: nn.Module) -> torch.Tensor:
        parameters = dict(module.named_parameters())
        if set(parameters) != set(self.names):
            raise ConfigError("the student's parameters changed since its starting weights were stored; "
                              "call model.reset_anchor()")
        return sum(((parameters[name] - getattr(self, self._key(name))) ** 2).sum() for name in self.names)


@register_strategy("cloning")
class Cloning(SymmetricModel):
    """Distils an equivariant teacher's symmetry into any backbone, then fine-tunes keeping or breaking it.

    ``wrap(student, group="C4", strategy="cloning", teacher=teacher, input="image", output="invariant")``

    Stage one: ``model.clone(loader, steps)`` (or your own loop on ``model.cloning_loss(x)["total"]``).
    Stage two: ``model.loss(model(x), y, x)["total"]``: the task loss, plus β·equivariance in ``"keep"``
    mode (``model.set_mode("break")`` drops it), or ``model.fine_tune(loader, steps)``. The teacher (any
    module; :func:`~symwrap.strategies.cloning.default_teacher` builds a random equivariant one) is frozen
    and kept out of the state dict, so ``save_pretrained`` stores the student alone and ``symwrap.load(dir,
    backbone=student)`` needs no teacher. ``model.equivariance_log`` holds the student's equivariance
    errors before cloning, after cloning and after fine-tuning (or at ``record_equivariance(stage, x)``).
    """

    config_class = CloningConfig
    config: CloningConfig
    module_arguments = ("teacher",)
    adapted_module_arguments = ("teacher",)

    def __init__(self, backbone: nn.Module, group: Group, input_action, output_action, config: CloningConfig,
                 teacher: nn.Module | None = None) -> None:
        super().__init__(backbone, group, input_action, output_action, config)
        object.__setattr__(self, "_teacher", None)  # outside _modules: not saved, not trained
        object.__setattr__(self, "_teacher_features", None)
        if teacher is not None:
            self.set_teacher(teacher)
        self.feature_projection = None
        if config.uses_features:
            _submodule(backbone, config.student_feature_layer, "student")
            self.feature_projection = nn.Linear(config.student_feature_dim, config.teacher_feature_dim)
        self.anchor = WeightAnchor(backbone) if config.weight_anchor > 0 else None
        self.cloning_steps = 0
        self.fine_tuning_steps = 0
        self.cloning_history: list[dict[str, float]] = []
        self.fine_tuning_history: list[dict[str, float]] = []
        self.equivariance_log: dict[str, dict[str, float]] = {}

    def __repr__(self) -> str:
        teacher = type(self._teacher).__name__ if self._teacher is not None else None
        return super().__repr__()[:-1] + f",\n  teacher={teacher})"

    # --- the teacher ----------------------------------------------------------------------------------
    @property
    def teacher(self) -> nn.Module | None:
        """The frozen teacher (not a submodule: not in ``state_dict()`` nor ``parameters()``)."""
        return self._teacher

    def set_teacher(self, teacher: nn.Module) -> None:
        """Use ``teacher`` (frozen, in eval mode) for stage one: a module mapping the input to tensors in the
        output's layout (``wrap()`` and ``symwrap.load`` put a Hugging Face or PyG teacher in the adapter that
        does this; :func:`symwrap.backbones.adapt_backbone` does it by hand)."""
        student = {id(p) for p in self.backbone.parameters()}
        if teacher is self.backbone or any(id(p) in student for p in teacher.parameters()):
            raise ConfigError("the teacher shares parameters with the student, and freezing it would freeze the "
                              "student; pass a separate module (copy.deepcopy(teacher))")
        if self.config.uses_features:  # named in the user's teacher, before any output adapter
            object.__setattr__(self, "_teacher_features",
                               _submodule(teacher, self.config.teacher_feature_layer, "teacher"))
        teacher.requires_grad_(False)
        object.__setattr__(self, "_teacher", teacher.eval())

    def resample_teacher(self) -> None:
        """New random teacher weights (``reset_parameters()`` of its submodules)."""
        resample_parameters(self._require_teacher())
        self._teacher.eval()

    def _require_teacher(self) -> nn.Module:
        if self._teacher is None:
            raise ConfigError(
                "symmetry cloning needs a teacher: wrap(..., strategy='cloning', teacher=module) or "
                "model.set_teacher(module); symwrap.strategies.cloning.default_teacher(group, input, output) "
                "builds a random equivariant one. Only the stage-two loss works without one."
            )
        return self._teacher

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> SymmetricModel:
        super()._apply(fn, recurse)
        if self._teacher is not None:  # .to(), .double(), ... move the unregistered teacher too
            self._teacher._apply(fn, recurse)
        return self

    # --- inference: the bare student ------------------------------------------------------------------
    predicts_with_backbone = True

    def forward(self, x: Any) -> Any:
        """The student's prediction, untouched."""
        self._check_input(x)
        return self.run_backbone(x)

    # --- stage one: cloning ---------------------------------------------------------------------------
    def cloning_loss(self, x: Any) -> dict[str, torch.Tensor]:
        """Distances between student and teacher, weighted, and their ``total``.

        ``outputs_data`` on the batch ``x``, ``outputs_transformed`` on ``transformed_copies`` copies
        ``g·x`` with sampled elements ``g``, ``outputs_gaussian`` on random inputs (per ``inputs``);
        ``features`` with ``match="outputs+features"``; ``anchor`` (‖θ − θ₀‖²) with ``weight_anchor > 0``.
        All parts go through the teacher in one call (``copy_targets="symmetry"``: all but the transformed
        copies, whose targets are g·t(x)) and through the student in one call.
        """
        teacher, config = self._require_teacher(), self.config
        self._check_input(x)
        names, batches, copies = self._cloning_inputs(x)
        features = config.uses_features
        student_layer = _submodule(self.backbone, config.student_feature_layer, "student") if features else None
        with _captured(self._teacher_features, "teacher", config.teacher_feature_layer) as teacher_features, \
                torch.no_grad():
            teacher_outputs = self._teacher_targets(teacher, names, batches, copies)
        with _captured(student_layer, "student", config.student_feature_layer) as student_features:
            student_outputs = _call(self.run_backbone, batches, self.input_action)
        terms = {name: self._distance(s, t) for name, s, t in zip(names, student_outputs, teacher_outputs)}
        if self.feature_projection is not None:
            terms["features"] = config.feature_weight * self._feature_distance(student_features, teacher_features)
        if self.anchor is not None:
            terms["anchor"] = config.weight_anchor * self.anchor.penalty(self.backbone)
        terms["total"] = sum(terms.values())
        return terms

    def _cloning_inputs(self, x: Any) -> tuple[list[str], list[Any], Copies | None]:
        """The named input batches of a cloning step, and the transformed copies of ``x`` (or ``None``)."""
        config, action = self.config, self.input_action
        generator = self.generator_for(action.probe(x).device)
        names, batches, copies = [], [], None
        if config.uses_data:
            names.append("outputs_data")
            batches.append(x)
            if config.transformed_copies > 0:
                copies = group_copies(action, self.group, x, samples=config.transformed_copies, max_exhaustive_order=0,
                                      generator=generator)
                names.append("outputs_transformed")
                batches.append(action.act(copies.group, copies.elements, copies.x))
        if config.uses_gaussian:
            names.append("outputs_gaussian")
            batches.append(gaussian_like(action, x, config.gaussian_scale, fields=config.gaussian_fields,
                                         generator=generator))
        return names, batches, copies

    def _teacher_targets(self, teacher: nn.Module, names: list[str], batches: list[Any],
                         copies: Copies | None) -> list[Any]:
        """The teacher's outputs on every batch. With ``copy_targets="symmetry"`` the transformed copies are
        not passed through the teacher: their targets are g·t(x), the teacher's output on the batch moved by
        each copy's element (exact for an equivariant teacher)."""
        if copies is None or self.config.copy_targets == "teacher":
            return _call(teacher, batches, self.input_action)
        derived = names.index("outputs_transformed")
        called = _call(teacher, batches[:derived] + batches[derived + 1 :], self.input_action)
        on_data = called[names.index("outputs_data")]
        moved = self.output_action.act(copies.group, copies.elements, self.output_action.repeat(on_data, copies.k))
        return called[:derived] + [moved] + called[derived:]

    def _distance(self, student: Any, teacher: Any) -> torch.Tensor:
        s, t = self.output_action.flatten(student), self.output_action.flatten(teacher)
        if s.shape != t.shape:
            raise ShapeError(f"student and teacher outputs differ in shape: {tuple(s.shape)} and {tuple(t.shape)} "
                             "(flattened per sample); the teacher must predict what the student predicts")
        if self.config.distance == "kl":
            temperature = self.config.temperature
            return F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t.to(s.dtype) / temperature, dim=-1),
                            log_target=True, reduction="batchmean") * temperature**2
        return F.mse_loss(s, t.to(s.dtype))

    def _feature_distance(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        s = torch.cat([f.reshape(f.shape[0], -1) for f in student])
        t = torch.cat([f.reshape(f.shape[0], -1) for f in teacher])
        expected = (self.config.student_feature_dim, self.config.teacher_feature_dim)
        if (s.shape[1], t.shape[1]) != expected:
            raise ShapeError(
                f"student_feature_layer {self.config.student_feature_layer!r} and teacher_feature_layer "
                f"{self.config.teacher_feature_layer!r} give features of sizes ({s.shape[1]}, {t.shape[1]}) per "
                f"sample; the config says (student_feature_dim, teacher_feature_dim) = {expected}"
            )
        return F.mse_loss(self.feature_projection(s), t.to(s.dtype))

    def reset_anchor(self) -> None:
        """Take the student's current weights as θ₀ of the ``anchor`` term."""
        if self.anchor is None:
            raise ConfigError("there is no weight anchor: set weight_anchor > 0")
        self.anchor.reset(self.backbone)

    def clone(
        self,
        loader: Iterable[Any] | torch.Tensor | Mapping,
        steps: int,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float = 1e-3,
        log_every: int | None = None,
        progress: bool = True,
        eval_inputs: Any = None,
    ) -> list[dict[str, float]]:
        """Stage one: ``steps`` steps on :meth:`cloning_loss` with a progress bar.

        Args:
            loader: any iterable of batches ``x`` or ``(x, y)`` (labels are ignored), cycled; or one batch.
            steps: optimizer steps.
            optimizer: default Adam with ``lr`` over the student's (and feature projection's) parameters.
            log_every: record every this many steps (default: ``steps // 10``); also before the first
                step and after the last.
            progress: show a tqdm bar with the loss and the equivariance error.
            eval_inputs: the batch the student's equivariance error is measured on (default: the first).

        Returns:
            the records ``{"step", <loss terms>, "equivariance_error"}``, also appended to
            :attr:`cloning_history`. The errors before the first step and after the last are stored in
            :attr:`equivariance_log` (``"before cloning"``, kept from the first call; ``"after cloning"``).
        """
        self._require_teacher()
        optimizer = optimizer or torch.optim.Adam(self._trainable(), lr=lr)
        every, start = self.config.resample_teacher_every, self.cloning_steps

        def step_loss(step: int, x: Any, y: Any) -> dict[str, torch.Tensor]:
            # a new teacher before training steps every+1, 2·every+1, ... (counted over all clone() calls)
            if every is not None and step > max(start, 1) and (step - 1) % every == 0:
                self.resample_teacher()
            return self.cloning_loss(x)

        history = self._run(step_loss, loader, steps, optimizer, self.cloning_steps, log_every, progress,
                            eval_inputs, "cloning", STAGE_CLONED, before=STAGE_BEFORE)
        self.cloning_steps += steps
        self.cloning_history.extend(history)
        return history

    # --- stage two: fine-tuning ----------------------------------------------------------------------------
    def set_mode(self, mode: str) -> Cloning:
        """``"keep"`` (task + β·equivariance) or ``"break"`` (task only) for the stage-two loss."""
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}; got {mode!r}")
        self.config.mode = mode
        return self

    def loss(self, pred: Any, target: Any, x: Any = None) -> dict[str, torch.Tensor]:
        """Stage two: ``task``, plus β·``equivariance`` in ``"keep"`` mode (which needs ``x``), and ``total``.

        The equivariance term is REMUL's (:func:`symwrap.losses.equivariance_loss`): ‖f(g·x) − g·f(x)‖²
        (``target="prediction"``) or ℓ(f(g·x), g·y) (``target="label"``), on ``num_samples_train`` sampled
        elements per input in one student call.
        """
        terms = {"task": self.task_loss(pred, target)}
        if self._keeps():
            if x is None:
                raise ConfigError("mode='keep' needs the input for its equivariance term: call model.loss(pred, y, x)")
            terms["equivariance"] = self.config.beta * self._equivariance_term(pred, target, x)
        terms["total"] = sum(terms.values())
        return terms

    def auxiliary_loss(self, x: Any) -> dict[str, torch.Tensor]:
        """β·‖f(g·x) − g·f(x)‖² on unlabelled ``x`` in ``"keep"`` mode; nothing in ``"break"`` mode."""
        if not self._keeps():
            return {}
        return {"equivariance": self.config.beta * self._equivariance_term(self.run_backbone(x), None, x, "prediction")}

    def _keeps(self) -> bool:
        return self.config.mode == "keep" and self.config.beta > 0

    def _equivariance_term(self, pred: Any, target: Any, x: Any, kind: str | None = None) -> torch.Tensor:
        self._check_input(x)
        moved = predict_transformed(self.run_backbone, x, self.group, self.input_action,
                                    num_samples=self.config.samples_for(self.training),
                                    generator=self.generator_for(self.input_action.probe(x).device))
        if (kind or self.config.target) == "label":
            return equivariance_loss(moved, target, self.output_action, distance=self.task_loss)
        return equivariance_loss(moved, pred, self.output_action)

    def fine_tune(
        self,
        loader: Iterable[Any],
        steps: int,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float = 1e-3,
        mode: str | None = None,
        log_every: int | None = None,
        progress: bool = True,
        eval_inputs: Any = None,
    ) -> list[dict[str, float]]:
        """Stage two: ``steps`` steps on :meth:`loss` over a loader of ``(x, y)`` batches (cycled), in
        ``mode`` (default: the current one). Records as :meth:`clone` does, into
        :attr:`fine_tuning_history`; the last error is stored as ``"after fine-tuning"``."""
        if mode is not None:
            self.set_mode(mode)
        optimizer = optimizer or torch.optim.Adam(self.backbone.parameters(), lr=lr)

        def step_loss(step: int, x: Any, y: Any) -> dict[str, torch.Tensor]:
            if y is None:
                raise ConfigError("fine_tune needs a loader of (x, y) batches; got inputs without targets")
            return self.loss(self(x), y, x)

        history = self._run(step_loss, loader, steps, optimizer, self.fine_tuning_steps, log_every, progress,
                            eval_inputs, f"fine-tuning ({self.config.mode})", STAGE_FINE_TUNED)
        self.fine_tuning_steps += steps
        self.fine_tuning_history.extend(history)
        return history

    # --- measuring ---------------------------------------------------------------------------------------
    def record_equivariance(self, stage: str, x: Any, n: int | None = None) -> dict[str, float]:
        """Measure the student (:func:`symwrap.metrics.equivariance_errors`, in eval mode) and store the
        errors (``relative`` E′ and ``averaged`` E) as ``equivariance_log[stage]``."""
        errors = self._measure(self, x, n)
        self.equivariance_log[stage] = errors
        return errors

    def teacher_equivariance_error(self, x: Any, n: int | None = None) -> float:
        """The teacher's relative equivariance error on ``x`` (≈ 0 for an exactly equivariant teacher)."""
        return self._measure(self._require_teacher(), x, n)["relative"]

    def symmetry_drift(self, x: Any, since: str = STAGE_CLONED, n: int | None = None) -> dict[str, float]:
        """How far the student's symmetry moved since a recorded stage: the ``reference`` error of
        ``equivariance_log[since]``, the ``current`` error on ``x``, their difference ``drift`` and ``ratio``."""
        if since not in self.equivariance_log:
            raise ConfigError(f"no equivariance recorded as {since!r}; recorded: {sorted(self.equivariance_log)}. "
                              "Call model.record_equivariance(stage, x) first.")
        reference = self.equivariance_log[since]["relative"]
        current = self._measure(self, x, n)["relative"]
        return {"reference": reference, "current": current, "drift": current - reference,
                "ratio": current / max(reference, 1e-12)}

    def equivariance_report(self) -> str:
        """The recorded stages and their errors, one line each."""
        if not self.equivariance_log:
            return "no equivariance recorded yet"
        width = max(len(stage) for stage in self.equivariance_log)
        return "\n".join(f"{stage:<{width}}  relative {errors['relative']:.3e}  averaged {errors['averaged']:.3e}"
                         for stage, errors in self.equivariance_log.items())

    def _measure(self, model: nn.Module, x: Any, n: int | None) -> dict[str, float]:
        from ...metrics import equivariance_errors

        device = self.input_action.probe(x).device
        generator = torch.Generator(device=device)  # the same elements at every measurement
        generator.manual_seed(self.config.seed if self.config.seed is not None else 0)
        was_training = model.training
        model.eval()
        try:
            return equivariance_errors(model, x, self.group, input=self.input_action, output=self.output_action,
                                       n=n, generator=generator)
        finally:
            model.train(was_training)

    # --- the loop shared by both stages --------------------------------------------------------------
    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def _run(self, step_loss, loader, steps, optimizer, first_step, log_every, progress, eval_inputs, desc,
             after: str, before: str | None = None) -> list[dict[str, float]]:
        was_training = self.training
        self.train()
        try:
            history = train(step_loss, lambda x: self._measure(self, x, None), loader, steps, optimizer,
                            first_step=first_step, log_every=log_every, progress=progress, eval_inputs=eval_inputs,
                            desc=desc)
        finally:
            self.train(was_training)
        if before is not None:
            self.equivariance_log.setdefault(before, _logged(history[0]))
        self.equivariance_log[after] = _logged(history[-1])
        return history


def _submodule(module: nn.Module, name: str | None, role: str) -> nn.Module:
    try:
        return module.get_submodule(name or "")
    except AttributeError as error:
        inner = getattr(module, "model", None)  # the user's model inside the adapter wrap() put around it
        if getattr(module, "display_name", None) is not None and isinstance(inner, nn.Module):
            try:
                return inner.get_submodule(name or "")
            except AttributeError:
                pass
        names = [n for n, _ in module.named_modules() if n][:20]
        raise ConfigError(f"{role}_feature_layer {name!r} is not a submodule of the {role} "
                          f"{type(module).__name__}; its submodules include {names}") from error


def _logged(entry: dict[str, float]) -> dict[str, float]:
    return {"relative": entry["equivariance_error"], "averaged": entry["averaged_equivariance_error"]}


@contextmanager
def _captured(layer: nn.Module | None, role: str, name: str | None) -> Iterator[list[torch.Tensor]]:
    """The outputs of ``layer`` (the submodule ``name``) during the block; nothing when ``layer`` is None."""
    outputs: list[torch.Tensor] = []
    if layer is None:
        yield outputs
        return

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        tensors = [output] if isinstance(output, torch.Tensor) else [
            o for o in output if isinstance(o, torch.Tensor)] if isinstance(output, (tuple, list)) else []
        if not tensors:
            raise ShapeError(f"{role}_feature_layer {name!r} returned {type(output).__name__}; expected a tensor")
        outputs.append(tensors[0])

    handle = layer.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def _call(model: nn.Module, batches: list[Any], action) -> list[Any]:
    """``model`` on every batch: one call on their concatenation when they are tensors or dicts of them."""
    if len(batches) > 1 and all(concatenable(b) for b in batches):
        outputs = model(concat_batches(batches))
        return split_outputs(outputs, [action.batch_size(b) for b in batches])
    return [model(b) for b in batches]
