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
method's seconds per training step (interleaved medians, measured once per run). Every seed (default 3,
``--quick`` 1) draws its own data, initial weights, batch order and rotations; the goal lines count in how many
seeds REMUL beats augmentation. The step counts are printed, so a run can be
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
from .seeds import describe, group_by, seed_values, spread
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
        extra_seed_steps: the ladder of the seeds after the first (``None``: ``steps``), to fit a run in less time.
    """

    sizes: tuple[int, ...] = (100,)
    steps: tuple[int, ...] = (200, 600, 2000)
    burn_in: int = 3100
    alpha: float = 1.0
    beta: float = 1.0
    copies: int = 1
    timing_repeats: int = 15
    extra_seed_steps: tuple[int, ...] | None = None

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


def _short(method: str) -> str:
    return method.removeprefix("transformer + ")


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (comparison, size, budget, method): its step count and the spread of MSE and E′ over seeds."""
    summary = []
    for (comparison, size, budget, method), mine in group_by(rows, "comparison", "n_train", "budget",
                                                             "method").items():
        mse = spread([r["mse"] for r in mine])
        summary.append({"comparison": comparison, "n_train": size, "budget": budget, "method": method,
                        "steps": mine[0]["steps"], "seeds": len(mine), **{f"mse_{k}": v for k, v in mse.items()},
                        "equivariance_error_mean": spread([r["equivariance_error"] for r in mine])["mean"]})
    return summary


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """REMUL against augmentation for every budget, counted over the seeds of ``rows`` (each row has a ``seed``),
    and at which budgets the paper's ordering holds in every seed, in some, in none."""
    lines: list[str] = []
    verdicts: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    keys = sorted({(r["comparison"], r["n_train"], r["budget"]) for r in rows})
    for comparison, size, budget in keys:
        by_seed: dict[int, dict[str, dict[str, Any]]] = {}
        for r in rows:
            if (r["comparison"], r["n_train"], r["budget"]) == (comparison, size, budget):
                by_seed.setdefault(r["seed"], {})[r["method"]] = r
        seeds = sorted(by_seed)
        where = f"{size} traj x {budget} steps"
        for method in (REMUL_LABEL, REMUL_PREDICTION):
            ratios = [by_seed[s][method]["mse"] / by_seed[s][AUGMENTATION]["mse"] for s in seeds]
            errors = [by_seed[s][method]["equivariance_error"] / by_seed[s][AUGMENTATION]["equivariance_error"]
                      for s in seeds]
            held = sum(ratio < 1 for ratio in ratios)
            steps = sorted({by_seed[s][method]["steps"] for s in seeds})
            lines.append(f"{_short(method)} < augmentation at {comparison}, {where} ("
                         f"{', '.join(map(str, steps))} steps): holds in {held} of {len(seeds)} seeds, MSE ratio "
                         f"{describe(ratios, '.3f')}; E′ REMUL / augmentation {describe(errors, '.3f')}")
            verdicts.setdefault((comparison, method), []).append((where, held, len(seeds)))
        control = [by_seed[s][REMUL_LABEL]["mse"] / by_seed[s][AUGMENTATION_2]["mse"] for s in seeds]
        lines.append(f"control, {comparison}, {where}: REMUL (label) MSE / augmentation (2 copies, "
                     f"{by_seed[seeds[0]][AUGMENTATION_2]['steps']} steps) MSE {describe(control, '.3f')}, < 1 in "
                     f"{sum(ratio < 1 for ratio in control)} of {len(seeds)} seeds")
    for comparison in ("equal steps", "equal wall time"):
        for method in (REMUL_LABEL, REMUL_PREDICTION):
            found = verdicts.get((comparison, method), [])
            every = [where for where, held, n in found if held == n]
            some = [f"{where} ({held} of {n})" for where, held, n in found if 0 < held < n]
            none = [where for where, held, n in found if held == 0]
            parts = [f"{label} {', '.join(budgets)}" for label, budgets in
                     (("in every seed at", every), ("in some seeds at", some), ("in no seed at", none)) if budgets]
            lines.append(f"paper's ordering (REMUL < augmentation), {comparison}, {method}: holds "
                         + "; ".join(parts))
    return lines


def load(settings: Any, comparison: ComparisonSettings) -> dict[str, NBodyData]:
    """The training and test trajectories of ``settings.seed``."""
    return load_nbody(n_train=max(comparison.sizes), n_val=0, n_test=settings.n_test,
                      config=NBodyConfig(burn_in=comparison.burn_in), seed=settings.seed)


def seed_rows(settings: Any, comparison: ComparisonSettings, steps: tuple[int, ...], per_step: dict[str, float],
              data: dict[str, NBodyData] | None = None) -> list[dict[str, Any]]:
    """The rows of one seed (``settings.seed``: the data draw, the test set and its rotations, the initial
    weights, the batch order and the sampled rotations) for the budgets ``steps``; ``data``: that seed's
    :func:`load`, when already loaded."""
    from .nbody import evaluate, randomly_rotated

    data = load(settings, comparison) if data is None else data
    test = data["test"]
    rotated = randomly_rotated(test, settings.seed + 3)
    rows: list[dict[str, Any]] = []
    for size in comparison.sizes:
        train_data = data["train"][:size]
        for budget in steps:
            equal_time = equal_time_steps(budget, per_step)
            for label, counts in (("equal steps", dict.fromkeys(COMPARISON_METHODS, budget)),
                                  ("equal wall time", equal_time)):
                for method in COMPARISON_METHODS:
                    same = next((r for r in rows if (r["n_train"], r["method"], r["steps"]) ==
                                 (size, method, counts[method])), None)
                    metrics = ({k: same[k] for k in ("mse", "mse_rotated", "equivariance_error")} if same else
                               evaluate(train(method, train_data, counts[method], settings, comparison), test,
                                        rotated, settings))
                    rows.append({"seed": settings.seed, "comparison": label, "n_train": size, "budget": budget,
                                 "method": method, "steps": counts[method], **metrics,
                                 "seconds_per_step": per_step[method]})
    return rows


def augmentation_benchmark(quick: bool = False, comparison: ComparisonSettings | None = None,
                           seeds: int | None = None) -> dict[str, Any]:
    """The table of augmentation against REMUL at equal steps and equal wall time over ``seeds`` seeds (default
    3, ``--quick`` 1), its summary over seeds and goal lines counted over seeds.

    ``comparison``: other sizes, budgets or REMUL weights than the defaults (``--quick``: the quick ones)."""
    from .nbody import NBodySettings

    start = time.perf_counter()
    settings = NBodySettings.quick() if quick else NBodySettings()
    if comparison is None:
        comparison = ComparisonSettings.quick() if quick else ComparisonSettings()
    values = seed_values(seeds, settings.seed, quick=quick)
    first = dataclasses.replace(settings, seed=values[0])
    first_data = load(first, comparison)
    per_step = seconds_per_step(first_data["train"], first, comparison)
    rows: list[dict[str, Any]] = []
    for index, seed in enumerate(values):
        ladder = comparison.steps if index == 0 or comparison.extra_seed_steps is None else comparison.extra_seed_steps
        rows += seed_rows(dataclasses.replace(settings, seed=seed), comparison, ladder, per_step,
                          first_data if index == 0 else None)
    summary = summary_rows(rows)
    header = (f"charged N-body, burn-in {comparison.burn_in} steps, target 1,000 steps after t0, no normalisation; "
              f"{settings.n_test} test trajectories; transformer ({settings.transformer_layers} layers, width "
              f"{settings.transformer_hidden}); Adam lr {settings.lr:g}, cosine decay, batch {settings.batch_size}; "
              f"REMUL α = {comparison.alpha:g}, β = {comparison.beta:g} (constant), {comparison.copies} rotated "
              f"cop{'y' if comparison.copies == 1 else 'ies'} per input per step, like augmentation; equal wall time: "
              "each method gets augmentation's seconds for the budget, steps = seconds / its seconds per step "
              "(interleaved medians, measured once in this run on seed "
              f"{values[0]}'s data, so every seed trains the same step counts)")
    seeded = (f"seeds {', '.join(map(str, values))}: each draws its own training and test trajectories, test "
              "rotations, initial weights, batch order and sampled rotations")
    if comparison.extra_seed_steps is not None and len(values) > 1:
        seeded += (f"; budgets {', '.join(map(str, comparison.steps))} for seed {values[0]}, "
                   f"{', '.join(map(str, comparison.extra_seed_steps))} for the others")
    seconds = ", ".join(f"{m}: {1000 * s:.2f} ms" for m, s in per_step.items())
    lines = [header, seeded, f"seconds per training step: {seconds}", "", "per seed:",
             format_table(rows, ["seed", "comparison", "n_train", "budget", "method", "steps", "mse", "mse_rotated",
                                 "equivariance_error"]),
             "", "over seeds (std: sample standard deviation; E′: mean over seeds):",
             format_table(summary, ["comparison", "n_train", "budget", "method", "steps", "seeds", "mse_mean",
                                    "mse_std", "mse_min", "mse_max", "equivariance_error_mean"]),
             "", *goal_lines(rows)]
    result = {"rows": rows, "summary": summary, "seeds": values, "settings": dataclasses.asdict(settings),
              "comparison": dataclasses.asdict(comparison), "seconds_per_step": per_step,
              "seconds": time.perf_counter() - start}
    lines.append(f"total {result['seconds']:.0f} s")
    result["text"] = "\n".join(lines)
    return result
