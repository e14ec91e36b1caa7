"""The library and its applications stay apart: ``symwrap/`` never imports the applications of
``symwrap_bench/`` (except the ``symwrap`` command, which runs them), and the applications and the
examples use only symwrap's public API."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "symwrap"
APPLICATIONS = ROOT / "symwrap_bench"
EXAMPLES = ROOT / "examples"

#: the modules of symwrap's public API (``symwrap.errors``: the exceptions the API raises, documented in
#: docs/api/wrap.md); ``symwrap.strategies.<name>`` packages count through their ``__init__`` exports
PUBLIC_MODULES = frozenset({
    "symwrap", "symwrap.nn", "symwrap.data", "symwrap.metrics", "symwrap.groups", "symwrap.actions",
    "symwrap.strategies", "symwrap.training", "symwrap.backbones", "symwrap.pretrained", "symwrap.errors",
    "symwrap.steps", "symwrap.progress", "symwrap.lightning", "symwrap.timing",
})


def _python_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, absolute module, imported names)`` of every import statement in ``path``, relative
    imports resolved against the file's package; ``import a.b`` gives ``("a.b", [])``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module, [alias.name for alias in node.names]


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _public_strategy_package(module: str) -> bool:
    """``symwrap.strategies.<name>``: a strategy's package (its ``__init__`` exports are public)."""
    parts = module.split(".")
    return len(parts) == 3 and parts[:2] == ["symwrap", "strategies"] and \
        (LIBRARY / "strategies" / parts[2] / "__init__.py").is_file()


def test_the_library_never_imports_its_applications():
    assert not (LIBRARY / "benchmarks").exists() and not (LIBRARY / "demo.py").exists(), \
        "the benchmarks and the demo moved to symwrap_bench/"
    files = _python_files(LIBRARY)
    assert len(files) > 20
    found = []
    for path in files:
        for line, module, names in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if _in(module, "symwrap.benchmarks") or _in(module, "symwrap.demo") or \
                    (module == "symwrap" and {"benchmarks", "demo"} & set(names)):
                found.append(f"{where} imports {module} {names} (moved to symwrap_bench)")
            if _in(module, "symwrap_bench") and path != LIBRARY / "cli.py":
                found.append(f"{where} imports {module} (only symwrap/cli.py may run the applications)")
    assert not found, "\n".join(found)


def test_the_command_line_imports_the_applications_only_when_it_runs_them():
    tree = ast.parse((LIBRARY / "cli.py").read_text())
    for node in tree.body:  # module level: nothing from symwrap_bench
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(_in(module, "symwrap_bench") for module in modules), ast.unparse(node)


def _public_api_violations(path: Path) -> Iterator[str]:
    for line, module, names in _imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        if _in(module, "symwrap_bench"):
            if path.is_relative_to(EXAMPLES):  # an example may reuse an application's helpers, not its private ones
                yield from (f"{where} imports the private {module}.{name}" for name in names if name.startswith("_"))
            continue
        if not _in(module, "symwrap"):
            continue
        if module not in PUBLIC_MODULES and not _public_strategy_package(module):
            yield f"{where} imports {module}, not a public module of symwrap"
            continue
        exported = getattr(importlib.import_module(module), "__all__", None)
        for name in names:
            if name.startswith("_"):
                yield f"{where} imports the private {module}.{name}"
            elif name != "*" and exported is not None and name not in exported \
                    and f"{module}.{name}" not in PUBLIC_MODULES and not _public_strategy_package(f"{module}.{name}"):
                yield f"{where} imports {module}.{name}, which {module}.__all__ does not export"


@pytest.mark.parametrize("folder", [APPLICATIONS, EXAMPLES], ids=lambda folder: folder.name)
def test_applications_and_examples_use_only_the_public_api(folder):
    files = _python_files(folder)
    assert files
    found = [violation for path in files for violation in _public_api_violations(path)]
    assert not found, "\n".join(found)
