"""Progress on stderr: plain lines without control characters for logs, bars for terminals, quiet."""
from __future__ import annotations

import io

import pytest

from ldm_med import progress as progress_mod
from ldm_med.progress import LineProgress, TerminalProgress, progress_reporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress_mod.time, "perf_counter", fake)
    return fake


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reporter_choice():
    assert progress_reporter(quiet=True) is None
    assert isinstance(progress_reporter(file=io.StringIO()), LineProgress)
    assert isinstance(progress_reporter(file=Tty()), TerminalProgress)


def test_lines_are_throttled_end_each_stage_and_time_from_its_start(clock):
    out = io.StringIO()
    report = LineProgress(out, interval=5.0)
    clock.now = 200.0  # time before the stage starts does not count
    report("adapt", 0, 300)
    for step in range(1, 301):
        clock.now += 0.1  # 30 s in all: a line every 5 s, then one at the end
        report("adapt", step, 300)
    report("sample", 0, 2)
    clock.now += 1.0
    report("sample", 2, 2)
    lines = out.getvalue().splitlines()
    assert lines[-2:] == ["adapt: 300/300, 30.0 s", "sample: 2/2, 1.0 s"]
    assert 5 <= len(lines) - 2 <= 6
    assert all(ch.isprintable() for line in lines for ch in line)


def test_a_stage_left_open_gets_its_line_on_close(clock):
    out = io.StringIO()
    report = LineProgress(out)
    report("encode", 0, 4)
    clock.now += 2.0
    report("encode", 1, 4)
    report.close()
    assert out.getvalue() == "encode: 1/4, 2.0 s\n"


def test_terminal_bars_disappear_when_their_stage_ends():
    out = Tty()
    report = TerminalProgress(out)
    report("adapt", 0, 3)
    report("adapt", 3, 3)
    assert report.bar is None  # closed at the end of the stage (tqdm leave=False clears the line)
    report("sample", 0, 2)
    assert report.bar is not None and report.bar.desc == "sample"
    report.close()
    assert report.bar is None
