"""``symwrap bench nbody --strategy augmentation``: does REMUL beat rotation augmentation when data are scarce?

arXiv 2410.17878 (Table 1, N-body, 100 training trajectories) reports a transformer at 8.99e-3 MSE, 4.20e-3 with
augmentation and 1.94e-3 with REMUL. This run puts the same three training rules side by side on one transformer:

* augmentation: the task loss on one randomly rotated copy of each trajectory per step;
* REMUL (label): α·ℓ(f(x), y) + β·ℓ(f(g·x), g·y), the paper's loss (one rotated copy per input per step,
  batched with the others into one backbone call);
* REMUL (prediction): α·ℓ(f(x), y) + β·‖f(g·x) − g·f(x)‖², the self-consistency reading of the loss;
* augmentation (2 copies), the control: two rotated copies of each input per step, as many backbone inputs as
  REMUL's x and g·x.

They are compared twice for every budget of the ladder ``steps``: at equal optimizer steps, and at equal wall time,
where every method gets the seconds augmentation took for that many steps, converted into a step count with each
method's seconds per training step (interleaved medians, same run). The step counts are printed, so a run can be
repeated step for step. The data follow EGNN's ``nbody_small`` timing (``burn_in=3100``: ``t0`` at step 3,100, the
target 1,000 steps later), which the REMUL paper takes over; no normalisation (EGNN's protocol has none).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch import nn

from symwrap import wrap
from symwrap.actions import get_action
from symwrap.data import NBodyConfig, NBodyData, load_nbody
from symwrap.groups import get_group

from .loop import train_steps
from .timing import format_table, median_seconds

AUGMENTATION = "transformer + augmentation"
REMUL_LABEL = "transformer + REMUL (label)"
REMUL_PREDICTION = "transformer + REMUL (prediction)"
#: the control: augmentation with as many backbone inputs per step as REMUL (two rotated copies of each input)
AUGMENTATION_2 = "transformer + augmentation (2 copies)"
COMPARISON_METHODS = (AUGMENTATION, REMUL_LABEL, REMUL_PREDICTION, AUGMENTATION_2)


@dataclasses.dataclass
class ComparisonSettings:
    """The budgets and the REMUL loss of the comparison (model sizes, lr, batch and test set: :class:`NBodySettings`).

    Attributes:
        sizes: training set sizes (trajectories).
        steps: the ladder of optimizer-step budgets, each trained from scratch with its own cosine schedule.
        burn_in: integrator steps before ``t0`` (EGNN's ``nbody_small``: 3,100).
        alpha, beta: REMUL's weights of the task and equivariance losses.
        copies: rotated copies per input per step (augmentation and REMUL alike).
        timing_repeats: interleaved repeats of one training step per method, for the seconds per step.
    """

    sizes: tuple[int, ...] = (100,)
    steps: tuple[int, ...] = (200, 600, 2000)
    burn_in: int = 3100
    alpha: float = 1.0
    beta: float = 1.0
    copies: int = 1
    timing_repeats: int = 15

    @classmethod
    def quick(cls) -> ComparisonSettings:
        return cls(sizes=(100,), steps=(20, 60), burn_in=0, timing_repeats=3)


def build(method: str, settings: Any, comparison: ComparisonSettings) -> nn.Module:
    """The transformer of the nbody benchmark, bare (augmentation) or wrapped with REMUL."""
    from .nbody import GROUP, INPUT, OUTPUT, build_transformer

    backbone = build_transformer(settings)
    if method in (AUGMENTATION, AUGMENTATION_2):
        return backbone
    target = "label" if method == REMUL_LABEL else "prediction"
    return wrap(backbone, group=GROUP, strategy="remul", input=INPUT, output=OUTPUT, alpha=comparison.alpha,
                beta=comparison.beta, target=target, num_samples_train=comparison.copies, seed=settings.seed)


def _batches(method: str, data: NBodyData, settings: Any, comparison: ComparisonSettings):
    """``next_batch`` for :func:`train_steps`: the same seeded draws for every method; augmentation moves
    ``copies`` rotated copies of the batch (one batch of ``copies × batch_size``)."""
    from .nbody import GROUP, INPUT, OUTPUT

    generator = torch.Generator().manual_seed(settings.seed + 1)
    group, action, output = get_group(GROUP), get_action(INPUT), get_action(OUTPUT)
    batch_size = min(settings.batch_size, len(data))
    copies = {AUGMENTATION: comparison.copies, AUGMENTATION_2: 2 * comparison.copies}.get(method)

    def next_batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = data[torch.randperm(len(data), generator=generator)[:batch_size]]
        x, y = batch.inputs(), batch.target
        if copies is not None:
            x, y = action.repeat(x, copies), output.repeat(y, copies)
            g = group.sample(batch_size * copies, generator=generator)
            x, y = action.act(group, g, x), output.act(group, g, y)
        return x, y

    return next_batch


def _mse(prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((prediction - y) ** 2).mean()


def train(method: str, data: NBodyData, steps: int, settings: Any, comparison: ComparisonSettings) -> nn.Module:
    torch.manual_seed(settings.seed)
    model = build(method, settings, comparison)
    train_steps(model, _batches(method, data, settings, comparison), steps, settings.lr, _mse)
    return model


def seconds_per_step(data: NBodyData, settings: Any, comparison: ComparisonSettings) -> dict[str, float]:
    """Median seconds of one training step (batch, forward, loss, backward, Adam) per method, interleaved."""
    steps = {}
    for method in COMPARISON_METHODS:
        torch.manual_seed(settings.seed)
        model = build(method, settings, comparison).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        next_batch = _batches(method, data, settings, comparison)

        def step(model=model, optimizer=optimizer, next_batch=next_batch) -> None:
            with torch.enable_grad():  # median_seconds times without gradients
                x, y = next_batch()
                value = model.loss(model(x), y, x)["total"] if hasattr(model, "loss") else _mse(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()

        steps[method] = step
    return median_seconds(steps, repeats=comparison.timing_repeats)


def equal_time_steps(steps: int, per_step: dict[str, float]) -> dict[str, int]:
    """Each method's step count in the seconds augmentation takes for ``steps`` steps (at least one)."""
    budget = steps * per_step[AUGMENTATION]
    return {method: max(1, round(budget / seconds)) for method, seconds in per_step.items()}


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """REMUL against augmentation for every row pair, and at which budgets the paper's ordering holds."""
    lines: list[str] = []
    verdicts: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    keys = sorted({(r["n_train"], r["budget"], r["comparison"]) for r in rows}, key=lambda k: (k[2], k[0], k[1]))
    for size, budget, comparison in keys:
        by_method = {r["method"]: r for r in rows
                     if (r["n_train"], r["budget"], r["comparison"]) == (size, budget, comparison)}
        augmentation = by_method[AUGMENTATION]
        for method in (REMUL_LABEL, REMUL_PREDICTION):
            remul = by_method[method]
            holds = remul["mse"] < augmentation["mse"]
            lines.append(
                f"{comparison}, {size} trajectories, budget {budget} augmentation steps, {method} "
                f"({remul['steps']} steps): MSE {remul['mse']:.4g} vs augmentation {augmentation['mse']:.4g}, ratio "
                f"{remul['mse'] / augmentation['mse']:.3f} (goal < 1: {'holds' if holds else 'does not hold'}); "
                f"E′ REMUL / augmentation = {remul['equivariance_error'] / augmentation['equivariance_error']:.3f}")
            verdicts.setdefault((comparison, method), []).append((f"{size} trajectories × {budget} steps", holds))
        control = by_method[AUGMENTATION_2]
        lines.append(f"control, {comparison}, {size} trajectories, budget {budget}: REMUL (label) MSE / augmentation "
                     f"(2 copies, {control['steps']} steps) MSE = {by_method[REMUL_LABEL]['mse'] / control['mse']:.3f}")
    for comparison in ("equal steps", "equal wall time"):
        for method in (REMUL_LABEL, REMUL_PREDICTION):
            found = verdicts.get((comparison, method), [])
            held = [budget for budget, holds in found if holds]
            missed = [budget for budget, holds in found if not holds]
            where = (f"holds at {', '.join(held)}" if held else "holds at no budget of this run") + (
                f"; not at {', '.join(missed)}" if held and missed else "")
            lines.append(f"paper's ordering (REMUL < augmentation), {comparison}, {method}: {where}")
    return lines


def augmentation_benchmark(quick: bool = False, comparison: ComparisonSettings | None = None) -> dict[str, Any]:
    """The table of augmentation against REMUL at equal steps and equal wall time, with its goal lines.

    ``comparison``: other sizes, budgets or REMUL weights than the defaults (``--quick``: the quick ones)."""
    from .nbody import NBodySettings, evaluate, randomly_rotated

    start = time.perf_counter()
    settings = NBodySettings.quick() if quick else NBodySettings()
    if comparison is None:
        comparison = ComparisonSettings.quick() if quick else ComparisonSettings()
    data = load_nbody(n_train=max(comparison.sizes), n_val=0, n_test=settings.n_test,
                      config=NBodyConfig(burn_in=comparison.burn_in), seed=settings.seed)
    test = data["test"]
    rotated = randomly_rotated(test, settings.seed + 3)
    per_step = seconds_per_step(data["train"], settings, comparison)
    rows: list[dict[str, Any]] = []
    for size in comparison.sizes:
        train_data = data["train"][:size]
        for budget in comparison.steps:
            equal_time = equal_time_steps(budget, per_step)
            for label, counts in (("equal steps", dict.fromkeys(COMPARISON_METHODS, budget)),
                                  ("equal wall time", equal_time)):
                for method in COMPARISON_METHODS:
                    same = next((r for r in rows if (r["n_train"], r["method"], r["steps"]) ==
                                 (size, method, counts[method])), None)
                    metrics = ({k: same[k] for k in ("mse", "mse_rotated", "equivariance_error")} if same else
                               evaluate(train(method, train_data, counts[method], settings, comparison), test,
                                        rotated, settings))
                    rows.append({"comparison": label, "n_train": size, "budget": budget, "method": method,
                                 "steps": counts[method], **metrics,
                                 "seconds_per_step": per_step[method]})
    header = (f"charged N-body, burn-in {comparison.burn_in} steps, target 1,000 steps after t0, no normalisation; "
              f"{settings.n_test} test trajectories; transformer ({settings.transformer_layers} layers, width "
              f"{settings.transformer_hidden}); Adam lr {settings.lr:g}, cosine decay, batch {settings.batch_size}; "
              f"REMUL α = {comparison.alpha:g}, β = {comparison.beta:g} (constant), {comparison.copies} rotated "
              f"cop{'y' if comparison.copies == 1 else 'ies'} per input per step, like augmentation; equal wall time: "
              "each method gets augmentation's seconds for the budget, steps = seconds / its seconds per step "
              "(interleaved medians, this run)")
    seconds = ", ".join(f"{m}: {1000 * s:.2f} ms" for m, s in per_step.items())
    lines = [header, f"seconds per training step: {seconds}",
             format_table(rows, ["comparison", "n_train", "budget", "method", "steps", "mse", "mse_rotated",
                                 "equivariance_error"]),
             "", *goal_lines(rows)]
    result = {"rows": rows, "settings": dataclasses.asdict(settings), "comparison": dataclasses.asdict(comparison),
              "seconds_per_step": per_step, "seconds": time.perf_counter() - start}
    lines.append(f"total {result['seconds']:.0f} s")
    result["text"] = "\n".join(lines)
    return result
