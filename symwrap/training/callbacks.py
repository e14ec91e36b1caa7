"""Callbacks of :func:`~symwrap.training.fit`: code that runs after every optimizer step and every epoch.

A callback is any object with some of the methods of :class:`Callback` (all optional). ``fit`` ships three:
:class:`EarlyStopping`, :class:`CSVLogger` (a ``history.csv`` is also written to every ``checkpoint_dir``) and
:class:`TensorBoardLogger` (when the ``tensorboard`` package is installed).

::

    symwrap.fit(model, train, val, epochs=50, callbacks=[EarlyStopping("val_accuracy", patience=3)])
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, MissingDependencyError
from .history import History

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "FitState", "TensorBoardLogger", "monitor_mode"]


@dataclasses.dataclass
class FitState:
    """What a callback sees: the model being trained, its optimizer, the history so far, the epoch (1-based,
    the one running or just finished) and the optimizer steps so far. Set ``should_stop = True`` to end the
    run after the current epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: History
    epoch: int = 0
    step: int = 0
    should_stop: bool = False


class Callback:
    """The methods ``fit`` calls; subclass and override the ones you need (or pass any object that has them)."""

    def on_fit_start(self, state: FitState) -> None:
        """Before the first step (after a resumed run's state is restored)."""

    def on_step_end(self, terms: Mapping[str, torch.Tensor], state: FitState) -> None:
        """After every optimizer step, with that step's loss terms (detached tensors: calling ``float`` on
        them waits for the device)."""

    def on_epoch_end(self, record: Mapping[str, float], state: FitState) -> None:
        """After every epoch, with its record (train and validation means, equivariance error, ...)."""

    def on_fit_end(self, state: FitState) -> None:
        """After the last epoch, or once a callback stopped the run."""


def monitor_mode(key: str, mode: str = "auto") -> str:
    """``"max"`` for accuracies under ``mode="auto"``, else ``"min"``; an explicit ``"min"``/``"max"`` is kept."""
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if "accuracy" in key else "min"


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def record_value(record: Mapping[str, float], key: str, where: str) -> float:
    """``record[key]``, or a :class:`ConfigError` listing the keys the record has."""
    if key not in record:
        raise ConfigError(f"{where} monitors {key!r}, which the epoch records do not have; they have "
                          f"{sorted(record)}")
    return float(record[key])


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: an epoch-record key (``val_total``, ``val_accuracy``, ``equivariance_error``, ...).
        patience: epochs without improvement before stopping.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies).
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(self, monitor: str = "val_total", patience: int = 3, mode: str = "auto",
                 min_delta: float = 0.0) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ConfigError(f"patience must be an integer >= 1; got {patience!r}")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ConfigError(f"min_delta must be a number >= 0; got {min_delta!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.mode = monitor_mode(monitor, mode)
        self.best: float | None = None
        self.bad_epochs = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, record: Mapping[str, float], state: FitState) -> None:
        value = record_value(record, self.monitor, "EarlyStopping")
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            state.should_stop = True
            self.stopped_epoch = state.epoch


class CSVLogger(Callback):
    """Every epoch record as a row of the CSV file ``path`` (rewritten each epoch, so columns that appear later,
    such as validation metrics, get a header too)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, record: Mapping[str, float], state: FitState) -> None:
        write_history_csv(state.history, self.path)


def write_history_csv(history: History, path: str | Path) -> Path:
    """The epoch records of ``history`` as CSV (one column per key any record has; empty where one lacks it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=history.keys(), restval="")
        writer.writeheader()
        writer.writerows(history.epochs)
    return path


class TensorBoardLogger(Callback):
    """Every epoch record (and, every ``log_every`` steps, the step loss terms) as TensorBoard scalars in
    ``log_dir``; needs the ``tensorboard`` package."""

    def __init__(self, log_dir: str | Path, log_every: int = 50) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch raises ImportError when tensorboard is missing
            raise MissingDependencyError(
                "TensorBoardLogger needs the tensorboard package: pip install tensorboard") from error
        self.writer = SummaryWriter(str(log_dir))
        self.log_every = log_every

    def on_step_end(self, terms: Mapping[str, torch.Tensor], state: FitState) -> None:
        if self.log_every and state.step % self.log_every == 0:
            for name, value in terms.items():
                self.writer.add_scalar(f"step/{name}", float(value), state.step)

    def on_epoch_end(self, record: Mapping[str, float], state: FitState) -> None:
        for name, value in record.items():
            if name != "epoch":
                self.writer.add_scalar(f"epoch/{name}", float(value), state.epoch)
        self.writer.flush()

    def on_fit_end(self, state: FitState) -> None:
        self.writer.close()


def call(callbacks: list[Any], method: str, *args: Any) -> None:
    """``callback.method(*args)`` for every callback that has the method."""
    for callback in callbacks:
        hook = getattr(callback, method, None)
        if hook is not None:
            hook(*args)
