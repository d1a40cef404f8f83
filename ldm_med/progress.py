"""Progress reporting: one callback type for every long job, and the two ways the CLI shows it.

Long work (reconstruction, training, batch runs) reports through a ``Progress`` callback,
``progress(stage, done, total)``: a stage name such as ``"adapt"`` or ``"sample"``, the units done so
far and the stage's total. The work calls it with ``done = 0`` when a stage starts and with
``done = total`` when it ends. Raising ``ldm_med.Cancelled`` from the callback stops the work at that
point (the napari widgets and the batch runner cancel this way).

``progress_reporter`` picks how a command-line run shows progress on stderr:

* a terminal: one tqdm bar per stage, removed when the stage ends;
* anything else (a log file, a pipe, CI): plain lines ``stage: done/total, elapsed`` at most every
  ``interval`` seconds and at the end of each stage, with no control characters;
* ``quiet``: nothing.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

Progress = Callable[[str, int, int], None]  # (stage, done, total); may raise ldm_med.Cancelled


def no_progress(stage: str, done: int, total: int) -> None:
    """A ``Progress`` that shows nothing."""


class _Stages:
    """Common bookkeeping: one stage open at a time, its clock started when its work starts."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.started = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.started = stage, time.perf_counter()
            self.open(stage, total)
        self.update(done, total)
        if total and done >= total:
            self.close()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def open(self, stage: str, total: int) -> None: ...

    def update(self, done: int, total: int) -> None: ...

    def close(self) -> None:
        self.stage = None


class TerminalProgress(_Stages):
    """One tqdm bar per stage on a terminal; a bar disappears when its stage ends."""

    def __init__(self, file: IO[str] | None = None) -> None:
        super().__init__()
        self.file, self.bar = file or sys.stderr, None

    def open(self, stage: str, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=stage, file=self.file, leave=False, dynamic_ncols=True)

    def update(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        super().close()


class LineProgress(_Stages):
    """Plain lines for logs: ``stage: done/total, 12.3 s`` at most every ``interval`` seconds and at
    the end of each stage."""

    def __init__(self, file: IO[str] | None = None, interval: float = 5.0) -> None:
        super().__init__()
        self.file, self.interval = file or sys.stderr, interval
        self.last_line = 0.0
        self.done = self.total = 0

    def open(self, stage: str, total: int) -> None:
        self.last_line = time.perf_counter()

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if time.perf_counter() - self.last_line >= self.interval and done < total:
            self._line()

    def close(self) -> None:
        if self.stage is not None:
            self._line()
        super().close()

    def _line(self) -> None:
        self.last_line = time.perf_counter()
        print(f"{self.stage}: {self.done}/{self.total}, {self.elapsed():.1f} s", file=self.file,
              flush=True)


def progress_reporter(quiet: bool = False, file: IO[str] | None = None) -> _Stages | None:
    """The reporter for a command-line run: ``None`` when quiet, bars on a terminal, lines otherwise.

    Call ``.close()`` on it when the work ends (or fails) so a last bar does not linger.
    """
    if quiet:
        return None
    file = file or sys.stderr
    return TerminalProgress(file) if file.isatty() else LineProgress(file)
