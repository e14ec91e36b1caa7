"""symwrap.progress: a live tqdm bar on a terminal; elsewhere (CI, a log file) whole lines, at most one per
interval plus the last one; nothing at all when disabled."""

from __future__ import annotations

import io
import random

import pytest
import torch
import tqdm.std
from tqdm.auto import tqdm as auto_tqdm

from symwrap.errors import ConfigError
from symwrap.progress import LOG_INTERVAL_SECONDS, LineProgress, progress_bar


class FakeClock:
    """A clock that moves only when told to (tqdm reads ``tqdm.std.time``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Log(io.StringIO):
    """A non-terminal stream that remembers the clock at each write."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__()
        self.clock, self.writes = clock, []

    def write(self, text: str) -> int:
        self.writes.append((self.clock() if self.clock else None, text))
        return super().write(text)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(tqdm.std, "time", fake)
    # tqdm's monitor thread reads the real clock; the behaviour under test is tqdm's own per-update check
    monkeypatch.setattr(LineProgress, "monitor_interval", 0)
    return fake


def test_off_a_terminal_each_line_is_whole_and_lines_come_once_per_interval(clock, monkeypatch):
    monkeypatch.setenv("SYMWRAP_PROGRESS_INTERVAL", "5")
    log = Log(clock)
    bar = progress_bar(total=100, desc="training", unit="step", file=log)
    assert isinstance(bar, LineProgress)
    for step in range(100):
        clock.now += 1.0
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")
        bar.update()
    bar.close()

    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert all(line.startswith("training:") for line in lines)
    # 100 s at one line per 5 s: the opening line, one per interval, and the last one (no duplicate at close)
    assert len(lines) == 1 + 100 // 5
    assert lines[0].startswith("training:   0%") and "0/100" in lines[0]
    assert "100/100" in lines[-1] and "loss=0.010" in lines[-1]
    times = [when for when, _ in log.writes]
    assert all(later - earlier >= 5.0 for earlier, later in zip(times, times[1:]))


def test_the_closing_line_is_left_out_when_only_the_clock_moved_since_the_last_line(clock, monkeypatch):
    monkeypatch.setenv("SYMWRAP_PROGRESS_INTERVAL", "5")
    log = Log(clock)
    with progress_bar(total=10, desc="epoch 1/1", file=log) as bar:
        for _ in range(10):
            clock.now += 1.0
            bar.update()
        clock.now += 3.0  # the last step's line is out (10 s, 5 s after the one before); closing comes later
    lines = log.getvalue().splitlines()
    assert [line.split("|")[2].split()[0] for line in lines] == ["0/10", "5/10", "10/10"]

    log = Log(clock)
    with progress_bar(total=10, desc="epoch 1/1", file=log) as bar:
        for _ in range(10):
            clock.now += 1.0
            bar.update()
        bar.set_postfix(loss="0.5")  # something new to say: the closing line is written
        clock.now += 3.0
    lines = log.getvalue().splitlines()
    assert len(lines) == 4 and "10/10" in lines[-1] and "loss=0.5" in lines[-1] and "loss" not in lines[-2]


def test_irregular_steps_never_give_two_lines_within_an_interval(clock, monkeypatch):
    monkeypatch.setenv("SYMWRAP_PROGRESS_INTERVAL", "3")
    log = Log(clock)
    durations = random.Random(0).choices([0.01, 0.2, 1.0, 4.0], weights=[5, 3, 2, 1], k=300)
    started = clock.now
    for duration in progress_bar(durations, desc="epoch 1/1", file=log):
        clock.now += duration
    total = clock.now - started

    times = [when for when, _ in log.writes]
    assert all(text.endswith("\n") and text.count("\n") == 1 for _, text in log.writes)
    # every line but the last (written when the loop ends) comes at least an interval after the one before
    assert all(later - earlier >= 3.0 for earlier, later in zip(times[:-1], times[1:-1]))
    assert 2 < len(times) <= total / 3 + 2
    assert "300/300" in log.getvalue().splitlines()[-1]


def test_a_short_run_prints_its_first_and_last_line_only(monkeypatch):
    """With the real clock and the default interval, a fast loop of many steps writes two lines, not one per
    step (the demo's log was 366 KB of carriage-return updates before)."""
    monkeypatch.delenv("SYMWRAP_PROGRESS_INTERVAL", raising=False)
    log = Log()
    with progress_bar(total=5000, desc="training", unit="step", file=log) as bar:
        for _ in range(5000):
            bar.set_postfix(loss="0.123")
            bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "0/5000" in lines[0] and "5000/5000" in lines[1]
    assert bar.mininterval == LOG_INTERVAL_SECONDS


def test_the_benchmarks_training_loop_logs_whole_lines_to_a_non_terminal_stderr(capsys, monkeypatch):
    from symwrap_bench.loop import train_steps

    monkeypatch.delenv("SYMWRAP_PROGRESS_INTERVAL", raising=False)
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randint(2, (8,))
    trained = train_steps(model, lambda: (x, y), 200, 0.1, torch.nn.functional.cross_entropy, progress=True)

    err = capsys.readouterr().err
    assert trained.steps == 200
    assert "\r" not in err and err.count("\n") <= 3, err
    assert "200/200" in err.splitlines()[-1]


def test_a_terminal_gets_the_live_tqdm_bar(monkeypatch):
    monkeypatch.setenv("SYMWRAP_PROGRESS_INTERVAL", "1000")
    screen = Terminal()
    with progress_bar(total=3, desc="training", file=screen, mininterval=0) as bar:
        for _ in range(3):
            bar.update()
    assert isinstance(bar, auto_tqdm) and not isinstance(bar, LineProgress)
    assert bar.mininterval == 0
    assert "\r" in screen.getvalue() and "3/3" in screen.getvalue()  # redrawn in place


@pytest.mark.parametrize("stream", [Log, Terminal])
def test_disabled_bars_print_nothing(stream, capsys):
    target = stream()
    for _ in progress_bar(range(10), file=target, disable=True):
        pass
    with progress_bar(total=10, disable=True) as bar:  # stderr
        bar.update(10)
    assert target.getvalue() == "" and capsys.readouterr() == ("", "")


def test_a_stream_without_isatty_or_whose_isatty_fails_counts_as_a_log():
    class Bare:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> None:
            self.text += text

    class Detached(io.StringIO):
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    for stream in (Bare(), Detached()):
        with progress_bar(total=2, file=stream) as bar:
            bar.update(2)
        text = stream.text if isinstance(stream, Bare) else stream.getvalue()
        assert isinstance(bar, LineProgress)
        assert "\r" not in text and text.splitlines()[-1].startswith("100%")


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_interval_says_what_was_given_and_what_is_expected(value, monkeypatch):
    monkeypatch.setenv("SYMWRAP_PROGRESS_INTERVAL", value)
    with pytest.raises(ConfigError, match="SYMWRAP_PROGRESS_INTERVAL") as error:
        progress_bar(total=1, file=Log())
    assert repr(value) in str(error.value) and "seconds" in str(error.value)
