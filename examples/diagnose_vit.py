"""Where does a ViT trained on upright digits break C4, and what do REMUL and symmetry cloning change inside it?

Steps (all budgets are optimizer steps):

1. pretrain a small timm ViT (``vit_tiny_patch16_224`` resized to 28x28 grey digits, 7x7 patches, 4 blocks)
   on upright MNIST digits (``symwrap.data.load_mnist_digits``);
2. fine-tune two copies of it for the same number of steps: **REMUL** (task + β·task on a randomly turned
   copy of the batch) and **symmetry cloning** (clone a C4-invariant teacher for half the steps, then fine-tune
   keeping the symmetry); the teacher is the library's default C4 teacher for images (a ``SteerableCNN`` from
   ``symwrap.nn.default_network("teacher", ...)``), trained on upright digits first;
3. diagnose the three ViTs with ``symwrap.diagnose(vit, digits, group, input="image", layers="blocks")``: under C4
   (every quarter turn: each block's input and output error, and the error it adds) and under SO2 (the
   layer-wise Lie derivative: each block's own non-equivariance carried to the logits, which adds up to the
   model's Lie derivative with what happens between the blocks, here the position embedding).

It prints the tables (plain text and Markdown, as in docs/diagnosis.md), writes them as JSON to ``--output``
and draws two grouped bar charts into ``--images-dir``: ``diagnosis_vit_c4.png`` and ``diagnosis_vit_lie.png``.

Run it with::

    python examples/diagnose_vit.py            # about 3 minutes on 2 CPU cores; writes docs/images/
    python examples/diagnose_vit.py --quick    # tiny budgets, seconds; use --images-dir elsewhere

Needs timm, escnn and mlxtend (``pip install 'symwrap[timm,escnn,data]'``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import symwrap
from symwrap.data import load_mnist_digits

GROUP = "C4"
NUM_CLASSES = 10
TIMM_NAME = "vit_tiny_patch16_224"
TIMM_SMALL: dict[str, Any] = {
    "img_size": 28, "patch_size": 7, "in_chans": 1, "num_classes": NUM_CLASSES,
    "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0,
}
MODELS = {"pretrained": "pretrained (upright)", "remul": "REMUL", "cloning": "cloning"}


@dataclasses.dataclass
class Settings:
    """The budgets (optimizer steps), data sizes and learning rates of a run."""

    seed: int = 0
    n_train: int = 4000
    n_test: int = 500
    n_diagnose: int = 64
    batch_size: int = 64
    pretrain_steps: int = 800
    teacher_steps: int = 300
    teacher_hidden: int = 6
    steps: int = 400
    clone_steps: int = 200
    lr: float = 2e-3
    beta: float = 1.0
    progress: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> Settings:
        """Tiny budgets and subsets: the whole pipeline in seconds."""
        values = dict(n_train=256, n_test=64, n_diagnose=8, batch_size=32, pretrain_steps=8, teacher_steps=4,
                      teacher_hidden=2, steps=6, clone_steps=3)
        return cls(**{**values, **overrides})


def load_data(settings: Settings) -> dict[str, torch.Tensor]:
    """Training and test digits (a seeded split of the 5,000), and the test digits each turned by a random
    multiple of 90°."""
    x, y = load_mnist_digits()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(settings.seed))
    test, train = order[: settings.n_test], order[1000:][: settings.n_train]
    turns = torch.randint(4, (len(test),), generator=torch.Generator().manual_seed(settings.seed + 1))
    action, group = symwrap.get_action("image"), symwrap.get_group(GROUP)
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test],
            "x_turned": action.act(action.bind(group, x[test]), turns, x[test])}


def fit_steps(model: nn.Module, data: dict[str, torch.Tensor], settings: Settings, steps: int, seed: int) -> None:
    """``steps`` AdamW steps of :func:`symwrap.fit` on shuffled (seeded) upright training digits."""
    loader = DataLoader(TensorDataset(data["x_train"], data["y_train"]), batch_size=settings.batch_size,
                        shuffle=True, generator=torch.Generator().manual_seed(settings.seed + seed))
    symwrap.fit(model, loader, epochs=math.ceil(steps / len(loader)), max_steps=steps, log_every=None,
                optimizer=torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.05),
                progress=settings.progress)


def train_models(data: dict[str, torch.Tensor], settings: Settings) -> dict[str, nn.Module]:
    """The pretrained ViT and its REMUL and cloning fine-tunings (the ViT inside each, in eval mode)."""
    import timm

    torch.manual_seed(settings.seed)
    vit = timm.create_model(TIMM_NAME, pretrained=False, **TIMM_SMALL)
    _say(f"pretraining the ViT on {len(data['y_train'])} upright digits for {settings.pretrain_steps} steps")
    fit_steps(vit, data, settings, settings.pretrain_steps, seed=1)
    common = {"group": GROUP, "input": "image", "output": "invariant", "seed": settings.seed}

    _say(f"fine-tuning a copy with REMUL for {settings.steps} steps")
    torch.manual_seed(settings.seed + 2)
    remul = symwrap.wrap(copy.deepcopy(vit), strategy="remul", beta=settings.beta, weighting="constant",
                         target="label", **common)
    fit_steps(remul, data, settings, settings.steps, seed=2)

    _say(f"training the C4 teacher for {settings.teacher_steps} steps, then cloning it into a copy for "
         f"{settings.clone_steps} steps and fine-tuning that for {settings.steps - settings.clone_steps}")
    torch.manual_seed(settings.seed + 3)
    teacher = symwrap.nn.default_network("teacher", symwrap.get_group(GROUP), symwrap.get_action("image"),
                                         symwrap.get_action("invariant"), in_channels=1, num_classes=NUM_CLASSES,
                                         hidden=settings.teacher_hidden)
    fit_steps(teacher, data, settings, settings.teacher_steps, seed=3)
    cloning = symwrap.wrap(copy.deepcopy(vit), strategy="cloning", teacher=teacher.eval(), inputs="data",
                           distance="kl", transformed_copies=2, mode="keep", beta=settings.beta,
                           target="prediction", **common)
    loader = DataLoader(TensorDataset(data["x_train"], data["y_train"]), batch_size=settings.batch_size,
                        shuffle=True, generator=torch.Generator().manual_seed(settings.seed + 4))
    cloning.clone(loader, steps=settings.clone_steps, progress=settings.progress,
                  optimizer=torch.optim.AdamW(cloning.backbone.parameters(), lr=settings.lr, weight_decay=0.05))
    fit_steps(cloning, data, settings, settings.steps - settings.clone_steps, seed=5)
    return {"pretrained": vit.eval(), "remul": remul.backbone.eval(), "cloning": cloning.backbone.eval()}


def _say(message: str) -> None:
    print(message, flush=True)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(dim=-1) == y).double().mean())


def diagnose_all(models: dict[str, nn.Module], data: dict[str, torch.Tensor], settings: Settings) -> dict[str, Any]:
    """For each ViT: accuracies, the C4 diagnosis and the SO2 layer-wise Lie derivative, as plain numbers."""
    x = data["x_test"][: settings.n_diagnose]
    results: dict[str, Any] = {}
    for key, vit in models.items():
        c4 = symwrap.diagnose(vit, x, GROUP, input="image", layers="blocks")
        lie = symwrap.diagnose(vit, x, "SO2", input="image", layers="blocks")  # continuous: the Lie derivative
        results[key] = {
            "upright_accuracy": accuracy(vit, data["x_test"], data["y_test"]),
            "turned_accuracy": accuracy(vit, data["x_turned"], data["y_test"]),
            "c4": {"model_error": c4.model_error, "table": c4.table(),
                   "layers": [{"name": r.name, "compared_as": r.representation, "input_error": r.input_error,
                               "output_error": r.output_error, "added": r.contribution} for r in c4.layers]},
            "lie": {"total": lie.total, "unattributed": lie.unattributed, "table": lie.table(),
                    "layers": [{"name": r.name, "compared_as": r.representation, "contribution": r.contribution,
                                "share": r.share} for r in lie.layers]},
        }
    return results


def markdown(results: dict[str, Any]) -> str:
    """The two tables of docs/diagnosis.md: per block and model, C4 output error (added) and Lie derivative."""
    keys = list(MODELS)
    names = [layer["name"] for layer in results[keys[0]]["c4"]["layers"]]
    lines = ["| block | " + " | ".join(f"{MODELS[k]}: C4 error out (added)" for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for i, name in enumerate(names):
        cells = [f"{results[k]['c4']['layers'][i]['output_error']:.3f} (+{results[k]['c4']['layers'][i]['added']:.3f})"
                 for k in keys]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines.append("| **logits** | " + " | ".join(f"**{results[k]['c4']['model_error']:.3f}**" for k in keys) + " |")
    lines.append("| accuracy upright / turned | " + " | ".join(
        f"{results[k]['upright_accuracy']:.1%} / {results[k]['turned_accuracy']:.1%}" for k in keys) + " |")
    lines += ["", "| block | " + " | ".join(f"{MODELS[k]}: Lie derivative (share)" for k in keys) + " |",
              "|---|" + "---:|" * len(keys)]
    for i, name in enumerate(names):
        cells = [f"{results[k]['lie']['layers'][i]['contribution']:.3f} ({results[k]['lie']['layers'][i]['share']:.0%})"
                 for k in keys]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    rest = [1 - sum(layer["share"] for layer in results[k]["lie"]["layers"]) for k in keys]
    lines.append("| between the blocks | " + " | ".join(
        f"{results[k]['lie']['unattributed']:.3f} ({share:.0%})" for k, share in zip(keys, rest)) + " |")
    lines.append("| **logits** | " + " | ".join(f"**{results[k]['lie']['total']:.3f}**" for k in keys) + " |")
    return "\n".join(lines)


def grouped_chart(results: dict[str, Any], what: str, path: Path) -> Path:
    """One bar per model for each block: the C4 error it adds (``what="c4"``) or its Lie derivative (``"lie"``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(MODELS)
    value = "added" if what == "c4" else "contribution"
    names = [layer["name"] for layer in results[keys[0]][what]["layers"]]
    figure, axis = plt.subplots(figsize=(7, 0.55 * len(names) + 1.5))
    height = 0.8 / len(keys)
    for j, key in enumerate(keys):
        values = [layer[value] for layer in results[key][what]["layers"]]
        axis.barh([i + j * height for i in range(len(names))], values, height=height, label=MODELS[key])
    axis.set_yticks([i + height * (len(keys) - 1) / 2 for i in range(len(names))], names)
    axis.invert_yaxis()
    axis.set_xlabel("relative C4 equivariance error the block adds" if what == "c4"
                    else "block's Lie derivative (SO2) carried to the logits, relative")
    axis.set_title("small timm ViT on MNIST digits: where the symmetry breaks")
    axis.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets and subsets (seconds)")
    parser.add_argument("--output", default="outputs/diagnose_vit.json", help="where the JSON results go")
    parser.add_argument("--images-dir", default="docs/images", help="where the two bar charts go")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    settings.progress = not args.no_progress
    started = time.perf_counter()
    data = load_data(settings)
    models = train_models(data, settings)
    _say(f"diagnosing the three ViTs on {settings.n_diagnose} test digits")
    results = diagnose_all(models, data, settings)
    charts = [str(grouped_chart(results, what, Path(args.images_dir) / f"diagnosis_vit_{what}.png"))
              for what in ("c4", "lie")]
    for key in MODELS:
        print(f"\n{MODELS[key]} ViT under C4 (errors under the four quarter turns):\n{results[key]['c4']['table']}")
        print(f"\n{MODELS[key]} ViT under SO2 (layer-wise Lie derivative):\n{results[key]['lie']['table']}")
    table = markdown(results)
    print("\n" + table)
    report = {"settings": dataclasses.asdict(settings), "models": results, "markdown": table, "charts": charts,
              "torch_threads": torch.get_num_threads(), "seconds": time.perf_counter() - started}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output} and {', '.join(charts)} in {report['seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
