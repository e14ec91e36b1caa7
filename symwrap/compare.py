"""Which strategy for my model and data? Every strategy that applies, trained from the same weights for the same
number of optimizer steps, in one table (``symwrap.compare``).

Rows: the bare backbone and plain augmentation (controls), then every registered strategy that takes this
backbone, group and data (those that refuse it are listed with the reason). Columns, all measured in this run:
the test metric as given and under random group elements (accuracy for integer targets, MSE otherwise), the
relative equivariance error E′ on a test batch, training seconds, inference time relative to the bare backbone
(same batch, interleaved medians) and the parameter count. The recommendation is computed from the table: the
best metric under random group elements among the rows within ``max_inference_ratio``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .actions import ActionSpec, get_action
from .errors import ConfigError, SymwrapError
from .groups import Group, get_group
from .steps import cycle_batches, default_task_loss, run_steps

__all__ = ["CompareReport", "compare"]

CONTROLS = ("bare backbone", "augmentation")


@dataclasses.dataclass
class CompareReport:
    """The table of :func:`compare`: ``rows`` (one dict per trained model), ``skipped`` (strategy -> reason) and
    the recommendation line."""

    rows: list[dict[str, Any]]
    skipped: dict[str, str]
    metric: str
    recommendation: str

    def table(self) -> str:
        columns = ["method", self.metric, f"{self.metric} (moved)", "equivariance_error", "train_s",
                   "inference_ratio", "parameters"]
        cells = [[_cell(row.get(c)) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        lines += [f"not applicable: {name} ({reason})" for name, reason in self.skipped.items()]
        lines.append(self.recommendation)
        return "\n".join(lines)

    def save(self, directory: str | Path) -> Path:
        """``compare.csv`` and ``compare.json`` in ``directory``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "compare.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        (folder / "compare.json").write_text(json.dumps(dataclasses.asdict(self), indent=2, default=str) + "\n")
        return folder


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def compare(
    backbone_factory: Callable[[], nn.Module],
    train: Iterable[Any],
    test: Iterable[Any],
    *,
    group: str | Group,
    input: ActionSpec,
    output: ActionSpec = "invariant",
    strategies: str | list[str] = "all",
    steps: int = 200,
    lr: float = 1e-3,
    max_inference_ratio: float | None = None,
    seed: int = 0,
    strategy_options: dict[str, dict[str, Any]] | None = None,
    progress: bool = False,
) -> CompareReport:
    """Train a fresh ``backbone_factory()`` (same seed, so the same weights) through every strategy that applies.

    Args:
        train: a loader of ``(x, y)`` batches, cycled for ``steps`` optimizer steps.
        test: a loader of ``(x, y)`` batches the table is measured on.
        strategies: ``"all"`` (every registered strategy) or a list of names.
        strategy_options: per strategy, extra ``wrap()`` keywords (``{"cloning": {"teacher": net}}``).
        max_inference_ratio: the recommendation considers only rows at most this many times slower than the bare
            backbone at inference.

    Returns:
        a :class:`CompareReport`; ``report.table()`` prints it.
    """
    from . import list_strategies, wrap

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1; got {steps!r}")
    group = get_group(group) if isinstance(group, str) else group
    input_action, output_action = get_action(input), get_action(output)
    names = list_strategies() if strategies == "all" else list(strategies)
    options = strategy_options or {}
    test_batches = list(test)
    if not test_batches:
        raise ConfigError("the test loader yielded no batches")
    x_probe, y_probe = test_batches[0]
    metric = "accuracy" if not torch.is_floating_point(y_probe) else "mse"

    def fresh() -> nn.Module:
        torch.manual_seed(seed)
        return backbone_factory()

    models: dict[str, nn.Module] = {"bare backbone": fresh(), "augmentation": fresh()}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            models[name] = wrap(fresh(), group=group, strategy=name, input=input, output=output, seed=seed,
                                **options.get(name, {}))
        except SymwrapError as error:
            skipped[name] = str(error).split(". ")[0]
    rows = []
    for name, model in models.items():
        seconds = _train(model, name, train, steps, lr, seed, group, input_action, output_action, progress)
        rows.append({"method": name, **_evaluate(model, test_batches, metric, group, input_action, output_action,
                                                 seed), "train_s": seconds,
                     "parameters": sum(p.numel() for p in model.parameters())})
    ratios = _inference_ratios(models, x_probe)
    for row in rows:
        row["inference_ratio"] = ratios[row["method"]]
    return CompareReport(rows, skipped, metric, _recommend(rows, metric, max_inference_ratio))


def _train(model: nn.Module, name: str, loader: Iterable[Any], steps: int, lr: float, seed: int, group: Group,
           input_action: Any, output_action: Any, progress: bool) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)

    def step_loss(step: int, x: Any, y: Any) -> dict[str, torch.Tensor]:
        if name == "augmentation":  # the control: the bare backbone on randomly moved inputs and targets
            bound = input_action.bind(group, x)
            g = bound.sample(input_action.batch_size(x), generator=generator)
            x = input_action.act(bound, g, x)
            if torch.is_floating_point(y):
                y = output_action.act(bound, g, y)
        prediction = model(x)
        if hasattr(model, "loss"):
            return model.loss(prediction, y, x)
        return {"total": default_task_loss(prediction, y)}

    model.train()
    start = time.perf_counter()
    run_steps(step_loss, cycle_batches(loader), steps, optimizer, progress=progress, desc=name)
    model.eval()
    return time.perf_counter() - start


@torch.no_grad()
def _evaluate(model: nn.Module, batches: list[Any], metric: str, group: Group, input_action: Any,
              output_action: Any, seed: int) -> dict[str, float]:
    from .metrics import equivariance_error

    generator = torch.Generator().manual_seed(seed + 1)
    scores, moved_scores = [], []
    for x, y in batches:
        bound = input_action.bind(group, x)
        g = bound.sample(input_action.batch_size(x), generator=generator)
        moved_y = output_action.act(bound, g, y) if torch.is_floating_point(y) else y
        scores.append(_score(model(x), y, metric))
        moved_scores.append(_score(model(input_action.act(bound, g, x)), moved_y, metric))
    error = equivariance_error(model, batches[0][0], group, input=input_action, output=output_action,
                               generator=torch.Generator().manual_seed(seed + 2))
    return {metric: statistics.fmean(scores), f"{metric} (moved)": statistics.fmean(moved_scores),
            "equivariance_error": error}


def _score(prediction: torch.Tensor, y: torch.Tensor, metric: str) -> float:
    if metric == "accuracy":
        return float((prediction.argmax(dim=1) == y).double().mean())
    return float(((prediction - y) ** 2).mean())


def _inference_ratios(models: dict[str, nn.Module], x: Any, repeats: int = 5) -> dict[str, float]:
    """Each model's median inference time over the bare backbone's, calls interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for _ in range(repeats + 1):
            for name, model in models.items():
                start = time.perf_counter()
                model(copy.copy(x))
                samples[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values[1:]) for name, values in samples.items()}
    base = max(medians["bare backbone"], 1e-9)
    return {name: value / base for name, value in medians.items()}


def _recommend(rows: list[dict[str, Any]], metric: str, max_ratio: float | None) -> str:
    key = f"{metric} (moved)"
    eligible = [r for r in rows if max_ratio is None or r["inference_ratio"] <= max_ratio]
    if not eligible:
        return f"recommendation: none of the rows is within an inference ratio of {max_ratio}"
    best = (max if metric == "accuracy" else min)(eligible, key=lambda r: r[key])
    limit = "" if max_ratio is None else f" within {max_ratio}x the bare backbone's inference time"
    return (f"recommendation: {best['method']} — the best {key} ({best[key]:.3g}){limit}, inference ratio "
            f"{best['inference_ratio']:.2f}, E′ {best['equivariance_error']:.2g}")
