"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""
from __future__ import annotations


class InputError(ValueError):
    """Bad input (file, option or checkpoint): the message names the thing and the problem."""


class Cancelled(RuntimeError):
    """Raised from a progress callback to stop long work at the next step."""
