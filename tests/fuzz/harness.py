"""The contract every fuzz target checks, and the tally the long run reports.

Allowed outcomes of one input: a valid result, or ``InputError`` whose message names the input (file,
folder or token). Anything else fails the test: another exception, more than ``SECONDS`` for one input
(a SIGALRM), or a traced allocation peak above ``CAP`` plus a small allowance for the interpreter
(``tracemalloc`` sees numpy's and torch's CPU buffers as well as Python objects).

Environment:
    LDM_MED_FUZZ_EXAMPLES: hypothesis examples per test (default: the quick counts, a few hundred in all).
    LDM_MED_FUZZ_SECONDS: time bound per input (default 20 s: the machine is shared).
"""
from __future__ import annotations

import contextlib
import os
import signal
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable

from hypothesis import HealthCheck, settings

from ldm_med.errors import InputError

CAP = 64 << 20  # LDM_MED_MAX_BYTES during the fuzz run (conftest sets it)
SLACK = 32 << 20  # interpreter objects, parsers' buffers, one decoded frame set
SECONDS = float(os.environ.get("LDM_MED_FUZZ_SECONDS", "20"))
TALLY: Counter = Counter()  # (target, outcome) -> inputs


def examples(quick: int) -> int:
    raw = os.environ.get("LDM_MED_FUZZ_EXAMPLES")
    return int(raw) if raw else quick


def fuzz_settings(quick: int) -> settings:
    """Hypothesis settings: ``quick`` examples (or LDM_MED_FUZZ_EXAMPLES), our own time bound."""
    return settings(max_examples=examples(quick), deadline=None, derandomize=not os.environ.get(
        "LDM_MED_FUZZ_EXAMPLES"), database=None, suppress_health_check=list(HealthCheck))


class Hang(BaseException):  # not an Exception: no reader may turn it into an InputError
    pass


@contextlib.contextmanager
def _alarm(seconds: float):
    def fire(signum, frame):
        raise Hang(f"one input took more than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check(target: str, fn: Callable[[], object], names: Iterable[object],
          valid: Callable[[object], None] | None = None, secrets: Iterable[str] = ()) -> str:
    """Run ``fn`` once under the contract; returns the outcome ("ok" or "InputError").

    ``secrets``: text (patient identifiers) that must appear in no error message and, for a text result
    (a report), not in the result either.
    """
    names, secrets = [str(n) for n in names], [s.lower() for s in secrets]
    tracemalloc.start()
    try:
        with _alarm(SECONDS):
            try:
                result = fn()
                outcome = "ok"
            except InputError as err:
                msg = str(err)
                assert "\n" not in msg.strip(), f"{target}: multi-line error: {msg!r}"
                assert any(n in msg for n in names), f"{target}: error does not name {names}: {msg}"
                outcome, result = "InputError", None
                leaked = [s for s in secrets if s in msg.lower()]
                assert not leaked, f"{target}: error message leaks {leaked}: {msg}"
        peak = tracemalloc.get_traced_memory()[1]
    except Hang as hang:  # an ordinary failure from here on, so hypothesis shrinks and prints the input
        raise AssertionError(f"{target}: {hang}") from None
    finally:
        tracemalloc.stop()
    assert peak <= CAP + SLACK, f"{target}: allocated {peak / 2**20:.0f} MiB, above the cap"
    if isinstance(result, str):
        leaked = [s for s in secrets if s in result.lower()]
        assert not leaked, f"{target}: report leaks {leaked}"
    if outcome == "ok" and valid is not None:
        valid(result)
    TALLY[(target, outcome)] += 1
    return outcome
