"""Limits every reader checks before it allocates: the allocation cap and plausible geometry.

A file declares its own size (NIfTI ``dim``, DICOM Rows x Columns x NumberOfFrames, the number of slice
positions...). Readers compare what a file declares with what it holds and with the cap below *before*
allocating, so a hostile or corrupt header gives an ``InputError`` naming the file, never an attempt to
allocate terabytes.

Environment:

* ``LDM_MED_MAX_BYTES``: the allocation cap for one volume (bytes; suffixes K, M, G, T accepted, powers
  of 1024). Default: half of the physical memory (8 GiB where it cannot be read).
* ``LDM_MED_MAX_ANISOTROPY``: largest ratio between two voxel spacings of one volume (default 1000).
  Real scans stay far below it (0.1 mm pixels with 10 mm slices is 100); a ratio of 10^9 is a corrupt
  affine, and the pipeline resamples by that ratio.

Both are read at every call, so tests and long-running hosts can change them.

The module also holds the other resource rules of a run: ``check_memory`` (estimated peak memory against
the cap and the memory available, before a reconstruction starts) and ``CpuShare`` (torch threads shared
between concurrent ldm-med processes; ``LDM_MED_THREADS`` or ``--threads`` fix the count).
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ldm_med.errors import InputError

ENV_MAX_BYTES = "LDM_MED_MAX_BYTES"
ENV_MAX_ANISOTROPY = "LDM_MED_MAX_ANISOTROPY"
DEFAULT_ANISOTROPY = 1000.0
# zlib cannot compress better than about 1032:1, so a gzip file of n bytes never holds more than this
# many times n once inflated: a declared size above that means a truncated (or lying) file.
GZIP_MAX_RATIO = 1100
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """``"512M"`` -> 536870912; plain integers are bytes. ``ValueError`` for anything else."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    value = float(t[: len(t) - len(unit)])
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return int(value * _UNITS[unit])


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def max_bytes() -> int:
    """The allocation cap for one volume: ``LDM_MED_MAX_BYTES``, else half the physical memory."""
    raw = os.environ.get(ENV_MAX_BYTES)
    if raw:
        try:
            return parse_bytes(raw)
        except ValueError:
            raise InputError(f"{ENV_MAX_BYTES}={raw!r}: expected a size such as 8G or 536870912") from None
    mem = _physical_memory()
    return mem // 2 if mem else 8 << 30


def max_anisotropy() -> float:
    raw = os.environ.get(ENV_MAX_ANISOTROPY)
    if not raw:
        return DEFAULT_ANISOTROPY
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 1):
        raise InputError(f"{ENV_MAX_ANISOTROPY}={raw!r}: expected a number >= 1")
    return value


def human(n: float) -> str:
    """Bytes as text: ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_allocation(nbytes: float, source: str | Path, what: str) -> None:
    """``InputError`` when ``nbytes`` (what ``what`` would take) exceeds the cap."""
    cap = max_bytes()
    if not nbytes <= cap:  # also catches NaN
        raise InputError(f"{source}: {what} would need {human(nbytes)}, above the {human(cap)} "
                         f"allocation cap (set {ENV_MAX_BYTES} to raise it if the file is genuine)")


def check_declared(source: str | Path, declared: int, available: int, *, compressed: bool = False,
                   what: str = "the header") -> None:
    """``InputError`` unless ``declared`` data bytes can be in ``available`` bytes of the file.

    ``compressed``: ``available`` are gzip bytes, which inflate at most ``GZIP_MAX_RATIO`` times.
    """
    room = available * GZIP_MAX_RATIO if compressed else available
    if declared > room:
        holds = f"a {human(available)} compressed file" if compressed else f"{human(available)}"
        raise InputError(f"{source}: truncated or corrupt: {what} declares {human(declared)} of data, "
                         f"but the file holds {holds}")


def check_shape(shape, itemsize: int, source: str | Path, what: str = "the image") -> int:
    """Number of bytes of ``shape`` x ``itemsize`` after checking every dimension is positive and the
    total is under the cap; returns it."""
    dims = [int(d) for d in shape]
    if not dims or any(d < 1 for d in dims):
        raise InputError(f"{source}: {what} has an empty or negative dimension (shape {tuple(dims)})")
    nbytes = math.prod(dims) * int(itemsize)
    check_allocation(nbytes, source, f"{what} of shape {tuple(dims)}")
    return nbytes


def check_spacing(spacing, source: str | Path, what: str = "voxel spacing") -> None:
    """``InputError`` unless every spacing is finite and positive and no two differ by more than
    ``LDM_MED_MAX_ANISOTROPY`` times."""
    sp = np.asarray(spacing, dtype=np.float64).ravel()
    text = " x ".join(f"{v:.4g}" for v in sp)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(f"{source}: invalid geometry: {what} {text} (every spacing must be a finite "
                         "number above 0)")
    ratio = float(sp.max() / sp.min())
    limit = max_anisotropy()
    if ratio > limit:
        raise InputError(f"{source}: implausible geometry: {what} {text} differ {ratio:.3g}-fold "
                         f"(more than {limit:g}; a corrupt header? set {ENV_MAX_ANISOTROPY} if genuine)")


def check_affine(affine, source: str | Path) -> None:
    """``InputError`` unless a 4x4 voxel-to-world affine is finite and non-singular, with plausible
    spacing (``check_spacing`` on its column norms)."""
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise InputError(f"{source}: invalid geometry: the affine holds NaN or infinite values")
    check_spacing(np.linalg.norm(aff[:3, :3], axis=0), source)
    with np.errstate(all="ignore"):
        det = abs(float(np.linalg.det(aff[:3, :3])))
    if not det > 1e-12 * float(np.prod(np.linalg.norm(aff[:3, :3], axis=0))):
        raise InputError(f"{source}: invalid geometry: the affine's voxel axes are linearly dependent "
                         "(a singular affine)")


# -- memory before a run -------------------------------------------------------------------------
def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


RECONSTRUCT_BYTES_PER_VOXEL = 48  # float32 copies the pipeline holds at once (a rough upper bound)
SAMPLE_BYTES_PER_VOXEL = 12  # each extra posterior sample: the sample and its latent work


def reconstruct_bytes(shape, spacing, slice_axis: int, samples: int) -> int:
    """Rough peak memory of one reconstruction: a few float32 copies of the volume per sample, times
    the through-plane resampling of the refiner's training planes (in-plane spacing / slice spacing when
    the slices are the finer axis)."""
    sp = [float(s) for s in spacing]
    dz = sp[slice_axis]
    inplane = max(s for i, s in enumerate(sp) if i != slice_axis)
    stretch = max(1.0, inplane / dz) if dz > 0 else float("inf")
    voxels = math.prod(int(d) for d in shape)
    per_voxel = RECONSTRUCT_BYTES_PER_VOXEL * stretch + SAMPLE_BYTES_PER_VOXEL * max(0, samples - 1)
    return int(min(voxels * per_voxel, 2.0**62))


GENERATE_BYTES_PER_VOXEL = 48      # the decoded sample and its float32 copies (stretch, noise, file)
DECODER_BYTES_PER_PIXEL = 768      # the decoder's full-resolution activations per slice it decodes at once
LATENT_BYTES_PER_VOXEL = 4096      # the denoiser's activations per latent voxel (guided: doubled batch)


def generation_bytes(size, downsample: int, slices_at_once: int = 64) -> int:
    """Rough peak memory of generating one sample of ``size`` ((H, W) or (D, H, W))."""
    size = [int(s) for s in size]
    voxels = math.prod(size)
    plane = size[-1] * size[-2]
    latent = voxels / downsample ** 2
    slices = 1 if len(size) == 2 else min(size[0], slices_at_once)
    total = voxels * GENERATE_BYTES_PER_VOXEL + slices * plane * DECODER_BYTES_PER_PIXEL
    return int(min(total + latent * LATENT_BYTES_PER_VOXEL, 2.0**62))


def check_memory(nbytes: int, source: str | Path, what: str = "the reconstruction") -> None:
    """``InputError`` when ``nbytes`` exceeds the allocation cap or the memory available now: refusing at
    the start beats being killed by the kernel half way."""
    check_allocation(nbytes, source, what)
    free = available_memory()
    if free is not None and nbytes > free:
        raise InputError(f"{source}: {what} needs about {human(nbytes)} (estimate), but only {human(free)} "
                         "of memory is available now; free memory, lower --samples, or crop the volume")


# -- CPU threads shared between processes ----------------------------------------------------------
ENV_THREADS = "LDM_MED_THREADS"
_REGISTRY = Path(tempfile.gettempdir()) / "ldm-med-processes"
REBALANCE_SECONDS = 2.0


def cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CpuShare:
    """The torch thread count of one ldm-med process, shared fairly with the others on the machine.

    Rule (first that applies): ``--threads N``; ``LDM_MED_THREADS`` or ``OMP_NUM_THREADS`` when set;
    under torchrun, cores / ``LOCAL_WORLD_SIZE``; else cores / (ldm-med processes running now), counted
    from one marker file per process in ``$TMPDIR/ldm-med-processes`` (stale markers of dead processes
    are removed). ``rebalance`` re-counts, at most every ``REBALANCE_SECONDS``, so a run that started
    alone gives up half its threads when a second one starts (and takes them back when it ends).
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise InputError(f"--threads {threads}: must be 1 or more")
        self.explicit = threads or self._from_env()
        self.marker: Path | None = None
        self.current: int | None = None
        self._last = 0.0
        if self.explicit is None and not os.environ.get("LOCAL_WORLD_SIZE"):
            try:
                _REGISTRY.mkdir(mode=0o1777, exist_ok=True)
                self.marker = _REGISTRY / str(os.getpid())
                self.marker.touch()
            except OSError:
                self.marker = None

    @staticmethod
    def _from_env() -> int | None:
        for key in (ENV_THREADS, "OMP_NUM_THREADS"):
            raw = os.environ.get(key, "").strip()
            if raw.isdigit() and int(raw) >= 1:
                return int(raw)
        return None

    def running(self) -> int:
        """ldm-med processes with a live marker (this one included)."""
        n = 0
        try:
            for entry in _REGISTRY.iterdir():
                if entry.name.isdigit() and _alive(int(entry.name)):
                    n += 1
                elif entry.name.isdigit():
                    entry.unlink(missing_ok=True)
        except OSError:
            return 1
        return max(1, n)

    def fair(self) -> int:
        if self.explicit is not None:
            return self.explicit
        world = os.environ.get("LOCAL_WORLD_SIZE", "")
        if world.isdigit() and int(world) >= 1:
            return max(1, cpu_cores() // int(world))
        return max(1, cpu_cores() // self.running())

    def apply(self) -> int:
        """Set torch's intra-op threads to ``fair()``; returns it."""
        import torch

        n = self.fair()
        if n != self.current:
            torch.set_num_threads(n)
            self.current = n
        self._last = time.monotonic()
        return n

    def rebalance(self) -> None:
        if self.explicit is None and time.monotonic() - self._last >= REBALANCE_SECONDS:
            self.apply()

    def wrap(self, progress):
        """A progress callback that rebalances the threads, then calls ``progress`` (may be None)."""
        return _Rebalancing(self, progress)

    def close(self) -> None:
        if self.marker is not None:
            self.marker.unlink(missing_ok=True)
            self.marker = None

    def __enter__(self) -> CpuShare:
        self.apply()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Rebalancing:
    """Progress callback: ``CpuShare.rebalance`` then the wrapped reporter (``close`` is forwarded)."""

    def __init__(self, share: CpuShare, progress) -> None:
        self.share, self.progress = share, progress

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.share.rebalance()
        if self.progress is not None:
            self.progress(stage, done, total)

    def close(self) -> None:
        if self.progress is not None and hasattr(self.progress, "close"):
            self.progress.close()
