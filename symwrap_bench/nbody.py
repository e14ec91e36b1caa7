"""``symwrap bench nbody``: REMUL on the charged N-body system (arXiv 2410.17878, Table 1).

One run trains, with the same optimizer budget (steps, batch, learning-rate schedule), a plain
transformer over the particles, the same transformer with rotation augmentation, with REMUL
(constant β and GradNorm weights) and an EGNN of matched parameter count, for 100 and 3,000
training trajectories; all are tested on 2,000 test trajectories, upright and rotated. Inference
time is measured in the same run on the same batch, calls interleaved, relative to the plain
transformer. A β sweep at the smallest training size shows the trade-off between task error
and equivariance error (table, and a PNG with ``--output-dir``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from symwrap import wrap
from symwrap.actions import get_action
from symwrap.data import NBodyData, load_nbody
from symwrap.errors import ConfigError
from symwrap.groups import get_group
from symwrap.metrics import equivariance_error
from symwrap.nn import EGNNDynamics, ParticleTransformer

from . import register_benchmark
from .loop import train_steps
from .timing import format_table, median_seconds

INPUT = {"pos": "points", "vel": "vectors", "charge": "scalars"}
OUTPUT = "points"
GROUP = "SO3"
METHODS = ("transformer", "transformer + augmentation", "transformer + REMUL (constant)",
           "transformer + REMUL (GradNorm)", "EGNN")


@dataclasses.dataclass
class NBodySettings:
    """Sizes and the shared optimizer budget of the benchmark."""

    sizes: tuple[int, ...] = (100, 3000)
    n_test: int = 2000
    steps: int = 1500
    batch_size: int = 100
    lr: float = 5e-4
    #: the transformer: two wide layers (126 k parameters) against EGNN's four (134 k)
    transformer_hidden: int = 96
    transformer_layers: int = 2
    transformer_feedforward: int = 128
    egnn_hidden: int = 64
    egnn_layers: int = 4
    beta: float = 1.0
    sweep_betas: tuple[float, ...] = (0.0, 0.01, 0.1, 1.0, 10.0)
    sweep_steps: int = 1000
    metric_inputs: int = 500
    metric_samples: int = 4
    timing_repeats: int = 20
    timing_batches: tuple[int, ...] = (100, 1000)
    #: group elements per input for averaging and probabilistic symmetrization: (training, evaluation);
    #: 4 in training matches the backbone calls of frame averaging (the 4 frames of SO(3))
    symmetrization_samples: tuple[int, int] = (4, 8)
    #: noise of the rotation interface, relative to the cloud's radius (a sweep chose it; see the docs)
    frame_noise_scale: float = 1.0
    seed: int = 0

    @classmethod
    def quick(cls) -> NBodySettings:
        return cls(sizes=(100, 300), n_test=200, steps=300, lr=3e-3, transformer_hidden=32, transformer_layers=1,
                   transformer_feedforward=64, egnn_hidden=32, egnn_layers=1, sweep_betas=(0.0, 1.0),
                   sweep_steps=60, metric_inputs=100, metric_samples=2, timing_repeats=5, timing_batches=(100,),
                   symmetrization_samples=(2, 4))


def randomly_rotated(data: NBodyData, seed: int) -> NBodyData:
    """Every trajectory turned by its own random rotation (inputs and target alike)."""
    group = get_group(GROUP)
    g = group.sample(len(data), generator=torch.Generator().manual_seed(seed))
    inputs = get_action(INPUT).act(group, g, data.inputs())
    return NBodyData(inputs["pos"], inputs["vel"], inputs["charge"], get_action(OUTPUT).act(group, g, data.target))


def build_transformer(settings: NBodySettings) -> nn.Module:
    return ParticleTransformer(hidden=settings.transformer_hidden, layers=settings.transformer_layers,
                               feedforward=settings.transformer_feedforward)


def _build(method: str, settings: NBodySettings) -> nn.Module:
    if method == "EGNN":
        return EGNNDynamics(hidden=settings.egnn_hidden, layers=settings.egnn_layers)
    backbone = build_transformer(settings)
    if "REMUL" in method:
        weighting = "gradnorm" if "GradNorm" in method else "constant"
        return wrap(backbone, group=GROUP, strategy="remul", input=INPUT, output=OUTPUT, alpha=1.0,
                    beta=settings.beta, weighting=weighting, seed=settings.seed)
    return backbone


def train(model: nn.Module, data: NBodyData, settings: NBodySettings, *, augment: bool = False,
          steps: int | None = None) -> float:
    """Adam with cosine decay for ``steps`` steps of ``batch_size`` trajectories; returns the seconds taken.

    A wrapped model trains on ``model.loss(model(x), y, x)["total"]``, the others on the MSE.
    """
    generator = torch.Generator().manual_seed(settings.seed + 1)
    group, action, output = get_group(GROUP), get_action(INPUT), get_action(OUTPUT)
    batch_size = min(settings.batch_size, len(data))

    def next_batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = data[torch.randperm(len(data), generator=generator)[:batch_size]]
        x, y = batch.inputs(), batch.target
        if augment:
            g = group.sample(batch_size, generator=generator)
            x, y = action.act(group, g, x), output.act(group, g, y)
        return x, y

    return train_steps(model, next_batch, settings.steps if steps is None else steps, settings.lr,
                       lambda prediction, y: ((prediction - y) ** 2).mean()).seconds


@torch.no_grad()
def mse(model: nn.Module, data: NBodyData, batch_size: int = 500) -> float:
    """Mean squared error of the predicted positions over ``data``."""
    total = 0.0
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size]
        total += float(((model(batch.inputs()) - batch.target) ** 2).mean()) * len(batch)
    return total / len(data)


def evaluate(model: nn.Module, test: NBodyData, rotated: NBodyData, settings: NBodySettings) -> dict[str, float]:
    """Test MSE upright and rotated, and the relative SO(3) equivariance error E′."""
    return {"mse": mse(model, test), "mse_rotated": mse(model, rotated),
            "equivariance_error": symmetry_error(model, test, settings)}


def symmetry_error(model: nn.Module, test: NBodyData, settings: NBodySettings,
                   metric: Callable[..., float] = equivariance_error) -> float:
    """``metric`` (E′ by default) of the predicted positions on the first ``metric_inputs`` test
    trajectories, each turned by ``metric_samples`` seeded rotations."""
    return metric(model, test[: settings.metric_inputs].inputs(), GROUP, input=INPUT, output=OUTPUT,
                  n=settings.metric_samples, generator=torch.Generator().manual_seed(settings.seed + 2))


def _parameters(model: nn.Module) -> int:
    module = getattr(model, "backbone", model)
    return sum(p.numel() for p in module.parameters())


def main_table(settings: NBodySettings, splits: dict[int, NBodyData], test: NBodyData,
               rotated: NBodyData) -> list[dict[str, Any]]:
    rows = []
    for size in settings.sizes:
        models = {}
        for method in METHODS:
            torch.manual_seed(settings.seed)
            model = _build(method, settings)
            seconds = train(model, splits[size], settings, augment="augmentation" in method)
            models[method] = model
            rows.append({"n_train": size, "method": method, **evaluate(model, test, rotated, settings),
                         "parameters": _parameters(model), "train_s": seconds})
        for batch_size in settings.timing_batches:
            batch = test[:batch_size].inputs()
            calls = {m: (lambda model=model, batch=batch: model(batch)) for m, model in models.items()}
            timings = median_seconds(calls, repeats=settings.timing_repeats)
            for row in rows[-len(METHODS):]:
                row[f"inference_ms_b{batch_size}"] = 1000 * timings[row["method"]]
                row[f"inference_vs_transformer_b{batch_size}"] = timings[row["method"]] / timings["transformer"]
    return rows


def beta_sweep(settings: NBodySettings, train_data: NBodyData, test: NBodyData,
               rotated: NBodyData) -> list[dict[str, Any]]:
    rows = []
    for beta in settings.sweep_betas:
        torch.manual_seed(settings.seed)
        model = wrap(build_transformer(settings), group=GROUP,
                     strategy="remul", input=INPUT, output=OUTPUT, beta=beta, seed=settings.seed)
        train(model, train_data, settings, steps=settings.sweep_steps)
        rows.append({"n_train": len(train_data), "beta": beta, **evaluate(model, test, rotated, settings)})
    return rows


def plot_sweep(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test MSE and E′ against β (symmetric-log axis, so β = 0 shows)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2))
    betas = [row["beta"] for row in rows]
    for axis, key, label in zip(figure.subplots(1, 2), ("mse", "equivariance_error"), ("test MSE", "E′ (SO3)")):
        axis.plot(betas, [row[key] for row in rows], marker="o")
        axis.set_xscale("symlog", linthresh=0.01)
        axis.set_yscale("log")
        axis.set_xlabel("β")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    figure.suptitle(f"REMUL on N-body, {rows[0]['n_train']} training trajectories")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def _goals(rows: list[dict[str, Any]], size: int, batches: tuple[int, ...]) -> list[str]:
    by_method = {r["method"]: r for r in rows if r["n_train"] == size}
    transformer, egnn = by_method["transformer"], by_method["EGNN"]
    lines = []
    for method in ("transformer + REMUL (constant)", "transformer + REMUL (GradNorm)"):
        remul = by_method[method]
        speed = ", ".join(f"batch {b}: {remul[f'inference_ms_b{b}'] / egnn[f'inference_ms_b{b}']:.3f}"
                          for b in batches)
        lines.append(f"{size} trajectories, {method}: MSE / transformer MSE = {remul['mse'] / transformer['mse']:.3f} "
                     f"(goal <= 0.35); inference time / EGNN's: {speed} (goal <= 0.333)")
    return lines


SYMMETRIZATION_METHODS = ("transformer", "transformer + group averaging", "transformer + frame averaging",
                          "transformer + canonicalization", "transformer + probabilistic symmetrization")


def _symmetrized(method: str, settings: NBodySettings) -> nn.Module:
    backbone = build_transformer(settings)
    spec = {"group": GROUP, "input": INPUT, "output": OUTPUT, "seed": settings.seed}
    k_train, k_eval = settings.symmetrization_samples
    if method == "transformer + group averaging":
        return wrap(backbone, strategy="averaging", num_samples=k_train, num_samples_eval=k_eval, **spec)
    if method == "transformer + frame averaging":
        return wrap(backbone, strategy="frames", **spec)
    if method == "transformer + canonicalization":
        return wrap(backbone, strategy="canonicalization", canonicalizer="equivariant", prior_weight=0.0, **spec)
    if method == "transformer + probabilistic symmetrization":
        return wrap(backbone, strategy="symmetrization", num_samples_train=k_train, num_samples_eval=k_eval,
                    hidden=settings.egnn_hidden // 2, layers=2, frame_noise_scale=settings.frame_noise_scale, **spec)
    return backbone


def symmetrization_table(settings: NBodySettings, train_data: NBodyData, test: NBodyData,
                         rotated: NBodyData) -> list[dict[str, Any]]:
    """The transformer made SO(3)-equivariant by each symmetrization strategy, same budget."""
    rows, models = [], {}
    for method in SYMMETRIZATION_METHODS:
        torch.manual_seed(settings.seed)
        model = _symmetrized(method, settings)
        seconds = train(model, train_data, settings)
        models[method] = model
        rows.append({"n_train": len(train_data), "method": method, **evaluate(model, test, rotated, settings),
                     "train_s": seconds})
    for row in rows:
        row["epoch_time_vs_transformer"] = row["train_s"] / rows[0]["train_s"]
    return rows


def _symmetrization_goal(rows: list[dict[str, Any]]) -> str:
    by_method = {row["method"]: row["mse"] for row in rows}
    ps = by_method["transformer + probabilistic symmetrization"]
    frames, canonical = by_method["transformer + frame averaging"], by_method["transformer + canonicalization"]
    return (f"probabilistic symmetrization MSE / frame averaging's = {ps / frames:.3f}, "
            f"/ canonicalization's = {ps / canonical:.3f} (goal: both < 1)")


def _symmetrization_benchmark(settings: NBodySettings) -> dict[str, Any]:
    start = time.perf_counter()
    size = max(settings.sizes)
    data = load_nbody(n_train=size, n_val=0, n_test=settings.n_test, seed=settings.seed)
    test = data["test"]
    rows = symmetrization_table(settings, data["train"], test, randomly_rotated(test, settings.seed + 3))
    k_train, k_eval = settings.symmetrization_samples
    text = "\n".join([
        f"charged N-body, {size} training and {settings.n_test} test trajectories; the same transformer made "
        f"SO(3)-equivariant by each strategy, every model {settings.steps} Adam steps of {settings.batch_size} "
        f"(lr {settings.lr:g}); sampled strategies use {k_train} element(s) per input in training, {k_eval} at test "
        f"(frame averaging: the 4 frames of SO(3)); interface noise {settings.frame_noise_scale:g} x radius; "
        "epoch_time_vs_transformer: training wall time relative to the bare transformer, same run",
        format_table(rows, ["method", "mse", "mse_rotated", "equivariance_error", "epoch_time_vs_transformer"]),
        _symmetrization_goal(rows),
        f"total {time.perf_counter() - start:.0f} s",
    ])
    return {"rows": rows, "settings": dataclasses.asdict(settings), "text": text}


@register_benchmark("nbody")
def nbody_benchmark(quick: bool = False, output_dir: str | Path | None = None,
                    strategy: str = "remul", seeds: int | None = None) -> dict[str, Any]:
    """``strategy="remul"``: the REMUL table and β sweep; ``"symmetrization"``: probabilistic symmetrization
    against group averaging, frame averaging and canonicalization; ``"augmentation"``: REMUL against rotation
    augmentation at equal steps and equal wall time over ``seeds`` seeds
    (:mod:`symwrap_bench.nbody_augmentation`; the other two run one seed)."""
    if strategy == "augmentation":
        from .nbody_augmentation import augmentation_benchmark

        return augmentation_benchmark(quick, seeds=seeds)
    if seeds is not None:
        raise ConfigError(f"nbody --strategy {strategy} runs one seed and has no --seeds setting (only "
                          f"--strategy augmentation repeats over seeds); got --seeds {seeds}")
    settings = NBodySettings.quick() if quick else NBodySettings()
    if strategy == "symmetrization":
        return _symmetrization_benchmark(settings)
    if strategy != "remul":
        raise ConfigError("the nbody benchmark compares 'remul', 'symmetrization' or 'augmentation'; "
                          f"got strategy={strategy!r}")
    start = time.perf_counter()
    largest = max(settings.sizes)
    data = load_nbody(n_train=largest, n_val=0, n_test=settings.n_test, seed=settings.seed)
    splits = {size: data["train"][:size] for size in settings.sizes}
    test = data["test"]
    rotated = randomly_rotated(test, settings.seed + 3)
    rows = main_table(settings, splits, test, rotated)
    sweep = beta_sweep(settings, splits[min(settings.sizes)], test, rotated)
    columns = ["n_train", "method", "mse", "mse_rotated", "equivariance_error",
               *(f"inference_vs_transformer_b{b}" for b in settings.timing_batches), "parameters", "train_s"]
    lines = [f"charged N-body (5 particles, 1,000 steps), {settings.n_test} test trajectories; every model "
             f"{settings.steps} Adam steps of {settings.batch_size} (lr {settings.lr:g}, cosine); E′ = relative SO(3) "
             "equivariance error; inference_vs_transformer_bN: time per batch of N, interleaved, median",
             format_table(rows, columns), ""]
    for size in settings.sizes:
        lines += _goals(rows, size, settings.timing_batches)
    lines += ["", f"β sweep: transformer + REMUL (constant β), {min(settings.sizes)} training trajectories, "
              f"{settings.sweep_steps} steps",
              format_table(sweep, ["beta", "mse", "mse_rotated", "equivariance_error"])]
    result: dict[str, Any] = {"rows": rows, "sweep": sweep, "settings": dataclasses.asdict(settings)}
    if output_dir is not None:
        plot = plot_sweep(sweep, Path(output_dir) / "nbody_beta_sweep.png")
        result["plot"] = str(plot)
        lines.append(f"plot: {plot}")
    result["seconds"] = time.perf_counter() - start
    lines.append(f"total {result['seconds']:.0f} s")
    result["text"] = "\n".join(lines)
    return result
