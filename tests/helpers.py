"""Shared test helpers: the groups every property test runs over, and loading the example scripts."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

import symwrap

#: one concrete instance per registered group (patterns instantiated), plus products
GROUP_NAMES = ["C1", "C4", "C5", "C8", "D1", "D4", "D6", "SO2", "O2", "SO3", "O3", "SO2z", "SO2y", "O2z",
               "O2y", "Mz", "My", "S4", "S", "T1", "T2", "T3", "E3", "SE3", "SO3xS", "E3xS", "C4xS4"]
SET_SIZE = 5


def concrete(name: str) -> symwrap.groups.Group:
    group = symwrap.get_group(name)
    return group.sized(SET_SIZE) if group.needs_size else group


def make_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_script(file_name: str) -> ModuleType:
    """``examples/<file_name>`` imported as a module (examples are scripts, not a package)."""
    path = EXAMPLES / file_name
    spec = importlib.util.spec_from_file_location(f"{path.stem}_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module
