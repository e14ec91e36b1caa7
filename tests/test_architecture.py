"""The rooms and their arrows (DESIGN.md): a strategy asks the group and the action, never names them."""

import ast
import inspect
import pathlib
import re

import pytest

import symwrap
from symwrap import actions, groups

PACKAGE = pathlib.Path(symwrap.__file__).parent
STRATEGY_FILES = sorted((PACKAGE / "strategies").rglob("*.py"))


def concrete_classes() -> set[str]:
    """Every concrete action and group class symwrap defines (what a strategy must not name)."""
    found = set()
    for module in (actions, groups):
        for name in dir(module):
            value = getattr(module, name)
            if inspect.isclass(value) and (issubclass(value, actions.Action) or issubclass(value, groups.Group)):
                if value not in (actions.Action, groups.Group):
                    found.add(name)
    for base in (actions.Action, groups.Group):
        stack = list(base.__subclasses__())
        while stack:
            cls = stack.pop()
            if cls.__module__.startswith("symwrap."):
                found.add(cls.__name__)
            stack.extend(cls.__subclasses__())
    return found


def imported_modules(tree: ast.AST, path: pathlib.Path) -> list[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def test_the_concrete_class_list_is_not_empty():
    names = concrete_classes()
    assert {"ImageAction", "PointsAction", "DictAction", "CyclicGroup", "SO2", "ProductGroup"} <= names


@pytest.mark.parametrize("path", STRATEGY_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_strategies_never_name_a_concrete_action_or_group(path):
    forbidden = concrete_classes()
    tree = ast.parse(path.read_text())
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in forbidden:
            named.add((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr in forbidden:
            named.add((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom):
            named |= {(node.lineno, alias.name) for alias in node.names if alias.name in forbidden}
    assert not named, f"{path.name} names {sorted(named)}: ask the group's and the action's properties instead"


@pytest.mark.parametrize("path", STRATEGY_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_strategies_import_no_room_above_them(path):
    # (base.py's from_pretrained calls symwrap.load, the front door, as peft's PeftModel.from_pretrained does)
    above = re.compile(r"^symwrap\.(backbones|training|demo|benchmarks|experiment|evaluation|cli)(\.|$)|^symwrap_bench")
    wrong = [name for name in imported_modules(ast.parse(path.read_text()), path) if above.match(name)]
    assert not wrong, f"{path.name} imports {wrong}"


@pytest.mark.parametrize("room, allowed", [
    ("groups", {"symwrap.groups", "symwrap.errors", "symwrap.registry"}),
    ("actions", {"symwrap.actions", "symwrap.groups", "symwrap.errors", "symwrap.registry"}),
])
def test_the_lower_rooms_import_only_what_is_below_them(room, allowed):
    for path in sorted((PACKAGE / room).rglob("*.py")):
        for name in imported_modules(ast.parse(path.read_text()), path):
            if name.startswith("symwrap"):
                assert any(name == a or name.startswith(a + ".") for a in allowed), f"{path.name} imports {name}"


def test_the_strategies_find_their_defaults_by_what_the_data_is_made_of():
    """Defaults for combinations no strategy names: C4 on points, SO2 and D8 on images, S on sets."""
    from torch import nn

    points = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), group="C4", strategy="symmetrization",
                          input="points", output="vector")
    assert type(points.interface.network).__name__ == "CopyScores"
    so2 = symwrap.wrap(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), group="SO2", strategy="canonicalization",
                       input="image", output="invariant")
    assert so2.config.canonicalizer in ("equivariant", "contrastive") and so2.config.in_channels == 1
    d8 = symwrap.wrap(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten()), group="D8", strategy="canonicalization",
                      input="image", output="invariant")
    assert type(d8.canonicalizer.network).__name__ == "ImageEncoder"
    sets = symwrap.wrap(nn.Sequential(nn.Flatten(), nn.Linear(8, 1)), group="S", strategy="symmetrization",
                        input="set", output="invariant", in_features=2)
    assert type(sets.interface).__name__ == "PermutationInterface"
