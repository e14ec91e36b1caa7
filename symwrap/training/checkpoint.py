"""Checkpoints of :func:`~symwrap.training.fit`: everything needed to continue a run exactly.

``last.pt`` holds the model's and optimizer's (and scheduler's) state, the epoch and step
counters, the history so far, and the random number generator states of every rank (torch,
CUDA, NumPy, Python, the loaders' generators and the generators that seeded strategies keep),
so ``fit(..., resume=True)`` continues as if the run had never stopped. Everything is stored as
tensors and plain Python values: the file loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer

from ..errors import CheckpointError
from ..saving import describe_mismatches

CHECKPOINT_FILE = "last.pt"
FORMAT_VERSION = 1
#: what every checkpoint holds besides its format version (``scheduler`` may be ``None``)
REQUIRED_KEYS = ("model", "optimizer", "scheduler", "epoch", "step", "history", "rng")


def _model_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """The generators modules keep for their own sampling (a seeded strategy's ``_generator``)."""
    found = {}
    for name, module in model.named_modules():
        generator = getattr(module, "_generator", None)
        if isinstance(generator, torch.Generator):
            found[name] = generator
    return found


def capture_rng(device: torch.device, model: nn.Module, loaders: dict[str, Any]) -> dict[str, Any]:
    """This process's random number generator states."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "python": random.getstate(),
        "model": {name: g.get_state() for name, g in _model_generators(model).items()},
        "loaders": {},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    for key, loader in loaders.items():
        generator = getattr(loader, "generator", None)
        if isinstance(generator, torch.Generator):
            state["loaders"][key] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], device: torch.device, model: nn.Module, loaders: dict[str, Any]) -> None:
    """Set the generators back to ``state`` (from :func:`capture_rng`)."""
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_as_tuples(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    modules = dict(model.named_modules())
    for name, generator_state in state["model"].items():
        module = modules.get(name)
        if module is None:
            continue
        generator = getattr(module, "_generator", None)
        if generator is None and hasattr(module, "generator_for"):
            generator = module.generator_for(device)
        if isinstance(generator, torch.Generator):
            generator.set_state(generator_state)
    for key, generator_state in state["loaders"].items():
        generator = getattr(loaders.get(key), "generator", None)
        if isinstance(generator, torch.Generator):
            generator.set_state(generator_state)


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples where a serialiser may have left lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/last.pt`` atomically (a crash never leaves half a file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    partial = path.with_suffix(".pt.partial")
    try:
        torch.save({"format_version": FORMAT_VERSION, **state}, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, tensors on the CPU (``load_state_dict``
    moves them to the model's and optimizer's device).

    Raises:
        CheckpointError: the file is missing, empty, truncated, corrupt, not a symwrap checkpoint, or lacks
            a part; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        where = "is a folder without one" if path.is_dir() else "does not exist"
        raise CheckpointError(f"no checkpoint at {str(path)!r} (it {where}); expected a {CHECKPOINT_FILE} written by "
                              "fit(checkpoint_dir=...), or start afresh with resume=False")
    if path.stat().st_size == 0:
        raise CheckpointError(f"the checkpoint {str(path)!r} is empty (0 bytes): its write did not finish; start "
                              "afresh with resume=False")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, random bytes, a pickle of arbitrary objects, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{str(path)!r} cannot be read as a training checkpoint ({first}): it is truncated, "
                              "corrupt or not a checkpoint; start afresh with resume=False") from error
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{str(path)!r} is not a symwrap training checkpoint (it holds a "
                              f"{type(state).__name__} without 'format_version'); give the last.pt that fit wrote")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint format {state['format_version']!r}; this symwrap "
                              f"reads format {FORMAT_VERSION}: resume with the version that wrote it")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{str(path)!r} lacks {missing}; expected {list(REQUIRED_KEYS)}: the checkpoint is "
                              "incomplete; start afresh with resume=False")
    return state


def check_model_state(state: Any, model: nn.Module, path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's model state has exactly ``model``'s keys and shapes
    (checked before anything is loaded, so a foreign checkpoint leaves the model untouched)."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(path)!r}: 'model' is not a state dict of tensors; the checkpoint is corrupt")
    problems = describe_mismatches(model.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"{str(path)!r} was written for another model than {type(model).__name__}: {'; '.join(problems)}. "
            "Resume with the model the run trained, or start afresh with resume=False (or another checkpoint_dir)"
        )


def check_optimizer_state(state: dict[str, Any], optimizer: Optimizer, path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's optimizer state fits ``optimizer``: the same class
    (when recorded), the same number of parameter groups and parameters per group, and no hyper-parameter that
    ``optimizer`` does not have."""
    saved = state["optimizer"]
    cls = type(optimizer).__name__
    recorded = state.get("optimizer_class")
    if recorded is not None and recorded != cls:
        raise CheckpointError(f"{str(path)!r} was written with the optimizer {recorded}; this run trains with {cls}. "
                              f"Resume with {recorded}, or start afresh with resume=False")
    if not (isinstance(saved, Mapping) and isinstance(saved.get("param_groups"), list)
            and isinstance(saved.get("state"), Mapping)):
        raise CheckpointError(f"{str(path)!r}: 'optimizer' is not an optimizer state dict; the checkpoint is corrupt")
    sizes = [len(group.get("params", ())) for group in saved["param_groups"]]
    expected = [len(group["params"]) for group in optimizer.param_groups]
    if sizes != expected:
        raise CheckpointError(f"{str(path)!r} holds an optimizer over parameter groups of sizes {sizes}; this run's "
                              f"{cls} has {expected}: the checkpoint is for another model or another set of "
                              "trainable parameters; start afresh with resume=False")
    foreign = sorted({key for group in saved["param_groups"] for key in group} - {"params"}
                     - {key for group in optimizer.param_groups for key in group})
    if foreign:
        raise CheckpointError(f"{str(path)!r} holds the state of another optimizer (hyper-parameters {foreign} "
                              f"that {cls} does not have); resume with the optimizer the run used, or start afresh "
                              "with resume=False")


def check_scheduler_state(state: dict[str, Any], scheduler: Any, path: str | Path) -> None:
    """Raise :class:`CheckpointError` when the checkpoint's learning-rate scheduler is of another class than
    ``scheduler`` (when recorded)."""
    recorded = state.get("scheduler_class")
    if scheduler is not None and recorded is not None and recorded != type(scheduler).__name__:
        raise CheckpointError(f"{str(path)!r} was written with the scheduler {recorded}; this run has "
                              f"{type(scheduler).__name__}. Resume with {recorded}, or start afresh with resume=False")


@contextlib.contextmanager
def loading_errors(path: str | Path, part: str) -> Iterator[None]:
    """Turn an exception raised while restoring ``part`` of a checkpoint into a :class:`CheckpointError`."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{str(path)!r}: its {part} state cannot be restored ({type(error).__name__}: "
                              f"{error}); the checkpoint is corrupt or for another run; start afresh with "
                              "resume=False") from error
