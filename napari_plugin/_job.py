"""The reconstruction as a generator of progress events, for a napari thread worker (no Qt here).

``reconstruction_job`` runs ``ldm_med.reconstruct`` on a helper thread and yields one
``(stage, done, total)`` per progress call, so the worker's generator moves (and the GUI's progress
bar with it) at every step of the work. Cancelling sets ``job.cancel``: the progress callback raises
``ldm_med.Cancelled`` at the next step, and the generator returns ``None``.

    job = Job(volume, missing, options)
    for stage, done, total in job.events():   # in the worker thread
        ...
    result = job.result
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

_END = object()


class Job:
    """One reconstruction: inputs, a cancel flag, the last progress seen and the result."""

    def __init__(self, volume: Any, missing: np.ndarray, options: Any) -> None:
        self.volume, self.missing, self.options = volume, missing, options
        self.cancel = threading.Event()
        self.last: tuple[str, int, int] | None = None
        self.result: Any = None

    def progress(self, stage: str, done: int, total: int) -> None:
        """The ``ldm_med`` progress callback: records the step; raises ``Cancelled`` when asked."""
        import ldm_med

        if self.cancel.is_set():
            raise ldm_med.Cancelled("cancelled from the napari widget")
        self.last = (stage, int(done), int(total))
        self._events.put(self.last)

    def events(self) -> Iterator[tuple[str, int, int]]:
        """Run the reconstruction; yield every progress call; return (and keep) the result, or
        ``None`` when cancelled (a cancel is not an error). Raises what the reconstruction raised."""
        import ldm_med

        self._events: queue.Queue = queue.Queue()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.result = ldm_med.reconstruct(self.volume, self.missing, self.options,
                                                  progress=self.progress)
            except BaseException as exc:  # handed to the generator, which re-raises it
                failure.append(exc)
            finally:
                self._events.put(_END)

        thread = threading.Thread(target=work, name="ldm-med reconstruct", daemon=True)
        thread.start()
        while (event := self._events.get()) is not _END:
            yield event
        thread.join()
        if self.cancel.is_set():  # also when cancelled after the last step: no result then
            self.result = None
            return None
        if failure:
            raise failure[0]
        return self.result


def estimate_seconds(shape: tuple[int, ...], options: Any, on_gpu: bool) -> float:
    """Rough wall time of a reconstruction, from this project's 2-core CPU measurements
    (``docs/benchmarks.md``: 256x256x128 at x4 in 54 s, 300 adaptation steps about 15 s; the CT
    sample with 2 samples of 1 step in 6-10 s). GPU: a guess (a twentieth, plus start-up)."""
    voxels = float(np.prod(shape))
    seconds = 3.0 + 5e-6 * voxels  # start-up and model loading; refiner passes and hold-out check
    if options.method == "ldm" and options.refine == "adapt":
        seconds += 0.05 * options.adapt_steps
    if options.method == "ldm" and (options.samples > 1 or options.refine == "off"):
        # sampling, and as much again to calibrate the spread on hidden acquired slices
        seconds += 1.5 + 8e-6 * voxels * options.samples * options.steps
    return seconds / 20.0 + 2.0 if on_gpu else seconds


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min"
