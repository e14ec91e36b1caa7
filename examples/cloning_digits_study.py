"""How closely can a small ViT clone a C4-invariant teacher on digits, and how invariant does it get?

A study behind ``symwrap bench cloning``'s digits rows (see docs/strategies/cloning.md): the bench's
teacher (a C4 ``SteerableCNN`` trained on the bench's 1000 labelled digits; ``--teacher random``: the
same CNN at its initialisation) is cloned into a student on all four quarter turns of the bench's 4000
unlabelled digits, with the mean squared error to the teacher's logits. The teacher is exactly
invariant, so its logits are computed once per digit and serve all four turns. AdamW with linear
warm-up and cosine decay.

Printed: the student's relative C4 invariance error E′ and centred error C (``symwrap.metrics``) at
initialisation and after cloning, on 500 test digits; how much the teacher's logits vary across test
digits relative to their size (``teacher_spread``); the student's relative distance ‖s − t‖ / ‖t‖ to
the teacher's logits on test digits and on cloning digits; how often its arg-max agrees with the
teacher's; and E′ on 100 test digits along the way::

    OMP_NUM_THREADS=1 python examples/cloning_digits_study.py --steps 2400 --pool avg --warmup 100
    OMP_NUM_THREADS=1 python examples/cloning_digits_study.py --teacher random

How E′ falls with the cloning budget, for these recipes, with feature matching and with the CNN student as a
control: ``symwrap bench cloning --strategy images-ladder`` (:mod:`symwrap_bench.cloning_ladder`).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from symwrap.metrics import centred_equivariance_error
from symwrap_bench import cloning


def student(args: argparse.Namespace) -> nn.Module:
    """The timm ViT of the bench (``--pool token``) or with average pooling and no class token, or a CNN."""
    if args.student == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 10),
        )
    import timm

    pooling = {} if args.pool == "token" else {"global_pool": "avg", "class_token": False}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=28, patch_size=7, in_chans=1,
                             num_classes=10, embed_dim=args.dim, depth=args.depth, num_heads=4, **pooling)


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="cloning steps")
    parser.add_argument("--batch-size", type=int, default=64, help="digits per step (each in all four turns)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=50, help="steps of linear learning-rate warm-up")
    parser.add_argument("--student", choices=("vit", "cnn"), default="vit")
    parser.add_argument("--pool", choices=("token", "avg"), default="avg", help="the ViT's pooling")
    parser.add_argument("--dim", type=int, default=64, help="the ViT's width")
    parser.add_argument("--depth", type=int, default=4, help="the ViT's depth")
    parser.add_argument("--teacher", choices=("trained", "random"), default="trained",
                        help="the bench's trained teacher, or the same CNN untrained")
    parser.add_argument("--teacher-steps", type=int, default=None, help="default: the bench's budget")
    args = parser.parse_args(argv)

    settings = cloning.ImageSettings()
    if args.teacher_steps is not None:
        settings.steps = args.teacher_steps
    split = cloning.digit_splits(settings)
    test, unlabelled = split["test_x"][: settings.metric_inputs], split["unlabelled"]

    torch.manual_seed(settings.seed)
    teacher = cloning.teacher_cnn(settings)
    if args.teacher == "trained":
        cloning.train_images(teacher, split["train_x"], split["train_y"], settings)
    teacher = teacher.export().eval()
    with torch.no_grad():
        targets = torch.cat([teacher(chunk) for chunk in unlabelled.split(500)])
        test_targets = teacher(test)

    torch.manual_seed(settings.seed)
    model = student(args)
    before = {"E": cloning.image_error(model, test), "C": cloning.image_error(model, test, centred_equivariance_error)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warmup = max(1, args.warmup)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: (i + 1) / warmup if i < warmup else 0.5 * (
        1 + math.cos(math.pi * (i - warmup) / max(1, args.steps - warmup))))
    draws = torch.Generator().manual_seed(5)
    curve, start = [], time.perf_counter()
    model.train()
    for step in range(1, args.steps + 1):
        index = torch.randint(len(unlabelled), (args.batch_size,), generator=draws)
        x = torch.cat([torch.rot90(unlabelled[index], k, dims=(2, 3)) for k in range(4)])
        loss = F.mse_loss(model(x), targets[index].repeat(4, 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % max(1, args.steps // 8) == 0:
            curve.append((step, round(cloning.image_error(model, test[:100]), 4)))
            model.train()
    seconds = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        predictions = model(test)
        result = {
            "E_before_cloning": before["E"],
            "E_after_cloning": cloning.image_error(model, test),
            "C_before_cloning": before["C"],
            "C_after_cloning": cloning.image_error(model, test, centred_equivariance_error),
            "teacher_spread": float((test_targets - test_targets.mean(dim=0)).norm() / test_targets.norm()),
            "distance_to_teacher_test": relative_distance(predictions, test_targets),
            "distance_to_teacher_cloning_digits": relative_distance(model(unlabelled[:500]), targets[:500]),
            "argmax_agreement_test": float((predictions.argmax(1) == test_targets.argmax(1)).float().mean()),
            "E_during_cloning": curve,
            "cloning_seconds": round(seconds, 1),
            "settings": vars(args),
        }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
