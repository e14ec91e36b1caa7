"""The ``symwrap`` command: ``symwrap demo`` runs the MNIST demo, ``symwrap groups`` lists the registry."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from .errors import SymwrapError


def _summary(obj: object) -> str:
    """First line of an object's class docstring, without reStructuredText markup."""
    doc = (type(obj).__doc__ or "").strip()
    line = doc.splitlines()[0] if doc else ""
    line = re.sub(r"\s*\(see :\w+:`[^`]+`\)", "", line)
    line = re.sub(r":\w+:`~?([^`]+)`", r"\1", line)
    return line.replace("``", "")


def registry_rows() -> list[tuple[str, str, str]]:
    """``(kind, name, description)`` for every registered group, action and strategy."""
    from . import get_action, get_group, list_actions, list_groups, list_strategies
    from .strategies import get_strategy

    rows = []
    for name in list_groups():
        # "C{n}" is a family; describe it through one member
        group = get_group(name.replace("{n}", "4"))
        note = " ({n}: any positive integer)" if "{n}" in name else ""
        rows.append(("group", name, _summary(group) + note))
    for name in list_actions():
        rows.append(("action", name, _summary(get_action(name))))
    for name in list_strategies():
        strategy = get_strategy(name)
        rows.append(("strategy", name, (strategy.__doc__ or "").strip().splitlines()[0].replace("``", "")))
    return rows


def format_registry() -> str:
    """The registry as an aligned plain-text table (kind, name, description)."""
    header = ("KIND", "NAME", "DESCRIPTION")
    rows = registry_rows()
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]

    def line(kind: str, name: str, description: str) -> str:
        return f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {description}".rstrip()

    lines = [line(*header)]
    previous_kind = ""
    for kind, name, description in rows:
        if kind != previous_kind:
            lines.append(line("-" * widths[0], "-" * widths[1], "-" * len(header[2])) if not previous_kind else "")
        previous_kind = kind
        lines.append(line(kind, name, description))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``symwrap`` command."""
    parser = argparse.ArgumentParser(
        prog="symwrap", description="Make PyTorch backbones equivariant or approximately equivariant."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train a small ViT on upright MNIST, wrap it with C4 averaging, test both on rotated digits",
        description="Train a small ViT on upright MNIST digits, wrap it with C4 group averaging and "
        "compare the bare and the wrapped model on rotated test digits.",
    )
    demo.add_argument(
        "--output-dir", default="outputs", help="where the plot and the JSON results go (default: %(default)s)"
    )
    demo.add_argument(
        "--train-seconds", type=float, default=60.0, help="wall-clock training budget in seconds (default: %(default)s)"
    )
    demo.add_argument(
        "--finetune-seconds",
        type=float,
        default=40.0,
        help="budget for fine-tuning a copy through the C4 wrapper, in seconds (default: %(default)s)",
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the weights and the batches (default: %(default)s)"
    )
    demo.add_argument("--device", default="cpu", help="torch device to run on (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    commands.add_parser("groups", help="list the registered groups, actions and strategies")
    bench = commands.add_parser("bench", help="run a benchmark; prints its table and writes it as CSV and JSON")
    bench.add_argument("name", help="the benchmark: canonicalization, nbody, graphs")
    bench.add_argument("--strategy", default=None,
                       help="benchmarks that compare strategies: which one (nbody: remul or symmetrization)")
    bench.add_argument("--quick", action="store_true", help="a small, fast version (a smoke test)")
    bench.add_argument(
        "--output-dir", default="outputs/bench", help="where the CSV and JSON go (default: %(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``symwrap`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and not (args.train_seconds > 0 and args.finetune_seconds > 0):
        parser.error(
            "--train-seconds and --finetune-seconds must be positive; "
            f"got {args.train_seconds} and {args.finetune_seconds}"
        )
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(
                args.output_dir, args.train_seconds, args.seed, args.device,
                finetune_seconds=args.finetune_seconds, progress=not args.no_progress,
            )
        elif args.command == "groups":
            print(format_registry())
        elif args.command == "bench":
            from .benchmarks import run_benchmark

            run_benchmark(args.name, quick=args.quick, output_dir=args.output_dir, strategy=args.strategy)
    except SymwrapError as error:
        print(f"symwrap {args.command}: {error}", file=sys.stderr)
        return 1
    return 0
