"""What a command does to its own process (the command line only: a library user's or napari's process is
theirs), each measured in ``docs/performance.md``.

``import_monai``: MONAI's package ``__init__`` imports every submodule, and through them
matplotlib.pyplot (notebook plots, ``monai.utils.jupyter_utils``), pandas (``monai.utils.profiling``)
and scipy.signal (an ultrasound transform): 1.1-1.4 of the 2.5-2.9 s MONAI takes to import on 2 cores,
for features no ldm-med command uses. MONAI imports all three through ``optional_import``, which treats
a module it cannot import as absent, so a command hides them while MONAI imports
(``sys.modules[name] = None`` makes ``import name`` fail); afterwards they import normally again.

``keep_freed_memory``: glibc gives large freed blocks back to the kernel (anything over its mmap
threshold, and the heap's free top over its trim threshold), so every fresh activation buffer of a
network call is mapped again and page-faulted in, zero-filled, on first touch. Raising both thresholds
keeps freed memory in the process for the next call.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

UNUSED_BY_COMMANDS = ("matplotlib", "pandas", "scipy.signal")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
_TRIM_THRESHOLD = 1 << 30


def import_monai() -> None:
    """Import MONAI now, with the modules in ``UNUSED_BY_COMMANDS`` hidden from it; nothing when MONAI is
    imported already, and a hidden module that was imported already stays visible to it."""
    if "monai" in sys.modules:
        return
    hidden = [name for name in UNUSED_BY_COMMANDS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None
    try:
        import monai  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and macOS have no such thresholds
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and
                mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
