"""The job ``python -m symwrap.training`` runs: a small CNN wrapped by a strategy, trained with
:func:`~symwrap.training.fit` on synthetic images, to check that a machine's set-up works::

    python -m symwrap.training --strategy remul --group C4 --epochs 2 --output runs/check
    torchrun --nproc_per_node=2 -m symwrap.training --strategy averaging --output runs/check-ddp

The label of an image is whether its central square sums to more than zero, which rotations
by multiples of 90 degrees keep. The loaders shuffle with a ``DistributedSampler`` of one
replica, whose order N processes share: every step sees the same global batch whatever the number
of processes, so 1 and N processes train the same weights (to float round-off). Rank 0 writes the
model (``save_pretrained``) and ``history.json`` to ``--output`` and prints a JSON summary, which
includes ``rank_weight_spread``: the largest difference between the weights of two ranks
(0 when DistributedDataParallel keeps them in step).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from .history import History
from .loop import fit


def synthetic_images(samples: int, size: int = 8, seed: int = 0) -> TensorDataset:
    """``samples`` Gaussian images (1, size, size) and their labels: 1 if the central square sums to more than 0."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(samples, 1, size, size, generator=generator)
    border = size // 4
    labels = (images[:, 0, border:size - border, border:size - border].sum(dim=(1, 2)) > 0).long()
    return TensorDataset(images, labels)


def build_model(strategy: str = "averaging", group: str = "C4", seed: int = 0, size: int = 8,
                **config: object) -> nn.Module:
    """A two-layer CNN (no batch norm: its statistics are per rank) wrapped by ``strategy``,
    initialised from ``seed`` without touching the global random number generator."""
    import symwrap

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Flatten(),
                                 nn.Linear(8 * size * size, 2))
    return symwrap.wrap(backbone, group=group, strategy=strategy, input="image", output="invariant", **config)


def build_loaders(samples: int = 64, batch_size: int = 8, seed: int = 0, shuffle: bool = True
                  ) -> tuple[DataLoader, DataLoader]:
    """Training and validation loaders over :func:`synthetic_images` (validation: ``samples // 2`` images)."""
    train = synthetic_images(samples, seed=seed)
    val = synthetic_images(max(samples // 2, 1), seed=seed + 1)
    sampler = DistributedSampler(train, num_replicas=1, rank=0, shuffle=shuffle, seed=seed)
    return DataLoader(train, batch_size=batch_size, sampler=sampler), DataLoader(val, batch_size=batch_size)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m symwrap.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", default="averaging", help="a strategy name (default: averaging)")
    parser.add_argument("--group", default="C4", help="a group acting on images (default: C4)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--samples", type=int, default=64, help="training images (default: 64)")
    parser.add_argument("--batch-size", type=int, default=8, help="the global batch (default: 8)")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-shuffle", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help="where rank 0 writes the model and history.json")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir when it has last.pt")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[nn.Module, History]:
    """Build and train the job's model; returns it and its history."""
    torch.manual_seed(args.seed)
    model = build_model(args.strategy, args.group, seed=args.seed)
    train, val = build_loaders(args.samples, args.batch_size, seed=args.seed, shuffle=not args.no_shuffle)
    history = fit(model, train, val, epochs=args.epochs, lr=args.lr, max_steps=args.max_steps,
                  checkpoint_dir=args.checkpoint_dir, resume="auto" if args.resume else False,
                  progress=not args.no_progress)
    return model, history


def rank_weight_spread(model: nn.Module) -> float:
    """The largest absolute difference between the same weight on two ranks (0.0 on one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(torch.float64).cpu()
    if dist.get_backend() == "nccl":
        flat = flat.to(torch.device("cuda", torch.cuda.current_device()))
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    stacked = torch.stack(gathered)
    return float((stacked.max(dim=0).values - stacked.min(dim=0).values).max())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model, history = run(args)
    spread = rank_weight_spread(model)
    initialised = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if initialised else (0, 1)
    if rank == 0:
        if args.output is not None:
            model.save_pretrained(args.output, overwrite=True)  # a check job: a rerun replaces its model
            history.save(args.output / "history.json")
        print(json.dumps({"world_size": world_size, "rank_weight_spread": spread, "last": history.last}))
    if initialised:
        # every rank waits for rank 0's writes: a rank that tears gloo down while another still talks to it can
        # abort the process ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()
    return 0
