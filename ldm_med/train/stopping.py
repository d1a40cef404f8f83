"""A graceful stop for training: Ctrl-C or SIGTERM ends the run at a step boundary, with a checkpoint.

The first signal is only noted; the loop finishes the step it is in, writes a checkpoint, and then
stops the way the signal asks (``KeyboardInterrupt`` for Ctrl-C, exit status 143 for SIGTERM), so
``--resume`` continues from the very step the run reached and ends with the weights of a run that was
never stopped. A second signal stops at once (the last periodic checkpoint is kept). Schedulers
(Slurm, Kubernetes) send SIGTERM before they kill a job: this is what makes pre-emption lossless.

Under several processes the first signal stops at once too: ranks can see it at different steps, and
a checkpoint written by one rank while another trains on would hang on the barrier.
"""
from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """Context manager: ``requested`` is the signal number once one arrived (``None`` before)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if self.enabled:
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    def _note(self, signum, frame) -> None:
        if self.requested is not None:  # the second one: stop now
            stop(signum)
        self.requested = signum

    def stop(self) -> None:
        """Raise what the noted signal would have raised."""
        if self.requested is not None:
            stop(self.requested)


def stop(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)
