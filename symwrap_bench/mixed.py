"""``symwrap bench mixed``: which symmetries REMUL's automatic per-group weights keep, on a task whose symmetry is
broken to a subgroup (the modified inertia task of Kim et al., "Regularizing Towards Soft Equivariance Under Mixed
Symmetries", PER, ICML 2023, arXiv 2306.00356).

Every seed (default 3, ``--quick`` 1), for α = 0 (the target is exactly O(3)-equivariant) and α > 0 (only O(2)
about z holds), trains with the
same optimizer budget (steps, batch, learning-rate schedule, sample stream): a plain MLP, the MLP with REMUL over the
candidate groups O3, O2z, O2y, O2x at a fixed β, and the same with ``beta="auto"``. It prints the test MSE of each,
the weights the automatic tuning ends with beside which groups the data obeys (measured on the data, not assumed),
their spread over seeds, and goal lines counted over the seeds.

What this is: symwrap's ``beta="auto"`` weighs *sampled output losses* ℓ(f(g·x), g·y) per group, each weight
β_g = β·(R_g / min R)^(−p) from the running mean R_g of that group's loss. PER instead regularises in *weight space*
(‖W − P_g W‖² with exact equivariant projectors P_g of an EMLP) and tunes its weights differently; only the claim is
shared (the weights of the symmetries the data breaks end small), not the mechanism.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch import nn

from symwrap import wrap
from symwrap.data import InertiaData, modified_inertia
from symwrap.groups import AxialO2, Group, get_group

from . import register_benchmark
from .loop import cosine_decay, train_steps
from .seeds import describe, group_by, seed_values, spread
from .timing import format_table

#: the candidate groups, in the order the tables list them (O(2) about x has no registry name: ``x`` writes products)
GROUP_NAMES = ("O3", "O2z", "O2y", "O2x")
PLAIN, FIXED, AUTO = "MLP", "MLP + REMUL (fixed beta)", "MLP + REMUL (beta=auto)"
COLUMNS = ["seed", "alpha", "method", "mse", *(f"weight_{name}" for name in GROUP_NAMES), "train_s"]
GROUP_COLUMNS = ["seed", "alpha", "group", "data_error", "holds", "loss_R", "weight_auto"]
#: how the groups act on the data: point masses in, one rank-2 tensor out
INPUT, OUTPUT = {"pos": "points", "mass": "scalars"}, "tensor"
#: a group "holds" on the data when its relative target error is at float64 round-off
HOLDS_BELOW = 1e-9


@dataclasses.dataclass
class MixedSettings:
    """Sizes and the shared optimizer budget."""

    alphas: tuple[float, ...] = (0.0, 0.3)
    n_train: int = 1000
    n_test: int = 1000
    steps: int = 3000
    batch_size: int = 100
    lr: float = 3e-3
    #: cosine decay of the learning rate to 0; off: at 3,000 steps the MLP still underfits, and a constant rate
    #: fits it better (measured: test MSE of beta=auto at alpha=0.3, 1.83 with cosine, 0.75 without)
    cosine: bool = False
    hidden: int = 128
    points: int = 5
    fixed_beta: float = 1.0
    auto_beta: float = 1.0
    auto_warmup_steps: int = 100
    auto_power: float = 1.0
    #: goals: at α > 0 every broken group's weight is at most this fraction of O2z's; at α = 0 the smallest weight
    #: is at least this fraction of the largest
    separation: float = 0.5
    seed: int = 0

    @classmethod
    def quick(cls) -> MixedSettings:
        return cls(n_train=200, n_test=200, steps=300, hidden=64, auto_warmup_steps=50)


class PointMassMLP(nn.Module):
    """An MLP on the flattened masses and positions, predicting the 3x3 tensor: no symmetry built in."""

    def __init__(self, points: int = 5, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(points * 4, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 9))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        features = torch.cat([x["pos"].flatten(1), x["mass"]], dim=1)
        return self.net(features).view(-1, 3, 3)


def candidate_groups() -> list[Group]:
    """O3, O2z, O2y from the registry and O(2) about x built directly."""
    return [AxialO2("x") if name == "O2x" else get_group(name) for name in GROUP_NAMES]


def data_error(data: InertiaData, group: Group, seed: int) -> float:
    """max over samples of ‖T(g·x) − g T(x) gᵀ‖ / ‖T(x)‖ on the data's own generator, in float64: 0 (round-off)
    when the data obeys ``group``."""
    from symwrap.data import modified_inertia_tensor

    g = group.sample(len(data), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mass, pos = data.mass.double(), data.pos.double()
    target = modified_inertia_tensor(mass, pos, data.alpha, data.axis)
    moved = modified_inertia_tensor(mass, pos @ g.transpose(-1, -2), data.alpha, data.axis)
    error = (moved - g @ target @ g.transpose(-1, -2)).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)
    return float(error.max())


def build(method: str, settings: MixedSettings) -> nn.Module:
    torch.manual_seed(settings.seed)  # every method starts from the same initial MLP
    backbone = PointMassMLP(settings.points, settings.hidden)
    if method == PLAIN:
        return backbone
    beta: float | str = settings.fixed_beta if method == FIXED else "auto"
    return wrap(backbone, group=candidate_groups(), strategy="remul", input=INPUT, output=OUTPUT,
                beta=beta, auto_beta=settings.auto_beta, auto_warmup_steps=settings.auto_warmup_steps,
                auto_power=settings.auto_power)


def train_row(method: str, alpha: float, settings: MixedSettings, train: InertiaData, test: InertiaData
              ) -> tuple[dict[str, Any], nn.Module]:
    model = build(method, settings)
    sampler = torch.Generator().manual_seed(settings.seed + 1)  # the same batches for every method

    def next_batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = train.subset(torch.randint(len(train), (settings.batch_size,), generator=sampler))
        return batch.inputs(), batch.target

    trained = train_steps(model, next_batch, settings.steps, settings.lr,
                          lambda pred, y: nn.functional.mse_loss(pred, y),
                          schedule=cosine_decay if settings.cosine else None)
    with torch.no_grad():
        mse = float(nn.functional.mse_loss(model(test.inputs()), test.target))
    weights = model.loss_weights() if method != PLAIN else {}
    row = {"seed": settings.seed, "alpha": alpha, "method": method, "mse": mse,
           **{f"weight_{name}": weights.get(f"beta_{name}", "-") for name in GROUP_NAMES},
           "train_s": trained.seconds}
    return row, model


def group_rows(alpha: float, auto: nn.Module, test: InertiaData, settings: MixedSettings) -> list[dict[str, Any]]:
    """Per candidate group: how far the data is from obeying it, the running loss R_g and the weight auto ended
    with."""
    weights = auto.loss_weights()
    running = auto.levels.running.tolist()
    return [
        {"seed": settings.seed, "alpha": alpha, "group": group.name,
         "data_error": (error := data_error(test, group, settings.seed + 7 + i)),
         "holds": "yes" if error < HOLDS_BELOW else "no", "loss_R": running[i],
         "weight_auto": weights[f"beta_{group.name}"]}
        for i, group in enumerate(candidate_groups())
    ]


def summary_rows(rows: list[dict[str, Any]], groups: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Over seeds: the test MSE of every (alpha, method), and per (alpha, group) the largest data error, whether
    the group holds (``"yes"``, ``"no"``, or ``"mixed"`` when seeds disagree) and the weight ``beta=auto`` ends with."""
    methods = []
    for (alpha, method), mine in group_by(rows, "alpha", "method").items():
        mse = spread([r["mse"] for r in mine])
        methods.append({"alpha": alpha, "method": method, "seeds": len(mine),
                        **{f"mse_{k}": v for k, v in mse.items()}})
    weights = []
    for (alpha, name), mine in group_by(groups, "alpha", "group").items():
        holds = {g["holds"] for g in mine}
        weight = spread([g["weight_auto"] for g in mine])
        weights.append({"alpha": alpha, "group": name, "seeds": len(mine),
                        "data_error_max": max(g["data_error"] for g in mine),
                        "holds": holds.pop() if len(holds) == 1 else "mixed",
                        **{f"weight_{k}": v for k, v in weight.items()}})
    return methods, weights


def _count(flags: list[bool]) -> str:
    return f"{'yes' if all(flags) else 'no'} ({sum(flags)} of {len(flags)} seeds"


def goals(rows: list[dict[str, Any]], groups: list[dict[str, Any]], separation: float) -> list[str]:
    """Goal lines counted over the seeds of the rows (each has a ``seed``): the weights ``beta=auto`` ends with per
    group, whether the largest is a group the data obeys in every seed, and the MSE ordering per seed."""
    lines = []
    short = {PLAIN: "MLP", FIXED: "fixed", AUTO: "auto"}
    for alpha in sorted({g["alpha"] for g in groups}):
        seeds = sorted({g["seed"] for g in groups if g["alpha"] == alpha})
        per_seed = {seed: {g["group"]: g for g in groups if (g["alpha"], g["seed"]) == (alpha, seed)}
                    for seed in seeds}
        names = list(per_seed[seeds[0]])
        listed = ", ".join(f"{name} {describe([per_seed[s][name]['weight_auto'] for s in seeds])}"
                           for name in names)
        lines.append(f"alpha={alpha:g}: weights beta=auto ends with over {len(seeds)} seeds: {listed}")
        kept = {s: sorted(n for n, g in per_seed[s].items() if g["holds"] == "yes") for s in seeds}
        broken = {s: sorted(n for n, g in per_seed[s].items() if g["holds"] == "no") for s in seeds}
        weights = {s: {n: g["weight_auto"] for n, g in per_seed[s].items()} for s in seeds}
        truth = {(tuple(kept[s]), tuple(broken[s])) for s in seeds}
        obeys = ("; ".join(f"seed {s} obeys {', '.join(kept[s])}" for s in seeds) if len(truth) > 1
                 else f"data obeys {', '.join(kept[seeds[0]]) or 'none'}"
                 + (f"; breaks {', '.join(broken[seeds[0]])}" if broken[seeds[0]] else ""))
        if any(broken.values()):
            tops = {s: max(weights[s], key=weights[s].get) for s in seeds}
            lines.append(f"alpha={alpha:g} ({obeys}): the largest weight is a group the data obeys in every seed: "
                         f"{_count([tops[s] in kept[s] for s in seeds])}; largest per seed: "
                         f"{', '.join(tops[s] for s in seeds)})")
            ratios = {s: max(weights[s][n] for n in broken[s]) / min(weights[s][n] for n in kept[s]) for s in seeds}
            lines.append(f"alpha={alpha:g}: every broken group's weight is <= {separation:g}x the smallest kept one "
                         f"in every seed: {_count([ratios[s] <= separation for s in seeds])}; largest broken / "
                         f"smallest kept per seed: {', '.join(f'{ratios[s]:.3g}' for s in seeds)})")
        else:
            ratios = {s: min(weights[s].values()) / max(weights[s].values()) for s in seeds}
            lines.append(f"alpha={alpha:g} ({obeys}): all weights comparable (smallest >= {separation:g}x largest) "
                         f"in every seed: {_count([ratios[s] >= separation for s in seeds])}; smallest/largest per "
                         f"seed: {', '.join(f'{ratios[s]:.3g}' for s in seeds)})")
        orderings, best = [], []
        for seed in seeds:
            mse = {r["method"]: r["mse"] for r in rows if (r["alpha"], r["seed"]) == (alpha, seed)}
            ranked = sorted(mse, key=mse.get)
            orderings.append(f"seed {seed}: " + " < ".join(f"{short[m]} {mse[m]:.3g}" for m in ranked))
            best.append(mse[AUTO] < mse[PLAIN] and mse[AUTO] <= mse[FIXED])
        lines.append(f"alpha={alpha:g}: beta=auto has the lowest test MSE of the three in every seed: {_count(best)}"
                     f"); test MSE per seed: {'; '.join(orderings)}")
    return lines


@register_benchmark("mixed")
def mixed_benchmark(quick: bool = False, seeds: int | None = None) -> dict[str, Any]:
    """The table: plain MLP, fixed-β REMUL and ``beta="auto"`` REMUL over O3, O2z, O2y, O2x, for every α and every
    one of ``seeds`` seeds (default 3, ``--quick`` 1), with its summary over seeds."""
    settings = MixedSettings.quick() if quick else MixedSettings()
    values = seed_values(seeds, settings.seed, quick=quick)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP: one thread is as fast, and the numbers do not depend on it
    rows, groups = [], []
    try:
        for seed in values:
            seeded = dataclasses.replace(settings, seed=seed)
            for alpha in settings.alphas:
                train = modified_inertia(settings.n_train, alpha=alpha, points=settings.points, seed=seed)
                test = modified_inertia(settings.n_test, alpha=alpha, points=settings.points, seed=seed + 1)
                for method in (PLAIN, FIXED, AUTO):
                    row, model = train_row(method, alpha, seeded, train, test)
                    rows.append(row)
                groups += group_rows(alpha, model, test, seeded)
    finally:
        torch.set_num_threads(threads)
    methods, weights = summary_rows(rows, groups)
    seconds = time.perf_counter() - start
    lines = [
        f"modified inertia (PER, arXiv 2306.00356): {settings.points} point masses -> I + alpha (I z) z^T; "
        f"{settings.n_train} training / {settings.n_test} test samples per alpha; every model {settings.steps} Adam "
        f"steps of {settings.batch_size} (lr {settings.lr:g}, {'cosine' if settings.cosine else 'constant'}), "
        f"MLP hidden {settings.hidden}, the same batches; "
        f"REMUL: label target l(f(g.x), g.y), one sampled element per group per step, candidates "
        f"{', '.join(GROUP_NAMES)}; fixed beta = {settings.fixed_beta:g} each; beta=auto: equal weights for "
        f"{settings.auto_warmup_steps} steps, then beta_g = {settings.auto_beta:g} * (R_g / min R)^-"
        f"{settings.auto_power:g}, R_g the running mean of group g's loss",
        "This rescales sampled output losses per group; PER regularises weights with exact projectors "
        "(||W - P W||^2): the same question, a different mechanism.",
        f"seeds {', '.join(map(str, values))}: each draws its own training and test samples, initial MLP, batch "
        "order and sampled group elements",
        format_table(rows, COLUMNS), "",
        "weights beta=auto ends with, against the truth (data_error: max relative ||T(g.x) - g T(x) g^T|| on the "
        "test set; holds: at round-off)",
        format_table(groups, GROUP_COLUMNS), "",
        "over seeds (std: sample standard deviation):",
        format_table(methods, ["alpha", "method", "seeds", "mse_mean", "mse_std", "mse_min", "mse_max"]), "",
        format_table(weights, ["alpha", "group", "seeds", "data_error_max", "holds", "weight_mean", "weight_std",
                               "weight_min", "weight_max"]), "",
        *goals(rows, groups, settings.separation),
        f"total {seconds:.0f} s",
    ]
    return {"rows": rows, "groups": groups, "summary": methods, "summary_groups": weights, "seeds": values,
            "settings": dataclasses.asdict(settings), "seconds": seconds, "text": "\n".join(lines)}
