"""The ``symwrap`` command.

* ``symwrap demo``: the MNIST demo (a ViT wrapped with C4 averaging; :mod:`symwrap_bench.demo`).
* ``symwrap groups``: the registered groups, actions and strategies.
* ``symwrap train CONFIG.yaml``: train the model a YAML file describes (:mod:`symwrap.experiment`).
* ``symwrap eval DIR``: accuracy (or MSE) and equivariance error per group element of a trained
  run (:mod:`symwrap.evaluation`); ``--plot`` draws them against the rotation angle.
* ``symwrap bench NAME``: a benchmark (:mod:`symwrap_bench`); its table is also written as CSV and JSON.

The demo and the benchmarks are applications of the library, in the separate package ``symwrap_bench``;
this module imports them only inside the commands that run them.

A failure prints one line, ``symwrap <command>: <what went wrong and what to do>``, to stderr and exits
with status 1 (2 for usage errors); ``symwrap --debug <command> ...`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .errors import ConfigError, SymwrapError


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
    parser.add_argument("--debug", action="store_true", help="on an error, show its traceback instead of one line")
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
        "--train-steps", type=int, default=None,
        help="optimizer steps of the ViT's training on upright digits (default: 600)",
    )
    demo.add_argument(
        "--finetune-steps", type=int, default=None,
        help="optimizer steps of fine-tuning a copy through the C4 wrapper (default: 150)",
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the weights and the batches (default: %(default)s)"
    )
    demo.add_argument("--device", default="cpu", help="torch device to run on (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    groups = commands.add_parser("groups", help="list the registered groups, actions and strategies")
    train = commands.add_parser(
        "train",
        help="train the model a YAML configuration describes (backbone, data, group, strategy, training)",
        description="Build the model of CONFIG with symwrap.wrap, train it with symwrap.fit and write the run "
        "directory: symwrap_config.json and model.safetensors (save_pretrained), train_config.yaml (a copy "
        "of CONFIG) and history.json. See examples/configs/ for configurations.",
    )
    train.add_argument("config", help="the YAML configuration file")
    train.add_argument("--output-dir", default=None,
                       help="the run directory (default: outputs/train/<name of the configuration file>)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the model of a run directory that already holds one (refused otherwise)")
    comparison = commands.add_parser(
        "compare",
        help="train the configuration's backbone through every strategy that applies, for the same steps; one table",
        description="Read a 'symwrap train' configuration (its strategy is ignored), train a fresh copy of the "
        "backbone through every registered strategy that takes it, plus the bare backbone and augmentation, for "
        "the same number of optimizer steps, and print one table with a recommendation computed from it "
        "(symwrap.compare).",
    )
    comparison.add_argument("config", help="the YAML configuration file (as for 'symwrap train')")
    comparison.add_argument("--steps", type=int, default=200, help="optimizer steps per row (default: %(default)s)")
    comparison.add_argument("--strategies", default="all",
                            help="comma-separated strategy names, or 'all' (default: %(default)s)")
    comparison.add_argument("--max-inference-ratio", type=float, default=None,
                            help="recommend only rows at most this many times slower than the bare backbone")
    comparison.add_argument("--output-dir", default=None,
                            help="write compare.csv, compare.json, the plots and each finished row (rows/) there; "
                            "a later run with the same settings reads stored rows back instead of retraining them")
    comparison.add_argument("--force", action="store_true", help="retrain the rows already stored in --output-dir")
    comparison.add_argument("--no-progress", action="store_true", help="hide the progress bar of each row")
    diagnosis = commands.add_parser(
        "diagnose",
        help="where inside the backbone of a 'symwrap train' run the symmetry breaks: the error each layer adds",
        description="Load the model of a 'symwrap train' run, take one batch of its data, and print for every layer "
        "of its backbone the equivariance error of the layer's input and output under the run's group and the "
        "error the layer adds, largest first; for continuous groups, each layer's Lie derivative carried to the "
        "output (symwrap.diagnose).",
    )
    diagnosis.add_argument("directory", help="the run directory written by 'symwrap train'")
    diagnosis.add_argument("--layers", default="leaves", choices=("leaves", "blocks"),
                           help="every leaf module, or the backbone's direct children (default: %(default)s)")
    diagnosis.add_argument("--split", default="test", choices=("test", "val", "train"),
                           help="which split the batch comes from (default: %(default)s)")
    diagnosis.add_argument("--samples", type=int, default=8,
                           help="sampled elements of groups with more than 16 elements (default: %(default)s)")
    diagnosis.add_argument("--method", default="auto", choices=("auto", "elements", "lie"),
                           help="'lie': each layer's Lie derivative pushed to the output (continuous groups); "
                           "'elements': errors under group elements; 'auto': 'lie' for continuous groups "
                           "(default: %(default)s)")
    diagnosis.add_argument("--top", type=int, default=None, help="show only the largest contributions")
    diagnosis.add_argument("--plot", default=None, metavar="PNG", help="write a bar chart of the contributions")
    evaluate = commands.add_parser(
        "eval",
        help="accuracy (or MSE) and equivariance error per group element of a model trained by 'symwrap train'",
        description="Load the model of a 'symwrap train' run and print, for every element of its group (a grid of "
        "rotation angles for continuous groups), the equivariance error and the accuracy (MSE for regression) "
        "on the moved data.",
    )
    evaluate.add_argument("directory", help="the run directory written by 'symwrap train'")
    evaluate.add_argument("--data", default=None,
                          help="evaluate on another registered data set (default: the one it was trained on)")
    evaluate.add_argument("--split", default="test", choices=("test", "val", "train"),
                          help="which split (default: %(default)s)")
    evaluate.add_argument("--plot", default=None, metavar="PNG",
                          help="write a PNG of the error and the accuracy (or MSE) against the rotation angle")
    evaluate.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    evaluate.add_argument("--angles", type=int, default=16,
                          help="rotation angles on the grid of continuous groups, and around finite rotation "
                          "groups; 0: none (default: %(default)s)")
    evaluate.add_argument("--axis", default="z", choices=("x", "y", "z"),
                          help="the axis of 3-D rotations (default: %(default)s)")
    evaluate.add_argument("--max-elements", type=int, default=48,
                          help="finite groups larger than this are evaluated on a sample (default: %(default)s)")
    evaluate.add_argument("--batch-size", type=int, default=None, help="override the data set's batch size")
    evaluate.add_argument("--device", default="cpu", help="torch device to run on (default: %(default)s)")
    bench = commands.add_parser("bench", help="run a benchmark; prints its table and writes it as CSV and JSON")
    bench.add_argument("name", help="the benchmark: canonicalization, nbody, graphs, cloning, relaxation, "
                                       "fixed_inputs, scaling, mixed")
    bench.add_argument("--strategy", default=None,
                       help="benchmarks with variants: which (nbody: remul, symmetrization, augmentation; "
                            "cloning: paper, images-ladder)")
    bench.add_argument("--quick", action="store_true", help="a small, fast version (a smoke test)")
    bench.add_argument("--seeds", type=int, default=None,
                       help="benchmarks that repeat their runs over seeds (nbody --strategy augmentation, mixed): "
                       "how many (default: 3, with --quick 1)")
    bench.add_argument(
        "--output-dir", default="outputs/bench", help="where the CSV and JSON go (default: %(default)s)"
    )
    for command in (demo, groups, train, evaluate, bench):  # also accepted after the command
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, show its traceback instead of one line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``symwrap`` command; returns the exit status.

    A failure prints one line, ``symwrap <command>: <what went wrong and what to do>``, to stderr and returns
    1 (usage errors exit with argparse's status 2); ``--debug`` re-raises it to show the traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    try:
        _run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"symwrap {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"symwrap {args.command}: {error_line(error)}", file=sys.stderr)
        return 1
    return 0


def error_line(error: BaseException) -> str:
    """``error`` as one line: a symwrap error's message; for anything else its type and message, and where
    to find the traceback."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, SymwrapError):
        return text
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.strerror or text}: {error.filename!r}"
    return f"unexpected {type(error).__name__}: {text} (run with --debug for the traceback)"


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Option values argparse cannot check by itself (exits with status 2, like argparse)."""
    if args.command == "demo":
        for option, value in (("--train-steps", args.train_steps), ("--finetune-steps", args.finetune_steps)):
            if value is not None and value < 1:
                parser.error(f"{option} must be a positive integer; got {value}")
    if args.command == "eval":
        for option, value, low in (("--angles", args.angles, 0), ("--max-elements", args.max_elements, 1),
                                   ("--batch-size", args.batch_size, 1)):
            if value is not None and value < low:
                parser.error(f"{option} must be an integer >= {low}; got {value}")


def _run(args: argparse.Namespace) -> None:
    """Run the command ``args`` names."""
    if args.command == "demo":
        from symwrap_bench.demo import FINETUNE_STEPS, TRAIN_STEPS, run_demo

        from .experiment import check_device

        check_device(args.device, "--device")
        _writable_folder(args.output_dir, "--output-dir")
        run_demo(
            args.output_dir, args.train_steps or TRAIN_STEPS, args.seed, args.device,
            finetune_steps=args.finetune_steps or FINETUNE_STEPS, progress=not args.no_progress,
        )
    elif args.command == "groups":
        print(format_registry())
    elif args.command == "train":
        _train(args)
    elif args.command == "eval":
        _eval(args)
    elif args.command == "diagnose":
        _diagnose(args)
    elif args.command == "compare":
        _compare(args)
    elif args.command == "bench":
        from symwrap_bench import run_benchmark

        _writable_folder(args.output_dir, "--output-dir")
        run_benchmark(args.name, quick=args.quick, output_dir=args.output_dir, strategy=args.strategy,
                      seeds=args.seeds)


def _writable_folder(path: str | Path, option: str) -> Path:
    """``path`` created as a folder before any long computation, so an impossible output place fails first."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{option} {str(folder)!r} cannot be created as a folder ({error.strerror or error}); "
                          "choose another place") from error
    return folder


def _train(args: argparse.Namespace) -> None:
    """``symwrap train``: train, write the run directory, print where it went and the last epoch."""
    from .experiment import read_config, train_from_config

    config = read_config(args.config)
    output_dir = args.output_dir if args.output_dir is not None else Path("outputs/train") / Path(args.config).stem
    run = train_from_config(config, output_dir, progress=False if args.no_progress else None,
                            overwrite=args.overwrite)
    last = run.history.last or {}
    shown = ", ".join(f"{key}={value:.4g}" for key, value in last.items() if key not in ("epoch", "step", "lr"))
    print(f"trained {config.strategy} on {config.group} for {last.get('epoch', 0):g} epoch(s): {shown}")
    print(f"wrote {run.directory} (symwrap_config.json, model.safetensors, train_config.yaml, history.json)")


def _compare(args: argparse.Namespace) -> None:
    """``symwrap compare``: the table of every applicable strategy on the configuration's backbone and data."""
    from .compare import compare
    from .experiment import _actions, _data, build_backbone, read_config

    if args.steps < 1:
        raise ConfigError(f"--steps must be an integer >= 1; got {args.steps}")
    if args.output_dir is not None:
        _writable_folder(args.output_dir, "--output-dir")
    config = read_config(args.config)
    data = _data(config)
    input_action, output_action = _actions(config, data)
    strategies = "all" if args.strategies == "all" else [name.strip() for name in args.strategies.split(",")]
    report = compare(lambda: build_backbone(config.backbone), data.loader("train"), data.loader("test"),
                     group=config.group, input=input_action, output=output_action, strategies=strategies,
                     steps=args.steps, lr=config.training.lr, max_inference_ratio=args.max_inference_ratio,
                     seed=config.training.seed, progress=not args.no_progress, output_dir=args.output_dir,
                     force=args.force)
    print(report.table())
    if args.output_dir is not None:
        print(f"wrote {args.output_dir} (compare.csv, compare.json, the plots, rows/)")


def _diagnose(args: argparse.Namespace) -> None:
    """``symwrap diagnose``: the per-layer table of a run's backbone on one batch, and the chart when asked."""
    from .data import dataset_options, load_dataset
    from .diagnosis import LieDiagnosis, diagnose
    from .experiment import load_trained
    from .steps import split_batch

    if args.samples < 1 or (args.top is not None and args.top < 1):
        raise ConfigError(f"--samples and --top must be integers >= 1; got {args.samples} and {args.top}")
    if args.plot is not None:
        _writable_folder(Path(args.plot).parent, "--plot")
    model, config = load_trained(args.directory)
    accepted = dataset_options(config.data_name)
    options = {key: value for key, value in config.data_options.items() if key in accepted}
    splits = load_dataset(config.data_name, **options)
    x, _ = split_batch(next(iter(splits.loader(args.split) if args.split != "train" else
                                 torch.utils.data.DataLoader(splits.split("train"), batch_size=splits.batch_size))))
    for name, group in model.groups.items():
        result = diagnose(model.backbone, x, group, input=model.input_action, output=model.output_action,
                          layers=args.layers, method=args.method, n=args.samples,
                          generator=torch.Generator().manual_seed(0))
        how = ", layer-wise Lie derivative" if isinstance(result, LieDiagnosis) else ""
        print(f"{config.strategy} backbone under {name}, one {args.split} batch{how}:")
        print(result.table(args.top))
        if args.plot is not None:
            print(f"wrote {result.plot(args.plot)}")


def _eval(args: argparse.Namespace) -> None:
    """``symwrap eval``: the per-element table, and the plot and JSON when asked."""
    from .evaluation import evaluate_run, format_report, plot_report
    from .experiment import check_device

    check_device(args.device, "--device")
    for option, value in (("--plot", args.plot), ("--json", args.json)):
        if value is not None:
            _writable_folder(Path(value).parent, option)
    report = evaluate_run(args.directory, data=args.data, split=args.split, angles=args.angles, axis=args.axis,
                          max_elements=args.max_elements, batch_size=args.batch_size, device=args.device)
    print(format_report(report))
    if args.plot is not None:
        path = plot_report(report, args.plot, title=report.title)
        print(f"wrote {path}")
    if args.json is not None:
        path = Path(args.json)
        path.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {path}")
