"""Slice masks: which slices along a volume's slice axis are missing.

A mask is a 1D bool numpy array over the slice axis with **True = missing** (the complement of
``Volume.acquired``). This module parses the user's ``--missing`` specification, detects missing or
corrupt slices in a volume, and draws the gap patterns used for training and benchmarks.

Specification forms accepted by :func:`parse_missing_spec` (case and whitespace do not matter):

========================  ==========================================================================
``3,7,10-14``             0-based slice indices in voxel order and inclusive ranges
``keep-every:4``          keep slices 0, 4, 8, ... and mark the rest missing
``keep-every:4:1``        the same with an offset: keep 1, 5, 9, ...
``auto``                  :func:`detect_missing` on the volume (not-acquired, non-finite or blank slices)
``none``                  nothing is missing
========================  ==========================================================================
"""
from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ldm_med.errors import InputError
from ldm_med.volume import Volume

FORMS = "'3,7,10-14' (0-based indices and inclusive ranges), 'keep-every:K[:OFFSET]', 'auto' or 'none'"
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$", re.ASCII)
_KEEP = re.compile(r"^keep[-_]?every\s*:\s*(\d+)\s*(?::\s*(\d+)\s*)?$", re.ASCII)


def parse_missing_spec(spec: str, n_slices: int, volume: Volume | None = None) -> np.ndarray:
    """Parse a missing-slice specification into a mask over ``n_slices`` slices (True = missing).

    Raises:
        InputError: naming the offending token and the valid range or forms, for bad syntax, an index
            out of ``0..n_slices-1``, ``auto`` without a volume, or a specification that marks no slice
            missing (only ``none`` may do that).
    """
    if not isinstance(spec, str):
        raise InputError(f"missing-slice specification must be text, got {type(spec).__name__}; "
                         f"use {FORMS}")
    n = int(n_slices)
    if n < 1:
        raise InputError(f"cannot mark missing slices in a volume with {n} slices")
    text = spec.strip().lower()
    if not text:
        raise InputError(f"empty missing-slice specification; use {FORMS}")
    if text == "none":
        return np.zeros(n, dtype=bool)
    if text == "auto":
        if volume is None:
            raise InputError("'auto' needs the volume to inspect; "
                             "name the slices instead, e.g. '3,7,10-14'")
        if volume.n_slices != n:
            raise InputError(f"'auto': the volume has {volume.n_slices} slices, expected {n}")
        mask = detect_missing(volume)
        if not mask.any():
            raise InputError("'auto' found no missing or corrupt slices in this volume; "
                             "name the slices to reconstruct, e.g. '3,7,10-14'")
        return mask
    keep = _KEEP.match(text)
    if keep:
        return _parse_keep_every(spec, keep, n)
    if text.startswith("keep"):
        raise InputError(f"bad token {spec.strip()!r}: expected 'keep-every:K' or 'keep-every:K:OFFSET' "
                         "with integers K >= 2 and 0 <= OFFSET < K")
    return _parse_indices(text, n)


def _to_int(digits: str) -> int:
    """ASCII digits -> int; more than 18 digits (Python refuses over 4300) count as one huge number."""
    return int(digits) if len(digits) <= 18 else 10**18


def _parse_keep_every(spec: str, match: re.Match, n: int) -> np.ndarray:
    k = _to_int(match.group(1))
    offset = _to_int(match.group(2) or "0")
    if k < 2:
        raise InputError(f"bad token {spec.strip()!r}: keep-every needs K >= 2 (K=1 keeps every slice; "
                         "use 'none' when nothing is missing)")
    if offset >= k:
        raise InputError(f"bad token {spec.strip()!r}: OFFSET must satisfy 0 <= OFFSET < K")
    mask = keep_every(n, min(k, n + 1), min(offset, n))  # same mask; keeps huge numbers in range
    if not mask.any():
        raise InputError(f"{spec.strip()!r} keeps all {n} slices, so nothing is missing; use 'none'")
    return mask


def _parse_indices(text: str, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for raw in text.split(","):
        token = raw.strip()
        if not token:
            raise InputError(f"empty entry in {text!r} (two commas in a row, or a trailing comma); "
                             f"use {FORMS}")
        rng = _RANGE.match(token)
        if rng:
            lo, hi = _to_int(rng.group(1)), _to_int(rng.group(2))
            if lo > hi:
                raise InputError(f"bad range {token!r}: start {lo} is after end {hi}; "
                                 f"write it as '{hi}-{lo}'")
        elif token.isdigit() and token.isascii():
            lo = hi = _to_int(token)
        else:
            raise InputError(f"bad token {token!r}: expected a 0-based slice index or a range "
                             f"like '10-14'; use {FORMS}")
        if hi >= n:
            raise InputError(f"slice {hi} in {token!r} is out of range: valid slices are 0..{n - 1}")
        mask[lo:hi + 1] = True
    return mask


def format_indices(slices) -> str:
    """``'3,7,10-14'`` for a bool mask or a sequence of 0-based indices (runs of 3 or more become
    ranges); ``'none'`` when there are none.

    The inverse of the index form of :func:`parse_missing_spec`.
    """
    arr = np.asarray(slices)
    idx = np.flatnonzero(arr) if arr.dtype == bool else np.unique(arr.astype(int).ravel())
    if idx.size == 0:
        return "none"
    parts = []
    breaks = np.flatnonzero(np.diff(idx) != 1)
    for start, stop in zip(np.r_[0, breaks + 1], np.r_[breaks + 1, idx.size]):
        a, b = int(idx[start]), int(idx[stop - 1])
        if b - a >= 2:
            parts.append(f"{a}-{b}")
        else:
            parts.extend(str(i) for i in range(a, b + 1))
    return ",".join(parts)


# -- detection ----------------------------------------------------------------------------------
def detect_missing(volume: Volume) -> np.ndarray:
    """Slices that are missing or corrupt (True = missing).

    A slice is flagged when any of these holds:

    * it is marked not acquired (``~volume.acquired``);
    * it contains a non-finite value (NaN or +-inf);
    * it is constant (all zero, all padding, any single value);
    * its values are wildly off: the slice median lies more than three times the volume's robust
      spread (5th to 95th percentile of all remaining voxels) below the 5th or above the 95th
      percentile, e.g. a slice of saturated or wrongly scaled values. Ordinary anatomy (a slice that
      is mostly air, say) never gets that far; the percentiles tolerate up to about 5% of such slices.
      Volumes that are nearly all one value (label maps) have no spread and are not fit for this test.
    """
    planes = volume.slices_first()
    n = planes.shape[0]
    flat = planes.reshape(n, -1)
    missing = ~np.asarray(volume.acquired, dtype=bool).copy()
    finite = np.isfinite(flat)
    missing |= ~finite.all(axis=1)
    ok = np.flatnonzero(~missing)
    if ok.size:
        sub = flat[ok]
        missing[ok] |= sub.max(axis=1) == sub.min(axis=1)
    ok = np.flatnonzero(~missing)
    if ok.size >= 3:
        sample = flat[ok][:, :: max(1, flat.shape[1] // 4096)]
        p5, p95 = (float(v) for v in np.percentile(sample, [5.0, 95.0]))
        span = max(p95 - p5, 1e-3 * max(abs(p5), abs(p95)), 1e-12)
        med = np.median(flat[ok], axis=1)
        missing[ok] |= (med < p5 - 3 * span) | (med > p95 + 3 * span)
    return missing


# -- mask generators ----------------------------------------------------------------------------
def keep_every(n: int, k: int, offset: int = 0) -> np.ndarray:
    """Mask keeping slices ``offset, offset + k, ...`` (True = missing for all the others)."""
    if k < 1 or offset < 0:
        raise ValueError(f"keep_every needs k >= 1 and offset >= 0, got k={k}, offset={offset}")
    idx = np.arange(int(n))
    return (idx < offset) | ((idx - offset) % k != 0)


def random_drop(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``round(fraction * n)`` slices chosen uniformly at random are missing."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    mask = np.zeros(int(n), dtype=bool)
    mask[rng.permutation(int(n))[: int(round(fraction * n))]] = True
    return mask


def random_blocks(
    n: int, block: int, fraction: float, rng: np.random.Generator, start: int = 0
) -> np.ndarray:
    """Non-touching runs of exactly ``block`` missing slices covering about ``fraction`` of ``n``.

    Blocks are separated by at least one acquired slice and placed at or after slice ``start``; as
    many blocks as fit are used when ``fraction`` asks for more.
    """
    if block < 1 or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"need block >= 1 and fraction in [0, 1], got {block}, {fraction}")
    avail = int(n) - int(start)
    m = int(round(fraction * n / block))
    if fraction > 0:
        m = max(m, 1)
    m = min(m, (avail + 1) // (block + 1))  # m blocks and m - 1 separators must fit
    mask = np.zeros(int(n), dtype=bool)
    if m <= 0:
        return mask
    # choose m sorted slots, then space them out: start_i = slot_i + i * block (stars and bars)
    slots = np.sort(rng.choice(avail - m * block + 1, size=m, replace=False))
    for i, s in enumerate(slots):
        b = int(start) + int(s) + i * block
        mask[b:b + block] = True
    return mask


def sample_training_mask(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random mask for training the inpainting denoiser (True = missing).

    Mixture: keep-every k in {2,...,6} with a random offset (35%), random drop of 10-60% (30%),
    blocks of 2-6 slices over 15-50% (30%), and all-missing-but-2 (5%). Always leaves at least 2
    acquired and at least 1 missing slice; requires ``n >= 3``.
    """
    n = int(n)
    if n < 3:
        raise ValueError(f"training masks need at least 3 slices, got {n}")
    kind = rng.choice(4, p=[0.35, 0.30, 0.30, 0.05])
    if kind == 0:
        k = int(rng.integers(2, 7))
        mask = keep_every(n, k, int(rng.integers(0, k)))
    elif kind == 1:
        mask = random_drop(n, float(rng.uniform(0.1, 0.6)), rng)
    elif kind == 2:
        mask = random_blocks(n, int(rng.integers(2, 7)), float(rng.uniform(0.15, 0.5)), rng)
    else:
        mask = np.ones(n, dtype=bool)
        mask[rng.choice(n, size=2, replace=False)] = False
    acquired = np.flatnonzero(~mask)
    if acquired.size < 2:
        mask[rng.choice(np.flatnonzero(mask), size=2 - acquired.size, replace=False)] = False
    if not mask.any():
        mask[int(rng.integers(0, n))] = True
    return mask


def _drop25(n: int, rng: np.random.Generator) -> np.ndarray:
    """``round(n / 4)`` slices missing at random, chosen among slices 1..n-1."""
    mask = np.zeros(int(n), dtype=bool)
    count = min(int(round(0.25 * n)), max(int(n) - 1, 0))
    mask[1 + rng.permutation(max(int(n) - 1, 0))[:count]] = True
    return mask


GAP_PATTERNS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    # every 2nd / 4th slice acquired, starting with slice 0 (trailing slices may be missing)
    "x2": lambda n, rng: keep_every(n, 2),
    "x3": lambda n, rng: keep_every(n, 3),
    "x4": lambda n, rng: keep_every(n, 4),
    "x6": lambda n, rng: keep_every(n, 6),
    # 25% of the slices missing at random, never slice 0
    "drop25": _drop25,
    # runs of 3 missing slices covering about 25% of the volume, never slice 0
    "block3": lambda n, rng: random_blocks(n, 3, 0.25, rng, start=1),
}
"""Benchmark gap patterns by name: ``fn(n_slices, rng) -> mask`` (True = missing)."""
