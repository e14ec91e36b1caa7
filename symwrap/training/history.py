"""What :func:`~symwrap.training.fit` returns: one record per epoch (and one per logged step)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, overload

from ..errors import ConfigError


@dataclasses.dataclass
class History:
    """The metrics of a :func:`~symwrap.training.fit` run.

    Attributes:
        epochs: one dict per finished epoch: ``epoch`` (1-based), ``step`` (optimizer steps so
            far), ``lr``, ``time`` (seconds), ``train_<term>`` (the epoch mean of every term the
            loss returned, ``train_total`` included), ``val_<term>`` and ``val_accuracy`` (integer
            labels only) when there is a validation loader, and ``equivariance_error`` for a
            :class:`~symwrap.strategies.SymmetricModel` (``equivariance_error_<group>`` too when it
            trains several groups).
        steps: one dict every ``log_every`` optimizer steps: ``epoch``, ``step``, ``lr`` and the mean
            of every ``train_<term>`` over the steps since the previous record.
        monitor: the key :attr:`best` follows; ``None``: ``val_total`` when the records have it,
            else ``train_total``.
        monitor_mode: ``"min"`` (the smallest value is best) or ``"max"``.

    A history iterates, indexes and slices like the list of its epoch records (``for record in history``,
    ``history[-1]``); a string index gives one metric over the epochs.

    Example::

        history = symwrap.training.fit(model, train, val, epochs=5)
        history.last["val_accuracy"], history.best["epoch"], history["train_total"]
        history.save("history.json")
    """

    epochs: list[dict[str, float]] = dataclasses.field(default_factory=list)
    steps: list[dict[str, float]] = dataclasses.field(default_factory=list)
    monitor: str | None = None
    monitor_mode: str = "min"

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.epochs)

    @overload
    def __getitem__(self, key: str) -> list[float]: ...

    @overload
    def __getitem__(self, key: int) -> dict[str, float]: ...

    @overload
    def __getitem__(self, key: slice) -> list[dict[str, float]]: ...

    def __getitem__(self, key: str | int | slice) -> Any:
        """An epoch record (an integer index), records (a slice), or the values of one metric over the
        epochs (a string; ``nan`` where an epoch lacks it)."""
        if isinstance(key, (int, slice)) and not isinstance(key, bool):
            return self.epochs[key]
        if not isinstance(key, str):
            raise TypeError(f"a History is indexed by an epoch (int), a slice or a metric name (str); "
                            f"got {type(key).__name__}")
        if not any(key in record for record in self.epochs):
            raise KeyError(f"no epoch record has {key!r}; keys: {sorted(self.keys())}")
        return [record.get(key, math.nan) for record in self.epochs]

    def keys(self) -> list[str]:
        """Every metric name that some epoch record has, in first-seen order."""
        seen: dict[str, None] = {}
        for record in self.epochs:
            seen.update(dict.fromkeys(record))
        return list(seen)

    @property
    def last(self) -> dict[str, float] | None:
        """The record of the last epoch (``None`` before the first epoch ends)."""
        return self.epochs[-1] if self.epochs else None

    @property
    def best(self) -> dict[str, float] | None:
        """The epoch record with the best :attr:`monitor` value (``None`` when there is none)."""
        return self.best_by(self._monitor_key(), self.monitor_mode) if self.epochs else None

    def best_by(self, key: str, mode: str = "min") -> dict[str, float]:
        """The epoch record with the smallest (``mode="min"``) or largest (``"max"``) ``key``."""
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max'; got {mode!r}")
        candidates = [r for r in self.epochs if key in r and not math.isnan(r[key])]
        if not candidates:
            raise KeyError(f"no epoch record has a value for {key!r}; keys: {sorted(self.keys())}")
        pick = min if mode == "min" else max
        return pick(candidates, key=lambda record: record[key])

    def _monitor_key(self) -> str:
        if self.monitor is not None:
            return self.monitor
        return "val_total" if any("val_total" in r for r in self.epochs) else "train_total"

    # --- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-ready) of the records."""
        return {"epochs": [dict(r) for r in self.epochs], "steps": [dict(r) for r in self.steps],
                "monitor": self.monitor, "monitor_mode": self.monitor_mode}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> History:
        """The inverse of :meth:`to_dict`."""
        unknown = sorted(set(values) - {"epochs", "steps", "monitor", "monitor_mode"})
        if unknown:
            raise ConfigError(f"History has no field(s) {unknown}; expected 'epochs', 'steps', 'monitor' and "
                              "'monitor_mode'")
        return cls(epochs=[dict(r) for r in values.get("epochs", [])],
                   steps=[dict(r) for r in values.get("steps", [])], monitor=values.get("monitor"),
                   monitor_mode=values.get("monitor_mode", "min"))

    def to_json(self, indent: int | None = 2) -> str:
        """The records as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> Path:
        """Write the records to ``path`` as JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
