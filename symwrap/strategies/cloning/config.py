"""Configuration of the symmetry-cloning strategy."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ...errors import ConfigError
from ..base import StrategyConfig

INPUTS = ("data", "gaussian", "both")
MATCHES = ("outputs", "outputs+features")
MODES = ("keep", "break")
DISTANCES = ("mse", "kl")
TARGETS = ("prediction", "label")
COPY_TARGETS = ("teacher", "symmetry")


@dataclasses.dataclass
class CloningConfig(StrategyConfig):
    """Symmetry cloning (Huang, Cheng, Chen, Aspuru-Guzik, arXiv 2410.03989).

    Stage one (:meth:`~symwrap.strategies.Cloning.clone`) trains the student to match an equivariant
    teacher; stage two fine-tunes it on the task, keeping or breaking the cloned symmetry.

    Attributes:
        inputs: where student and teacher are compared: ``"data"`` (the batch and ``transformed_copies``
            group-transformed copies of it), ``"gaussian"`` (random inputs shaped like the batch) or
            ``"both"``.
        match: ``"outputs"``, or ``"outputs+features"`` to also match intermediate features: the output of
            the student's submodule ``student_feature_layer`` through a learned linear projection to the
            output of the teacher's ``teacher_feature_layer`` (both flattened to ``(B, D)``).
        transformed_copies: group-transformed copies ``g·x`` of the data batch per step (0: none); the batch,
            its copies and the Gaussian inputs go through teacher and student in one call each.
        copy_targets: where the targets of the transformed copies come from: ``"teacher"`` calls the teacher
            on every ``g·x``; ``"symmetry"`` calls it on ``x`` alone and moves its output, g·t(x), which is the
            same for an exactly equivariant teacher and saves ``transformed_copies`` teacher calls per input.
        weight_anchor: weight of ‖θ − θ₀‖², which keeps the student near its weights θ₀ at construction
            (or at the last ``reset_anchor()``).
        gaussian_scale: standard deviation of the random inputs relative to the batch's: each channel (dim 1
            of images, the last dim of other tensors) is drawn from N(mean, (gaussian_scale · std)²) with the
            channel's mean and std over the batch.
        gaussian_fields: for dict inputs, the fields replaced by random values; ``None``: every
            floating-point field whose action is not ``"scalars"`` (charges, atom types are kept from the data).
        distance: ``"mse"`` between outputs, or ``"kl"``: KL(softmax(teacher/T) ‖ softmax(student/T)) · T²,
            for logits.
        temperature: T of the ``"kl"`` distance.
        feature_weight: weight of the feature term.
        student_feature_layer: the student submodule whose output is matched (``backbone.get_submodule``).
        teacher_feature_layer: the teacher submodule whose output is matched.
        student_feature_dim: size of the student's flattened features (input of the projection).
        teacher_feature_dim: size of the teacher's flattened features (output of the projection).
        resample_teacher_every: draw new random teacher weights (``reset_parameters()`` of its submodules)
            every this many cloning steps, so the student clones the symmetry of a family of teachers rather
            than one function; ``None``: keep the teacher.
        mode: stage two: ``"keep"`` adds β·equivariance (the REMUL loss of :mod:`symwrap.losses`) to the
            task loss; ``"break"`` trains on the task alone. Switch with ``model.set_mode()``.
        beta: weight of the equivariance term in ``"keep"`` mode.
        target: what the equivariance term compares f(g·x) with: ``"prediction"``: g·f(x)
            (self-consistency, needs no labels); ``"label"``: g·y (REMUL's choice: training on transformed
            data).
        num_samples_train: group elements sampled per input for the equivariance term (one backbone call) in
            training mode. Formerly ``num_samples`` (still accepted, with a :class:`DeprecationWarning`).
        num_samples_eval: the same in evaluation mode (a validation loss); ``None``: ``num_samples_train``.
    """

    strategy: ClassVar[str] = "cloning"
    #: deprecated field names -> their new names (see :func:`symwrap.saving.upgrade_config_fields`)
    renamed_fields: ClassVar[dict[str, str]] = {"num_samples": "num_samples_train"}
    inputs: str = "both"
    match: str = "outputs"
    transformed_copies: int = 1
    copy_targets: str = "teacher"
    weight_anchor: float = 0.0
    gaussian_scale: float = 1.0
    gaussian_fields: list[str] | None = None
    distance: str = "mse"
    temperature: float = 1.0
    feature_weight: float = 1.0
    student_feature_layer: str | None = None
    teacher_feature_layer: str | None = None
    student_feature_dim: int | None = None
    teacher_feature_dim: int | None = None
    resample_teacher_every: int | None = None
    mode: str = "keep"
    beta: float = 1.0
    target: str = "prediction"
    num_samples_train: int = 1
    num_samples_eval: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, allowed in (("inputs", INPUTS), ("match", MATCHES), ("mode", MODES),
                              ("distance", DISTANCES), ("target", TARGETS),
                              ("copy_targets", COPY_TARGETS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")
        for name in ("weight_anchor", "feature_weight", "beta"):
            _check_number(name, getattr(self, name), positive=False)
        for name in ("gaussian_scale", "temperature"):
            _check_number(name, getattr(self, name), positive=True)
        _check_integer("transformed_copies", self.transformed_copies, low=0)
        _check_integer("num_samples_train", self.num_samples_train, low=1)
        if self.num_samples_eval is not None:
            _check_integer("num_samples_eval", self.num_samples_eval, low=1)
        if self.resample_teacher_every is not None:
            _check_integer("resample_teacher_every", self.resample_teacher_every, low=1)
        if self.gaussian_fields is not None and (
            not isinstance(self.gaussian_fields, (list, tuple))
            or not all(isinstance(f, str) for f in self.gaussian_fields)
        ):
            raise ConfigError(f"gaussian_fields must be a list of dict keys or None; got {self.gaussian_fields!r}")
        if self.match == "outputs+features":
            missing = [name for name in ("student_feature_layer", "teacher_feature_layer", "student_feature_dim",
                                         "teacher_feature_dim") if getattr(self, name) is None]
            if missing:
                raise ConfigError(f"match='outputs+features' needs {missing}: the submodules whose outputs are "
                                  "matched and the sizes of their flattened outputs")
            _check_integer("student_feature_dim", self.student_feature_dim, low=1)
            _check_integer("teacher_feature_dim", self.teacher_feature_dim, low=1)
            if self.copy_targets == "symmetry":
                raise ConfigError("copy_targets='symmetry' derives the teacher's outputs on transformed copies "
                                  "but not its features; use copy_targets='teacher' with match='outputs+features'")

    def samples_for(self, training: bool) -> int:
        """The group elements sampled per input in training mode (``training``) or in evaluation mode."""
        if training or self.num_samples_eval is None:
            return self.num_samples_train
        return self.num_samples_eval

    @property
    def uses_data(self) -> bool:
        return self.inputs in ("data", "both")

    @property
    def uses_gaussian(self) -> bool:
        return self.inputs in ("gaussian", "both")

    @property
    def uses_features(self) -> bool:
        return self.match == "outputs+features"


def _check_number(name: str, value: object, positive: bool) -> None:
    valid = not isinstance(value, bool) and isinstance(value, (int, float)) and value != float("inf")
    if not valid or not (value > 0 if positive else value >= 0):
        raise ConfigError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}; got {value!r}")


def _check_integer(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
