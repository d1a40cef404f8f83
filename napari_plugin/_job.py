"""Long ``ldm_med`` work for the napari widgets: a generator of progress events for a napari thread
worker (``Job``), and the Run / Cancel / progress-bar behaviour the widgets share (``JobControls``).

``Job`` runs its work (``ldm_med.reconstruct``, ``ldm_med.generate``) on a helper thread and yields one
``(stage, done, total)`` per progress call, so the worker's generator moves (and the GUI's progress
bar with it) at every step of the work. Cancelling sets ``job.cancel``: the progress callback raises
``ldm_med.Cancelled`` at the next step, and the generator returns ``None``.

    job = Job(lambda progress: ldm_med.reconstruct(volume, missing, options, progress=progress))
    for stage, done, total in job.events():   # in the worker thread
        ...
    result = job.result

Importing this module loads neither Qt nor napari nor torch; ``JobControls`` imports napari when it runs.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

_END = object()


class Job:
    """One run of ``work(progress)``: a cancel flag, the last progress seen and the result."""

    def __init__(self, work: Callable[[Callable[[str, int, int], None]], Any],
                 name: str = "ldm-med") -> None:
        self.work, self.name = work, name
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
        """Run the work; yield every progress call; return (and keep) the result, or ``None`` when
        cancelled (a cancel is not an error). Raises what the work raised."""
        self._events: queue.Queue = queue.Queue()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.result = self.work(self.progress)
            except BaseException as exc:  # handed to the generator, which re-raises it
                failure.append(exc)
            finally:
                self._events.put(_END)

        thread = threading.Thread(target=work, name=self.name, daemon=True)
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


class JobControls:
    """Mixin for a magicgui ``Container`` that runs one ``Job`` at a time: napari's thread worker,
    a progress bar in the activity dock, Cancel, errors as notifications.

    The widget provides ``run_button``, ``cancel_button``, ``status`` (a ``Label``) and
    ``_on_done(result)``; it calls ``_start(job, sync)``. ``_job``, ``_worker`` and ``_pbar`` are the
    running job, its worker and its progress bar (``None`` when idle).
    """

    _job: Job | None = None
    _worker: Any = None
    _pbar: Any = None
    _stage: str | None = None  # the stage the progress bar shows

    def _start(self, job: Job, sync: bool = False) -> None:
        """Run ``job`` in a napari thread worker (or, with ``sync``, in this thread)."""
        self._job = job
        self._set_running(True)
        if sync:
            self._run_here(job)
            return
        from napari.qt.threading import create_worker

        # with an "errored" handler the worker does not re-raise errors in the GUI thread: the handler
        # shows them as notifications
        self._worker = create_worker(job.events, _start_thread=False, _connect={
            "yielded": self._on_progress, "returned": self._on_done, "errored": self._on_error,
            "aborted": self._on_aborted, "finished": lambda: self._set_running(False)})
        self._worker.start()

    def _run_here(self, job: Job) -> None:
        events = job.events()
        try:
            while True:
                self._on_progress(next(events))
        except StopIteration as stop:
            self._on_done(stop.value)
        except Exception as exc:
            self._on_error(exc)
        finally:
            self._set_running(False)

    def cancel(self) -> None:
        """Stop the running job at its next step."""
        if self._job is not None:
            self._job.cancel.set()
            self.status.value = "cancelling..."

    def _on_aborted(self) -> None:
        """The worker was quit (napari's task status, or napari closing): stop the computation too,
        at its next step."""
        if self._job is not None:
            self._job.cancel.set()
        self.status.value = "cancelled"

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        if running:
            self._info(self.status, "starting...")
            return
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._job, self._worker = None, None

    def _on_progress(self, event: tuple[str, int, int]) -> None:
        from napari.utils import progress

        if self._job is None:  # a late event of a run that has ended
            return
        stage, done, total = event
        self.status.value = f"{stage}: {done}/{total}"
        # a local reference: updating the bar runs napari's handlers, which may end the run meanwhile
        pbar = self._pbar
        if pbar is None:
            pbar = self._pbar = progress(total=total, desc=f"ldm-med: {stage}")
            self._stage = stage
        if stage != self._stage:  # tqdm adds ": " to a description, so compare the stage
            pbar.set_description(f"ldm-med: {stage}")
            self._stage = stage
        if pbar.total != total:
            pbar.total = total
        pbar.update(done - pbar.n)

    def _on_error(self, exc: BaseException) -> None:
        """A failed run: one line for bad input (``InputError``), napari's error report (with the
        traceback) for anything else."""
        from napari.utils.notifications import notification_manager, show_error

        import ldm_med

        self._info(self.status, f"failed: {exc}", warn=True)
        if isinstance(exc, ldm_med.InputError):
            show_error(f"ldm-med: {exc}")
        else:
            notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def _on_done(self, result: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def _info(label: Any, text: str, warn: bool = False) -> None:
        """Show ``text`` in ``label`` (orange and bold with ``warn``)."""
        label.value = text
        label.native.setStyleSheet("color: #ff9c38; font-weight: bold;" if warn else "")


def device_choices() -> list[str]:
    """The devices to offer: auto, every CUDA device, mps where there is one, cpu."""
    import torch

    choices = ["auto"]
    if torch.cuda.is_available():
        choices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append("mps")
    return choices + ["cpu"]


def resolves_to_gpu(device: str) -> bool:
    import torch

    if device == "auto":
        mps = getattr(torch.backends, "mps", None)
        return torch.cuda.is_available() or bool(mps is not None and mps.is_available())
    return device != "cpu"


def estimate_seconds(shape: tuple[int, ...], options: Any, on_gpu: bool) -> float:
    """Rough wall time of a reconstruction, from this project's 2-core CPU measurements
    (``bench/speed.py`` in ``docs/benchmarks.md``: whole process 7.1 s at 128x128x64 and 29.2 s at
    256x256x128 with x4 gaps, about 4 s of it start-up the viewer has mostly paid; ``--samples 8``
    added 20.8 s at 128x128x64, about 3 s of it importing MONAI; fine-tuning, where the check lets it
    run, up to ``adapt_steps`` steps). GPU: a guess (a twentieth, plus start-up)."""
    voxels = float(np.prod(shape))
    seconds = 1.0 + 3e-6 * voxels  # model loading; refiner passes and the hold-out check
    if options.method == "ldm" and options.refine == "adapt":
        seconds += 0.05 * options.adapt_steps
    if options.method == "ldm" and (options.samples > 1 or options.refine == "off"):
        # sampling and decoding, and a second pass on hidden acquired slices to calibrate the spread
        seconds += 3.0 + 1.1e-6 * voxels * options.samples * options.steps
    return seconds / 20.0 + 2.0 if on_gpu else seconds


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min"
