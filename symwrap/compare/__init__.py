"""Which strategy for my model and data? Every strategy that applies, trained from the same weights for the same
number of optimizer steps, in one table (``symwrap.compare``).

Rows: the bare backbone and plain augmentation (controls), then every registered strategy that takes this
backbone, group and data (those that refuse it are listed with the reason). Columns, all measured in this run:
the test metric as given and under random group elements (accuracy for integer targets, MSE otherwise), the
relative equivariance error E′ on a test batch (and, for finite groups, E′ under each element), training seconds,
inference time relative to the bare backbone (same batch, interleaved medians) and the parameter count. The
recommendation is computed from the table: the best metric under random group elements among the rows within
``max_inference_ratio``.

The cloning row gets the registry's default teacher for the group and actions where there is one, trained on the
same data for the same steps (counted in the row), then cloned (:mod:`symwrap.compare.teacher`). With an
``output_dir`` every finished row is stored and a later run with the same settings reads it back instead of
training it (:mod:`symwrap.compare.store`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..actions import Action, ActionSpec, get_action
from ..errors import ConfigError, SymwrapError
from ..groups import Group, get_group
from .measure import element_labels, evaluate, held_out_score, inference_ratios, task_step_loss, train_steps
from .report import CompareReport, recommend
from .store import RowStore, data_digest, loader_size, plain
from .teacher import NO_TEACHER, clones, cloning_step_loss, prepare_teacher

__all__ = ["CompareReport", "compare"]

BARE, AUGMENTATION = "bare backbone", "augmentation"
CONTROLS = (BARE, AUGMENTATION)


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
    teacher_options: dict[str, Any] | None = None,
    progress: bool = False,
    output_dir: str | Path | None = None,
    force: bool = False,
    plots: bool = True,
    timing_rounds: int = 15,
) -> CompareReport:
    """Train a fresh ``backbone_factory()`` (same seed, so the same weights) through every strategy that applies.

    Args:
        train: a loader of ``(x, y)`` batches, cycled for ``steps`` optimizer steps.
        test: a loader of ``(x, y)`` batches the table is measured on.
        strategies: ``"all"`` (every registered strategy) or a list of names.
        steps: optimizer steps per row. A cloning row with a teacher spends the first half of them (rounded up)
            matching the teacher and the rest on its task loss; the teacher's own ``steps`` are reported apart.
        strategy_options: per strategy, extra ``wrap()`` keywords (``{"cloning": {"teacher": net}}``: a given
            teacher is cloned as it is, not trained).
        teacher_options: keywords for the registry's default teacher (``{"hidden": 8, "layers": 2}``).
        max_inference_ratio: the recommendation considers only rows at most this many times slower than the bare
            backbone at inference.
        progress: a progress bar per row (labelled with its name; the teacher's with ``"(teacher)"``).
        output_dir: store each finished row as ``rows/<method>.json`` there, and the report
            (:meth:`CompareReport.save`) at the end. A row already stored with the same settings (steps, lr,
            seed, group, actions, the train set's size and first batch, digests of the test set and the initial
            weights, the strategy's options, a cloning row's ``teacher_options``) is read back instead of
            trained; one stored with other settings is retrained and replaced (the settings that differ are
            printed). Inference ratios are measured afresh for every row in every run.
        force: retrain the rows already stored in ``output_dir``.
        plots: with ``output_dir``, also write the report's PNGs there (:meth:`CompareReport.save`).
        timing_rounds: interleaved rounds of the inference timing (each takes one ~20 ms sample of every model).

    Returns:
        a :class:`CompareReport`; ``report.table()`` prints it.
    """
    from .. import list_strategies, wrap

    for option, value in (("steps", steps), ("timing_rounds", timing_rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option} must be an integer >= 1; got {value!r}")
    group = get_group(group) if isinstance(group, str) else group
    input_action, output_action = get_action(input), get_action(output)
    names = list_strategies() if strategies == "all" else list(strategies)
    options = strategy_options or {}
    test_batches = list(test)
    if not test_batches:
        raise ConfigError("the test loader yielded no batches")
    x_probe, y_probe = test_batches[0]
    metric = "accuracy" if not torch.is_floating_point(y_probe) else "mse"
    store = RowStore(output_dir) if output_dir is not None else None

    def fresh() -> nn.Module:
        torch.manual_seed(seed)
        return backbone_factory()

    models: dict[str, nn.Module] = {BARE: fresh(), AUGMENTATION: fresh()}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            models[name] = wrap(fresh(), group=group, strategy=name, input=input, output=output, seed=seed,
                                **options.get(name, {}))
        except SymwrapError as error:
            skipped[name] = str(error).split(". ")[0]
    rewind = _rewinder(train, seed)
    rewind()
    first = next(iter(train), None)
    if first is None:
        raise ConfigError("the train loader yielded no batches")
    settings = {"steps": steps, "lr": lr, "seed": seed, "group": group.name, "input": input_action.spec(),
                "output": output_action.spec(), "train": {**loader_size(train), "first_batch": data_digest(first)},
                "test": data_digest(test_batches), "weights": data_digest(models[BARE])}
    rows, resumed = [], []
    for name, model in models.items():
        row_settings = {**settings, "options": plain(options.get(name, {}))}
        if clones(model):
            row_settings["teacher_options"] = plain(teacher_options or {})
        row = store.load(name, row_settings, force=force) if store is not None else None
        if row is None:
            row = _train_row(name, model, models[BARE], train, rewind, test_batches, metric, steps, lr, seed,
                             group, input_action, output_action, teacher_options or {}, progress)
            if store is not None:
                store.save(name, row_settings, row)
        else:
            resumed.append(name)
        rows.append(row)
    ratios = inference_ratios(models, x_probe, BARE, rounds=timing_rounds)
    for row in rows:
        row["inference_ratio"] = ratios[row["method"]]
    report = CompareReport(rows, skipped, metric, recommend(rows, metric, max_inference_ratio),
                           elements=element_labels(group, input_action, x_probe), resumed=resumed,
                           settings=plain(settings))
    if output_dir is not None:
        report.save(output_dir, plots=plots)
    return report


def _rewinder(loader: Iterable[Any], seed: int) -> Callable[[], None]:
    """A function that puts the random state a loader shuffles with back where it is now (the global one, and
    the loader's own ``generator``), so that every row (and a teacher) sees the same batches, resumed or not."""
    generator = getattr(loader, "generator", None)
    state = generator.get_state() if isinstance(generator, torch.Generator) else None

    def rewind() -> None:
        torch.manual_seed(seed)
        if state is not None:
            generator.set_state(state)

    return rewind


def _train_row(name: str, model: nn.Module, bare: nn.Module, loader: Iterable[Any], rewind: Callable[[], None],
               test_batches: list[Any], metric: str, steps: int, lr: float, seed: int, group: Group,
               input_action: Action, output_action: Action, teacher_options: dict[str, Any],
               progress: bool) -> dict[str, Any]:
    """Train one row for ``steps`` steps (a cloning row's teacher first) and measure it."""
    teacher: dict[str, Any] = {}
    if clones(model):
        rewind()
        teacher = prepare_teacher(model, name, bare, loader, test_batches[0][0], steps, lr, seed, group,
                                  input_action, output_action, teacher_options, progress)
    if teacher.get("teacher") not in (None, NO_TEACHER):
        teacher[f"teacher_{metric}"] = held_out_score(model.teacher, test_batches, metric)
        teacher["cloning_steps"] = (steps + 1) // 2
        step_loss = cloning_step_loss(model, teacher["cloning_steps"])
    else:
        augment = (group, input_action, output_action, seed) if name == AUGMENTATION else None
        step_loss = task_step_loss(model, augment=augment)
    rewind()
    seconds = train_steps(model, step_loss, loader, steps, lr, progress=progress, desc=name)
    return {"method": name, **evaluate(model, test_batches, metric, group, input_action, output_action, seed),
            "train_s": seconds + teacher.get("teacher_train_s", 0.0), "steps": steps,
            "parameters": sum(p.numel() for p in model.parameters()), **teacher}
