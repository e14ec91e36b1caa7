"""Mutation testing of symwrap, room by room (``make mutation``; not part of CI: about 3 hours on 2 cores).

Each room is a part of the library and the fast tests that should catch any change to it. For every room this
script copies the package and the tests into ``outputs/mutation/<room>/``, runs mutmut there (which mutates
only that room's files and runs, for each mutant, the room's tests that cover the mutated function), and
writes a report: the mutation score per room, and every surviving mutant with its diff.

A mutant that no test should kill (an equivalent mutant, a change to the text of a message) is listed with a
one-line reason in ``tools/mutation-accepted.txt`` and left out of the score. Entries name the function and
the mutated line, not mutmut's running number, so they survive edits elsewhere in the file::

    symwrap.groups.base.x_tree_map | return tuple(tree_map(fn, part) for part in g)  # reason

Usage::

    python tools/mutation.py                 # every room
    python tools/mutation.py groups metrics  # some rooms
    python tools/mutation.py --again groups  # after adding tests: re-test only the room's survivors
    python tools/mutation.py --report        # the report of the last runs, without running again
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "outputs" / "mutation"
ACCEPTED_FILE = Path(__file__).with_name("mutation-accepted.txt")
MUTMUT = [sys.executable, "-m", "mutmut"]


@dataclasses.dataclass(frozen=True)
class Room:
    """Files to mutate (globs relative to the repository) and the tests that must catch their mutants."""

    files: tuple[str, ...]
    tests: tuple[str, ...]


ROOMS: dict[str, Room] = {
    "groups": Room(("symwrap/groups/*",), ("tests/test_groups.py",)),
    "actions": Room(("symwrap/actions/*",), ("tests/test_actions.py", "tests/test_losses.py")),
    "metrics": Room(("symwrap/metrics.py",), ("tests/test_metrics.py", "tests/test_losses.py")),
    # the batching helpers the equivariance losses run on (they moved to actions/ with issue 16)
    "losses": Room(("symwrap/losses.py", "symwrap/actions/batching.py"),
                   ("tests/test_losses.py", "tests/test_metrics.py", "tests/test_remul.py", "tests/test_cloning.py")),
    "strategy-base": Room(
        ("symwrap/strategies/base.py", "symwrap/strategies/checks.py", "symwrap/strategies/fields.py",
         "symwrap/strategies/registry.py", "symwrap/strategies/approximation.py"),
        ("tests/test_strategies.py", "tests/test_contract.py"),
    ),
    "averaging-frames": Room(
        ("symwrap/strategies/symmetrization/averaging.py", "symwrap/strategies/symmetrization/frames.py",
         "symwrap/geometry.py"),
        ("tests/test_strategies.py", "tests/test_symmetrization.py"),
    ),
    "symmetrization": Room(
        ("symwrap/strategies/symmetrization/probabilistic.py", "symwrap/strategies/symmetrization/interfaces.py",
         "symwrap/strategies/symmetrization/config.py"),
        ("tests/test_symmetrization.py", "tests/test_permutation_interface.py"),
    ),
    "canonicalization": Room(("symwrap/strategies/canonicalization/*", "symwrap/nn/encoders.py"),
                             ("tests/test_canonicalization.py",)),
    "cloning": Room(("symwrap/strategies/cloning/*",), ("tests/test_cloning.py",)),
    "remul": Room(("symwrap/strategies/remul/*",), ("tests/test_remul.py",)),
    "relaxation": Room(("symwrap/strategies/relaxation/*",), ("tests/test_relaxation.py",)),
    "fixed-inputs": Room(("symwrap/strategies/fixed_inputs/*",), ("tests/test_fixed_inputs.py",)),
    "backbones": Room(("symwrap/backbones/*",), ("tests/test_backbones.py",)),
    "training": Room(("symwrap/training/loop.py", "symwrap/training/checkpoint.py", "symwrap/training/history.py"),
                     ("tests/test_training.py",)),
}
#: what the score counts as caught: mutmut's timeouts are mutants that made a test hang, so a test noticed
CAUGHT = ("killed", "timeout")


def room_config(room: Room) -> str:
    """The ``[tool.mutmut]`` table for one room."""
    tests = ", ".join(f'"{test}"' for test in room.tests)
    files = ", ".join(f'"{pattern}"' for pattern in room.files)
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["symwrap"]\n'
        f"only_mutate = [{files}]\n"
        # slow tests (multi-process training, compiled models) are left to CI; -x stops at the first failure
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not slow"]\n'
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        'process_isolation = "forkserver"\n'  # torch is not fork-safe once it has run
        "timeout_multiplier = 10.0\n"
    )


def prepare(name: str, room: Room) -> Path:
    """A fresh copy of the package and the tests with the room's mutmut configuration."""
    folder = WORK / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for part in ("symwrap", "tests"):
        shutil.copytree(ROOT / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(pyproject + room_config(room))
    return folder


def mutation_env() -> dict[str, str]:
    """One thread per mutant (mutmut runs several at once) and fewer hypothesis examples per property test
    (derandomized, as in CI: a mutant's verdict does not depend on the draw)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "SYMWRAP_EXAMPLES": os.environ.get("SYMWRAP_EXAMPLES", "10")}


def run_room(name: str, room: Room, children: int) -> None:
    folder = prepare(name, room)
    log = folder / "mutmut.log"
    print(f"[{name}] mutmut run in {folder} (log: {log})", flush=True)
    env = mutation_env()
    with log.open("w") as out:
        subprocess.run([*MUTMUT, "run", "--max-children", str(children)], cwd=folder, stdout=out,
                       stderr=subprocess.STDOUT, env=env, check=False)


def sync(folder: Path, room: Room) -> None:
    """Bring the room's copy of the package, the tests and its test selection up to date with the repository
    (mutmut then re-mutates changed files and maps new tests to the functions they cover)."""
    for part in ("symwrap", "tests"):
        shutil.copytree(ROOT / part, folder / part, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + room_config(room))


def rerun_survivors(name: str, room: Room, children: int) -> None:
    """Re-test the mutants that survived (or had no test) in the room's last run, with the current tests."""
    folder = WORK / name
    if not (folder / "mutants").is_dir():
        run_room(name, room, children)
        return
    sync(folder, room)
    survivors = [m for m, s in results(folder).items() if s in ("survived", "no tests", "not checked")]
    print(f"[{name}] re-testing {len(survivors)} mutants", flush=True)
    if not survivors:
        return
    env = mutation_env()
    with (folder / "mutmut.log").open("a") as out:
        subprocess.run([*MUTMUT, "run", "--max-children", str(children), *survivors], cwd=folder, stdout=out,
                       stderr=subprocess.STDOUT, env=env, check=False)


def results(folder: Path) -> dict[str, str]:
    """``{mutant name: status}`` of every mutant of a room (killed ones included)."""
    done = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=folder, capture_output=True, text=True,
                          check=False)
    found = {}
    for line in done.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def mutated_line(folder: Path, mutant: str) -> str:
    """The line the mutant changed, as it reads after the change (the ``+`` line of its diff)."""
    shown = subprocess.run([*MUTMUT, "show", mutant], cwd=folder, capture_output=True, text=True, check=False)
    added = [line[1:].strip() for line in shown.stdout.splitlines() if line.startswith("+") and
             not line.startswith("+++")]
    return " / ".join(added) if added else "?"


def accepted_mutants() -> dict[str, str]:
    """``{"function | mutated line": reason}`` from tools/mutation-accepted.txt."""
    entries = {}
    if not ACCEPTED_FILE.is_file():
        return entries
    for raw in ACCEPTED_FILE.read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        key, _, reason = raw.rpartition("  # ")
        entries[key.strip()] = reason.strip()
    return entries


def function_of(mutant: str) -> str:
    return re.sub(r"__mutmut_\d+$", "", mutant)


def report(names: list[str]) -> dict[str, dict]:
    accepted = accepted_mutants()
    summary, lines = {}, ["# Mutation report", ""]
    rows = ["| room | mutants | caught | survived | no test | accepted | score |", "|---|---|---|---|---|---|---|"]
    for name in names:
        folder = WORK / name
        if not (folder / "mutants").is_dir():
            continue
        statuses = results(folder)
        survivors = sorted(m for m, s in statuses.items() if s in ("survived", "no tests"))
        details, accepted_here = [], 0
        for mutant in survivors:
            key = f"{function_of(mutant)} | {mutated_line(folder, mutant)}"
            if key in accepted:
                accepted_here += 1
                continue
            details.append(f"- `{mutant}` ({statuses[mutant]}): `{key.split(' | ', 1)[1]}`")
        caught = sum(1 for s in statuses.values() if s in CAUGHT)
        counted = len(statuses) - accepted_here - sum(1 for s in statuses.values() if s in ("skipped",))
        score = caught / counted if counted else 1.0
        survived = sum(1 for s in statuses.values() if s == "survived")
        untested = sum(1 for s in statuses.values() if s == "no tests")
        summary[name] = {"mutants": len(statuses), "caught": caught, "survived": survived, "no_tests": untested,
                         "accepted": accepted_here, "score": round(score, 4)}
        rows.append(f"| {name} | {len(statuses)} | {caught} | {survived} | {untested} | {accepted_here} | "
                    f"{100 * score:.1f}% |")
        lines += [f"## {name}: {len(details)} surviving mutants not accepted", "", *details, ""]
    text = "\n".join(["# Mutation score per room", "", *rows, "", *lines[2:]])
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "report.md").write_text(text)
    (WORK / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(rows))
    print(f"\nsurvivors per room: {WORK / 'report.md'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rooms", nargs="*", help=f"rooms to run (default: all): {', '.join(ROOMS)}")
    parser.add_argument("--report", action="store_true", help="only write the report of the last runs")
    parser.add_argument("--again", action="store_true",
                        help="re-test only the survivors of each room's last run, with the current tests")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="mutants tested in parallel")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.rooms) - set(ROOMS))
    if unknown:
        parser.error(f"unknown room(s) {unknown}; rooms: {', '.join(ROOMS)}")
    names = args.rooms or list(ROOMS)
    if not args.report:
        for name in names:
            (rerun_survivors if args.again else run_room)(name, ROOMS[name], args.children)
    report(names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
