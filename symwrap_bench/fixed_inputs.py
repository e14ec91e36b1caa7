"""``symwrap bench fixed_inputs``: approximately equivariant ConvCNPs by fixed inputs (Ashman et al., NeurIPS 2024,
arXiv 2406.13488, the synthetic 1-D GP regression of Section 5).

One run trains, with the same optimizer budget (steps, batch, learning-rate schedule) and the same stream of GP
tasks (switching Gibbs kernel, contexts in [-2, 2], targets in [-4, 4]): the translation-equivariant ConvCNP
(strict), the ConvCNP with B fixed inputs of the absolute grid position, zero outside the domain, dropped with
probability p while training (approximate, ``strategy="fixed_inputs"``), and a ConvCNP whose grid features get a
learned linear function of the absolute position everywhere (non-equivariant). All are tested on fresh tasks in
distribution and on the same tasks moved by ``shift`` (outside the training domain), next to the exact GP
posterior (the ceiling, no training). Δ is the mean |prediction − prediction of the equivariant component|.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from symwrap import wrap
from symwrap.data import GPTasks, gaussian_nll, gp_log_likelihood, sample_gp_tasks
from symwrap.nn import ConvCNP1d, TaskDictNP

from . import register_benchmark
from .loop import train_steps
from .timing import format_table

INPUT = {"x_context": "points", "y_context": "scalars", "x_target": "points", "context_mask": "scalars"}
OUTPUT = {"mean": "scalars", "std": "scalars"}
STRICT, NON_EQUIVARIANT, CEILING = "strict (ConvCNP)", "non-equivariant (ConvCNP + position)", "exact GP (ceiling)"
COLUMNS = ["method", "num_fixed", "p_drop", "loglik", "loglik_shifted", "delta", "train_s"]


@dataclasses.dataclass
class FixedInputsSettings:
    """Sizes and the shared optimizer budget of the benchmark."""

    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    hidden: int = 32
    layers: int = 4
    num_fixed: tuple[int, ...] = (1, 4, 16)
    p_drops: tuple[float, ...] = (0.0, 0.5)
    position_hidden: int = 32
    domain: tuple[float, float] = (-4.5, 4.5)
    #: every input of the test tasks moves by this much for the "shifted" column (a whole number of grid steps)
    shift: float = 10.0
    test_batches: int = 16
    #: how much worse than the strict model beyond the domain still counts as "keeps its quality" (nats per target)
    tolerance: float = 0.05
    seed: int = 0
    test_seed: int = 1000

    @classmethod
    def quick(cls) -> FixedInputsSettings:
        return cls(steps=300, lr=3e-3, hidden=16, layers=3, num_fixed=(4,), p_drops=(0.5,), position_hidden=16,
                   test_batches=4)


class PositionConvCNP1d(ConvCNP1d):
    """The non-equivariant baseline: a ConvCNP whose 2 grid channels get a learned linear function of the absolute
    grid position, everywhere (no domain, no dropping). ``equivariant_component()`` turns it off."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.position = nn.Linear(1, self.grid_channels)
        self._zeroed = False

    def grid_features(self, grid: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self._zeroed:
            return features
        return features + self.position(grid.unsqueeze(-1).to(features.dtype)).transpose(0, 1).unsqueeze(0)

    @contextlib.contextmanager
    def equivariant_component(self) -> Iterator[PositionConvCNP1d]:
        previous, self._zeroed = self._zeroed, True
        try:
            yield self
        finally:
            self._zeroed = previous


def as_input(tasks: GPTasks) -> dict[str, torch.Tensor]:
    """The dict a :class:`~symwrap.nn.TaskDictNP` (and the wrapped model) takes."""
    return {"x_context": tasks.x_context, "y_context": tasks.y_context, "x_target": tasks.x_target,
            "context_mask": tasks.context_mask.float()}


def training_batches(settings: FixedInputsSettings) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """``steps`` batches of fresh GP tasks from one seeded generator, drawn once so that every row trains on the
    same tasks in the same order (and the drawing, slower than a step, is paid once)."""
    generator = torch.Generator().manual_seed(settings.seed)
    batches = []
    for _ in range(settings.steps):
        tasks = sample_gp_tasks(settings.batch_size, generator=generator)
        batches.append((as_input(tasks), tasks.y_target))
    return batches


def evaluation_tasks(settings: FixedInputsSettings, shift: float = 0.0) -> list[GPTasks]:
    """The test tasks: the same draws for every ``shift``."""
    generator = torch.Generator().manual_seed(settings.test_seed)
    return [sample_gp_tasks(settings.batch_size, generator=generator, shift=shift)
            for _ in range(settings.test_batches)]


def build(method: str, settings: FixedInputsSettings, num_fixed: int = 0, p_drop: float = 0.0) -> nn.Module:
    torch.manual_seed(settings.seed)
    sizes = {"hidden": settings.hidden, "layers": settings.layers}
    if method == STRICT:
        return TaskDictNP(ConvCNP1d(**sizes))
    if method == NON_EQUIVARIANT:
        return TaskDictNP(PositionConvCNP1d(**sizes))
    return wrap(TaskDictNP(ConvCNP1d(**sizes)), group="T1", strategy="fixed_inputs", input=INPUT, output=OUTPUT,
                inject="model.cnn", channels=2, num_fixed=num_fixed, p_drop=p_drop, hidden=settings.position_hidden,
                domain=[list(settings.domain)], task_loss="gaussian_nll", seed=settings.seed)


def step_loss(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Gaussian NLL per target: the wrapped model's own loss, or the plain one for the unwrapped baselines."""
    prediction = model(x)
    if hasattr(model, "loss"):
        return model.loss(prediction, y, x)["total"]
    return gaussian_nll(prediction["mean"], prediction["std"], y)


@torch.no_grad()
def log_likelihood(model: nn.Module, tasks: list[GPTasks]) -> float:
    """Mean log-likelihood per target over the test tasks."""
    values = []
    for batch in tasks:
        prediction = model(as_input(batch))
        values.append(-float(gaussian_nll(prediction["mean"], prediction["std"], batch.y_target)))
    return sum(values) / len(values)


@torch.no_grad()
def deviation(model: nn.Module, tasks: list[GPTasks]) -> float:
    """Δ: mean |(mean, std) − (mean, std) of the equivariant component| over the test tasks (0 for the strict)."""
    if hasattr(model, "equivariance_deviation"):
        return sum(model.equivariance_deviation(as_input(b)) for b in tasks) / len(tasks)
    inner = getattr(model, "model", None)
    if not isinstance(inner, PositionConvCNP1d):
        return 0.0
    values = []
    for batch in tasks:
        x = as_input(batch)
        full = model(x)
        with inner.equivariant_component():
            plain = model(x)
        values.append(float(torch.cat([(full[k] - plain[k]).abs().flatten() for k in ("mean", "std")]).mean()))
    return sum(values) / len(values)


def methods(settings: FixedInputsSettings) -> list[tuple[str, int, float]]:
    """``(method, num_fixed, p_drop)`` of every trained row, in table order."""
    approximate = [("approximate (fixed inputs)", b, p) for b, p in itertools.product(settings.num_fixed,
                                                                                        settings.p_drops)]
    return [(STRICT, 0, 0.0), *approximate, (NON_EQUIVARIANT, 0, 0.0)]


def train_row(method: str, num_fixed: int, p_drop: float, settings: FixedInputsSettings,
              batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]], test: list[GPTasks],
              shifted: list[GPTasks]) -> dict[str, Any]:
    """Train one model on ``batches`` and score it."""
    model = build(method, settings, num_fixed, p_drop)
    stream = iter(batches)
    trained = train_steps(model, lambda: next(stream), settings.steps, settings.lr, loss=step_loss)
    return {"method": method, "num_fixed": num_fixed, "p_drop": p_drop, "loglik": log_likelihood(model, test),
            "loglik_shifted": log_likelihood(model, shifted), "delta": deviation(model, test),
            "train_s": trained.seconds}


def ceiling_row(test: list[GPTasks], shifted: list[GPTasks]) -> dict[str, Any]:
    def mean(tasks: list[GPTasks]) -> float:
        return sum(float(gp_log_likelihood(batch).mean()) for batch in tasks) / len(tasks)

    return {"method": CEILING, "num_fixed": 0, "p_drop": 0.0, "loglik": mean(test), "loglik_shifted": mean(shifted),
            "delta": None, "train_s": 0.0}


def best_approximate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The approximate row with the highest in-distribution log-likelihood (chosen in distribution only)."""
    return max((r for r in rows if r["method"].startswith("approximate")), key=lambda r: r["loglik"])


def goals(rows: list[dict[str, Any]], tolerance: float) -> list[str]:
    """The two goal lines, from the rows."""
    by_method = {r["method"]: r for r in rows}
    strict, non_eq, best = by_method[STRICT], by_method[NON_EQUIVARIANT], best_approximate(rows)
    name = f"B={best['num_fixed']}, p_drop={best['p_drop']:g}"
    beats = best["loglik"] > strict["loglik"] and best["loglik"] > non_eq["loglik"]
    keeps = best["loglik_shifted"] >= strict["loglik_shifted"] - tolerance
    loses = non_eq["loglik_shifted"] < strict["loglik_shifted"] - tolerance
    return [
        f"approximate (best, {name}) beats strict and non-equivariant in distribution: {'yes' if beats else 'no'} "
        f"(log-likelihood {best['loglik']:.3f} vs {strict['loglik']:.3f} and {non_eq['loglik']:.3f})",
        f"beyond the domain the approximate model keeps the strict model's quality (within {tolerance:g} nats) and "
        f"the non-equivariant does not: {'yes' if keeps and loses else 'no'} (shifted log-likelihood "
        f"{best['loglik_shifted']:.3f} and {non_eq['loglik_shifted']:.3f} vs strict {strict['loglik_shifted']:.3f})",
    ]


@register_benchmark("fixed_inputs")
def fixed_inputs_benchmark(quick: bool = False, output_dir: str | Path | None = None) -> dict[str, Any]:
    """The table: strict, approximate (every B and p_drop) and non-equivariant ConvCNPs and the exact GP."""
    settings = FixedInputsSettings.quick() if quick else FixedInputsSettings()
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is as fast, and the numbers do not depend on it
    try:
        batches = training_batches(settings)
        test, shifted = evaluation_tasks(settings), evaluation_tasks(settings, settings.shift)
        rows = [train_row(*method, settings, batches, test, shifted) for method in methods(settings)]
    finally:
        torch.set_num_threads(threads)
    rows.append(ceiling_row(test, shifted))
    shown = [{**r, "delta": "-" if r["delta"] is None else r["delta"]} for r in rows]
    seconds = time.perf_counter() - start
    lines = [
        f"1-D GP regression (switching Gibbs kernel, contexts in [-2, 2], targets in [-4, 4]); every model "
        f"{settings.steps} Adam steps of {settings.batch_size} tasks (lr {settings.lr:g}, cosine), ConvCNP hidden "
        f"{settings.hidden}, {settings.layers} layers; fixed inputs live on {list(settings.domain)}; "
        f"loglik: per target on {settings.test_batches * settings.batch_size} test tasks, loglik_shifted: the same "
        f"tasks moved by {settings.shift:g}; delta: mean |prediction - its equivariant component's|",
        format_table(shown, COLUMNS), "",
        *goals(rows, settings.tolerance),
        f"total {seconds:.0f} s",
    ]
    return {"rows": rows, "settings": dataclasses.asdict(settings), "seconds": seconds, "text": "\n".join(lines)}
