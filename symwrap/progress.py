"""Progress bars that suit where they are shown: a live bar on a terminal, and on anything else (CI, a log file,
a pipe) one plain line every few seconds instead of a carriage-return update per step.

Every progress bar in symwrap, its benchmarks and examples comes from :func:`progress_bar`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm as plain_tqdm
from tqdm.auto import tqdm

from .errors import ConfigError

__all__ = ["LOG_INTERVAL_SECONDS", "LineProgress", "progress_bar"]

#: Seconds between two lines when the output is not a terminal (``SYMWRAP_PROGRESS_INTERVAL`` overrides it).
LOG_INTERVAL_SECONDS = 10.0


class _LinesOnly:
    """A stream that lets through whole lines only (tqdm's bare ``\\r`` and ``\\n`` writes are dropped)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        if text.strip():
            self.stream.write(text)

    def flush(self) -> None:
        getattr(self.stream, "flush", lambda: None)()


class LineProgress(plain_tqdm):
    """A tqdm that writes whole lines (``desc: 40%| 4/10 [...]``) at most every ``mininterval`` seconds and once
    when it closes; for logs, where carriage returns pile up into megabytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["file"] = _LinesOnly(kwargs.get("file") or sys.stderr)
        self._last_line: str | None = None
        self._last_state: tuple[Any, ...] | None = None
        self._closing = False
        super().__init__(*args, **kwargs)

    def _state(self) -> tuple[Any, ...]:
        return self.n, self.total, self.desc, self.postfix

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        # the closing line repeats the last one when nothing but the clock moved since (a timed line at the last step)
        if msg is None and self._closing and self._state() == self._last_state:
            return True
        line = (self.__str__() if msg is None else msg).strip()
        if line and line != self._last_line:
            self.fp.write(line + "\n")
            self.fp.flush()
            self._last_line, self._last_state = line, self._state()
        return True

    def close(self) -> None:
        self._closing = True
        super().close()

    # a new postfix or description waits for the next timed line instead of printing one at once
    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _interval() -> float:
    """Seconds between two lines off a terminal: ``SYMWRAP_PROGRESS_INTERVAL`` if set, else the default."""
    given = os.environ.get("SYMWRAP_PROGRESS_INTERVAL")
    if given is None or not given.strip():
        return LOG_INTERVAL_SECONDS
    try:
        interval = float(given)
    except ValueError:
        interval = float("nan")
    if not interval >= 0 or interval == float("inf"):
        raise ConfigError(f"SYMWRAP_PROGRESS_INTERVAL={given!r}: expected a finite number of seconds >= 0 "
                          f"(default {LOG_INTERVAL_SECONDS:g}); unset it or set it to, say, 10")
    return interval


def progress_bar(iterable: Any = None, *, disable: bool = False, **kwargs: Any) -> plain_tqdm:
    """A tqdm progress bar: the usual live bar on a terminal; elsewhere a :class:`LineProgress` that prints one
    line every ``LOG_INTERVAL_SECONDS`` (or ``SYMWRAP_PROGRESS_INTERVAL``) seconds. Arguments are tqdm's."""
    stream = kwargs.get("file") or sys.stderr
    if disable or _is_terminal(stream):
        return tqdm(iterable, disable=disable, **kwargs)
    interval = _interval()
    kwargs.pop("dynamic_ncols", None)
    kwargs.setdefault("mininterval", interval)
    kwargs.setdefault("maxinterval", max(interval, 10 * interval))
    kwargs.setdefault("ncols", 100)
    kwargs.setdefault("ascii", True)
    return LineProgress(iterable, **kwargs)
