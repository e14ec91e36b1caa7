"""``symwrap bench scaling``: how the cost of the averaging strategies grows, each point beside its limit.

The averaging strategies run the backbone on several copies of every input, so their physical limit is that
many bare-backbone calls: ``|G| × bare`` for group averaging, ``k × bare`` for probabilistic symmetrization with
``k`` samples, ``|F| × bare`` for frame averaging (|F| = the frame's size, 4 for SO3). This benchmark measures,
in one run, the wrapped model's inference time against the bare backbone on the same batch (interleaved medians,
:func:`~symwrap_bench.timing.median_seconds`), computes each limit from the measured bare time, and prints the
ratio to it, along four axes:

* ``|G|``: averaging over C_n, n = 2, 4, 8, 16, on a tiny ViT (32 px images);
* ``k``: symmetrization over C4 with k = 1, 4, 8, 16 samples on the same ViT (and the deterministic
  ``num_samples_eval=1`` mode);
* ``N``: frames over SO3 on point clouds of N = 64 ... 4096 points with a point MLP;
* ``B``: the batch size, for one setting of each strategy.

Peak memory: the peak of the bytes held by tensors that torch allocates during one forward pass (no gradients),
from :mod:`torch.profiler` with ``profile_memory=True`` (:func:`symwrap_bench.peak_memory.peak_bytes`: the
allocator's running total during the call minus the total before it, so the weights and the input are not
counted). Its limit is the same multiple of the bare backbone's peak.

The goal line of each strategy (issue 20): every point within 1.25× of its limit once the backbone is at least as
costly as the tiny ViT (for points: where the bare point MLP is measured, in this run, to take at least the
ViT's time); and symmetrization's inference with k = 8 samples within 1.1 × k bare calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from symwrap import wrap

from . import register_benchmark
from .peak_memory import peak_bytes
from .timing import format_table, median_seconds

#: the scaling goal: every point within this factor of its limit once the backbone costs a tiny ViT
GOAL_FACTOR = 1.25
#: issue 20: inference with k samples within this factor of k bare-backbone calls (at ``KEY_SAMPLES``)
SYMMETRIZATION_GOAL = 1.1
KEY_SAMPLES = 8


@dataclasses.dataclass
class ScalingSettings:
    """The sweeps and sizes of the benchmark."""

    orders: tuple[int, ...] = (2, 4, 8, 16)
    samples: tuple[int, ...] = (1, 4, 8, 16)
    points: tuple[int, ...] = (64, 256, 1024, 4096)
    batches: tuple[int, ...] = (4, 16, 64)
    batch: int = 16
    image_size: int = 32
    vit_depth: int = 12
    point_hidden: int = 256
    #: the sweep point the batch-size sweep is run at, per strategy
    batch_sweep_order: int = 4
    batch_sweep_samples: int = 4
    batch_sweep_points: int = 256
    repeats: int = 10
    warmup: int = 2

    @classmethod
    def quick(cls) -> ScalingSettings:
        """A smoke-test version: two points per axis, small models, few repeats."""
        return cls(orders=(2, 4), samples=(1, 2), points=(32, 64), batches=(2, 4), batch=2, image_size=16,
                   vit_depth=1, point_hidden=32, batch_sweep_order=2, batch_sweep_samples=2,
                   batch_sweep_points=32, repeats=2, warmup=1)


class PointMLP(nn.Module):
    """A per-point MLP, mean-pooled, then a linear head: ``(B, N, 3) -> (B, classes)``; its cost grows as N."""

    def __init__(self, hidden: int = 256, classes: int = 10) -> None:
        super().__init__()
        self.points = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                    nn.Linear(hidden, hidden))
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.points(x).mean(dim=1))


def tiny_vit(image_size: int, depth: int = 12) -> nn.Module:
    """timm's ViT-tiny (width 192) with patches of ``image_size // 4`` pixels, for ``image_size`` px images."""
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=image_size,
                             patch_size=max(image_size // 4, 1), num_classes=10, depth=depth)


def measure(backbone: Callable[[Any], object], model: Callable[[Any], object], x: torch.Tensor, multiple: int,
            settings: ScalingSettings) -> dict[str, Any]:
    """Time (interleaved medians) and peak memory of ``model(x)`` against the bare ``backbone(x)``, with limit
    ``multiple × bare``; and the backbone alone on the ``multiple``-times repeated batch (``batched``), which
    separates what the wrapper adds from how the backbone itself scales with its batch."""
    repeated = x.repeat(multiple, *([1] * (x.ndim - 1)))
    calls = {"bare": lambda: backbone(x), "batched": lambda: backbone(repeated), "wrapped": lambda: model(x)}
    seconds = median_seconds(calls, repeats=settings.repeats, warmup=settings.warmup)
    bare_bytes, wrapped_bytes = peak_bytes(calls["bare"]), peak_bytes(calls["wrapped"])
    if bare_bytes is None or wrapped_bytes is None:  # this torch's profiler reports no allocations
        bare_bytes = wrapped_bytes = float("nan")
    limit = multiple * seconds["bare"]
    memory_limit = multiple * bare_bytes
    return {
        "limit_multiple": multiple,
        "bare_ms": 1e3 * seconds["bare"],
        "wrapped_ms": 1e3 * seconds["wrapped"],
        "x_bare": seconds["wrapped"] / seconds["bare"],
        "limit_ms": 1e3 * limit,
        "to_limit": seconds["wrapped"] / limit,
        "batched_ms": 1e3 * seconds["batched"],
        "to_batched": seconds["wrapped"] / seconds["batched"],
        "bare_MB": bare_bytes / 2**20,
        "peak_MB": wrapped_bytes / 2**20,
        "mem_to_limit": wrapped_bytes / memory_limit if memory_limit else float("nan"),
    }


def _images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _clouds(batch: int, points: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # anisotropic clouds: well-separated principal axes, so every frame is the exact PCA frame
    return torch.randn(batch, points, 3, generator=generator) * torch.tensor([3.0, 2.0, 1.0])


def _averaging_row(vit: nn.Module, order: int, batch: int, settings: ScalingSettings) -> dict[str, Any]:
    torch.manual_seed(0)
    model = wrap(vit, group=f"C{order}", strategy="averaging", input="image").eval()
    x = _images(batch, settings.image_size)
    return {"strategy": "averaging", "axis": "|G|" if batch == settings.batch else "B", "group": f"C{order}",
            "size": order, "batch": batch, "limit": f"|G|={order} x bare",
            **measure(vit, model, x, order, settings)}


def _symmetrization_row(vit: nn.Module, k: int, batch: int, settings: ScalingSettings,
                        deterministic: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    options = {"num_samples_eval": 1, "eval_sampling": "mode"} if deterministic else {"num_samples_eval": k}
    model = wrap(vit, group="C4", strategy="symmetrization", input="image", **options).eval()
    x = _images(batch, settings.image_size)
    axis = "mode" if deterministic else ("k" if batch == settings.batch else "B")
    return {"strategy": "symmetrization", "axis": axis, "group": "C4", "size": k, "batch": batch,
            "limit": f"k={k} x bare", **measure(vit, model, x, k, settings)}


def _frames_row(mlp: nn.Module, points: int, batch: int, settings: ScalingSettings) -> dict[str, Any]:
    from symwrap.strategies.symmetrization import pca_frames

    model = wrap(mlp, group="SO3", strategy="frames", input="points").eval()
    x = _clouds(batch, points)
    frames = pca_frames(x, special=True)[0].shape[1]
    return {"strategy": "frames", "axis": "N" if batch == settings.batch else "B", "group": "SO3",
            "size": points, "batch": batch, "limit": f"|F|={frames} x bare",
            **measure(mlp, model, x, frames, settings)}


def scaling_rows(settings: ScalingSettings) -> tuple[list[dict[str, Any]], float]:
    """Every point of every sweep, and the bare tiny ViT's time (ms) on the default batch."""
    from symwrap.progress import progress_bar

    torch.manual_seed(0)
    vit = tiny_vit(settings.image_size, settings.vit_depth).eval()
    mlp = PointMLP(settings.point_hidden).eval()
    jobs: list[Callable[[], dict[str, Any]]] = []
    jobs += [lambda n=n: _averaging_row(vit, n, settings.batch, settings) for n in settings.orders]
    jobs += [lambda b=b: _averaging_row(vit, settings.batch_sweep_order, b, settings) for b in settings.batches
             if b != settings.batch]
    jobs += [lambda k=k: _symmetrization_row(vit, k, settings.batch, settings) for k in settings.samples]
    jobs += [lambda: _symmetrization_row(vit, 1, settings.batch, settings, deterministic=True)]
    jobs += [lambda b=b: _symmetrization_row(vit, settings.batch_sweep_samples, b, settings)
             for b in settings.batches if b != settings.batch]
    jobs += [lambda n=n: _frames_row(mlp, n, settings.batch, settings) for n in settings.points]
    jobs += [lambda b=b: _frames_row(mlp, settings.batch_sweep_points, b, settings) for b in settings.batches
             if b != settings.batch]
    rows = [job() for job in progress_bar(jobs, desc="scaling", unit="point")]
    x = _images(settings.batch, settings.image_size)
    vit_ms = 1e3 * median_seconds({"vit": lambda: vit(x)}, repeats=settings.repeats, warmup=settings.warmup)["vit"]
    return rows, vit_ms


def goal_lines(rows: list[dict[str, Any]], vit_ms: float) -> list[str]:
    """One line per strategy: the worst ratio to the limit among the points whose bare backbone takes at least
    the tiny ViT's time (measured in this run), against ``GOAL_FACTOR``; and symmetrization at ``KEY_SAMPLES``."""
    lines = []
    for strategy in ("averaging", "symmetrization", "frames"):
        own = [r for r in rows if r["strategy"] == strategy]
        costly = [r for r in own if r["bare_ms"] >= vit_ms or r["strategy"] != "frames"]
        if not costly:
            lines.append(f"{strategy}: no point has a backbone as costly as the tiny ViT ({vit_ms:.3g} ms); "
                         "goal not measured")
            continue
        worst = max(costly, key=lambda r: r["to_limit"])
        met = "met" if worst["to_limit"] <= GOAL_FACTOR else "NOT met"
        # the limit assumes the backbone's time grows linearly with its batch; beside it, the same point against
        # the backbone alone on the copies' batch, which separates the wrapper's own cost from the backbone's
        batched = f", {worst['to_batched']:.2f}x the backbone on the copies' batch" if "to_batched" in worst else ""
        lines.append(f"{strategy}: worst {worst['to_limit']:.2f}x its limit over {len(costly)} point(s) with a "
                     f"backbone >= the tiny ViT ({worst['limit']}, batch {worst['batch']}{batched}); "
                     f"goal <= {GOAL_FACTOR}: {met}")
    key = [r for r in rows if r["strategy"] == "symmetrization" and r["axis"] == "k" and r["size"] == KEY_SAMPLES]
    if key:
        ratio = key[0]["to_limit"]
        met = "met" if ratio <= SYMMETRIZATION_GOAL else "NOT met"
        lines.append(f"symmetrization, k={KEY_SAMPLES}: {key[0]['x_bare']:.2f}x bare = {ratio:.2f}x k bare calls; "
                     f"goal <= {SYMMETRIZATION_GOAL}: {met}")
    return lines


@dataclasses.dataclass
class EvalModeSettings:
    """The evaluation-mode experiment: a small CNN symmetrized over C4, trained on MNIST digits for a number of
    Adam steps, then evaluated on held-out digits turned by random quarter turns with each evaluation setting."""

    train: int = 4000
    test: int = 1000
    steps: int = 600
    batch: int = 64
    lr: float = 3e-3
    samples_train: int = 1
    eval_samples: tuple[int, ...] = (1, 4, 8, 16)
    seeds: tuple[int, ...] = (0, 1)
    repeats: int = 5

    @classmethod
    def quick(cls) -> EvalModeSettings:
        return cls(train=200, test=100, steps=5, batch=16, eval_samples=(1, 2), seeds=(0,), repeats=1)


def _digit_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 6 * 6, 10))


def evaluation_mode_rows(settings: EvalModeSettings) -> list[dict[str, Any]]:
    """Test accuracy and inference time (relative to the bare CNN on the same batch, interleaved medians) of one
    trained symmetrized model per seed, evaluated with the interface's mode (one deterministic call) and with k
    random samples. Accuracy: the mean over seeds (of the mean over ``repeats`` evaluation draws); spread: the
    standard deviation over those draws, averaged over seeds (0 for the deterministic mode)."""
    import statistics

    from symwrap.data import load_mnist_digits

    images, labels = load_mnist_digits()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = order[:settings.train], order[settings.train:settings.train + settings.test]
    turns = torch.randint(4, (settings.test,), generator=torch.Generator().manual_seed(1))
    test_x = torch.stack([torch.rot90(image, int(t), dims=(-2, -1)) for image, t in zip(images[test_idx], turns)])
    test_y = labels[test_idx]
    variants = {"mode (deterministic)": (1, True), **{f"random, k={k}": (k, False) for k in settings.eval_samples}}
    measured: dict[str, dict[str, list[float]]] = {name: {"accuracy": [], "spread": [], "x_bare": []}
                                                   for name in variants}
    for seed in settings.seeds:
        model = _trained_digit_model(seed, images[train_idx], labels[train_idx], settings)
        for name, values in _evaluate(model, test_x, test_y, variants, settings).items():
            for key, value in values.items():
                measured[name][key].append(value)
    return [{"evaluation": name, "backbone_calls": k,
             **{key: statistics.mean(values) for key, values in measured[name].items()},
             "seeds": len(settings.seeds), "steps": settings.steps}
            for name, (k, _) in variants.items()]


def _trained_digit_model(seed: int, images: torch.Tensor, labels: torch.Tensor,
                         settings: EvalModeSettings) -> nn.Module:
    """The CNN symmetrized over C4, trained for ``settings.steps`` Adam steps on seeded batches."""
    from .loop import train_steps

    torch.manual_seed(seed)
    model = wrap(_digit_cnn(), group="C4", strategy="symmetrization", input="image", in_channels=1,
                 num_samples_train=settings.samples_train, seed=seed)
    generator = torch.Generator().manual_seed(seed)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(len(images), (settings.batch,), generator=generator)
        return images[pick], labels[pick]

    train_steps(model, next_batch, settings.steps, settings.lr)
    return model.eval()


def _evaluate(model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, variants: dict[str, tuple[int, bool]],
              settings: EvalModeSettings) -> dict[str, dict[str, float]]:
    """Accuracy, spread over evaluation draws and time relative to the bare backbone of each variant."""
    import statistics

    batch = test_x[:settings.batch]
    calls: dict[str, Callable[[], object]] = {"bare": lambda: model.backbone(batch)}
    results: dict[str, dict[str, float]] = {}
    for name, (k, mode) in variants.items():
        with torch.no_grad():
            draws = [float((model.symmetrize(test_x, k, mode=mode).argmax(1) == test_y).float().mean())
                     for _ in range(1 if mode else settings.repeats)]
        results[name] = {"accuracy": statistics.mean(draws), "spread": statistics.pstdev(draws)}
        calls[name] = lambda k=k, mode=mode: model.symmetrize(batch, k, mode=mode)
    timing = median_seconds(calls, repeats=max(settings.repeats, 3), warmup=1)
    for name in variants:
        results[name]["x_bare"] = timing[name] / timing["bare"]
    return results


EVAL_COLUMNS = ["evaluation", "backbone_calls", "accuracy", "spread", "x_bare", "seeds", "steps"]


COLUMNS = ["strategy", "axis", "group", "size", "batch", "limit", "bare_ms", "wrapped_ms", "x_bare", "limit_ms",
           "to_limit", "batched_ms", "to_batched", "bare_MB", "peak_MB", "mem_to_limit"]


@register_benchmark("scaling")
def scaling_benchmark(quick: bool = False, settings: ScalingSettings | None = None,
                      evaluation: EvalModeSettings | None = None) -> dict[str, Any]:
    """Time and peak memory of averaging, symmetrization and frames against |G|, k, N and the batch size; then
    what symmetrization's cheaper evaluations cost in accuracy (``evaluation_rows``)."""
    settings = settings or (ScalingSettings.quick() if quick else ScalingSettings())
    evaluation = evaluation or (EvalModeSettings.quick() if quick else EvalModeSettings())
    rows, vit_ms = scaling_rows(settings)
    goals = goal_lines(rows, vit_ms)
    evaluation_rows = evaluation_mode_rows(evaluation)
    text = "\n".join([
        "cost growth: wrapped inference / bare backbone on the same batch (interleaved medians, one run); "
        "limit = copies x bare; to_limit = wrapped / limit; batched = the bare backbone on the copies' batch "
        "(to_batched = wrapped / batched: what the wrapper adds)",
        f"peak memory: torch.profiler (profile_memory=True), bytes allocated during one forward; "
        f"bare tiny ViT on batch {settings.batch}: {vit_ms:.3g} ms",
        format_table(rows, COLUMNS), "", *goals, "",
        f"symmetrization's evaluation: a CNN symmetrized over C4 ({evaluation.samples_train} sample in training), "
        f"{evaluation.steps} Adam steps of {evaluation.batch} MNIST digits, tested on {evaluation.test} held-out "
        f"digits turned by random quarter turns; accuracy over {len(evaluation.seeds)} seed(s), spread over "
        f"{evaluation.repeats} evaluation draws; x_bare: inference time / the bare CNN's",
        format_table(evaluation_rows, EVAL_COLUMNS),
    ])
    return {"rows": rows, "text": text, "goals": goals, "vit_ms": vit_ms, "evaluation_rows": evaluation_rows}
