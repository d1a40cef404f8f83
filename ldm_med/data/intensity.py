"""Intensity normalisation: a linear map from scanner values to [-1, 1] and back, exactly.

CT keeps a fixed window (-1000..1000 HU), so Hounsfield units mean the same thing in every volume and
come back as HU; everything else (MR, microscopy, EM maps, astronomy) is scaled by robust percentiles
of its acquired, finite voxels. The map is stored with models' outputs (``to_dict``) so that any result
can be un-normalised later.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ldm_med.errors import InputError
from ldm_med.volume import Volume

CT_WINDOW = (-1000.0, 1000.0)
PERCENTILES = (0.5, 99.5)
_MAX_SAMPLES = 2_000_000


@dataclass(frozen=True)
class IntensityMap:
    """``y = 2 (x - lo) / (hi - lo) - 1`` and its exact inverse, for numpy arrays and torch tensors.

    Values outside ``[lo, hi]`` map outside ``[-1, 1]``; nothing is clipped.
    """

    lo: float
    hi: float

    def __post_init__(self) -> None:
        lo, hi = float(self.lo), float(self.hi)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"IntensityMap needs finite lo < hi, got lo={lo}, hi={hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    def forward(self, x: Any) -> Any:
        """Scanner values -> normalised (dtype of ``x`` kept for float arrays and tensors)."""
        return (x - self.lo) * (2.0 / (self.hi - self.lo)) - 1.0

    def inverse(self, y: Any) -> Any:
        """Normalised -> scanner values."""
        return (y + 1.0) * ((self.hi - self.lo) / 2.0) + self.lo

    @property
    def is_ct(self) -> bool:
        """The fixed CT window: the volume was taken for CT (``intensity_map_for``)."""
        return (self.lo, self.hi) == CT_WINDOW

    def to_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntensityMap:
        try:
            return cls(float(d["lo"]), float(d["hi"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad intensity map {d!r}: need finite numbers 'lo' < 'hi' "
                             f"({exc})") from None


def intensity_map_for(volume: Volume) -> IntensityMap:
    """The normalisation for ``volume``.

    CT (``metadata["modality"] == "CT"``, or no modality given and values that look like Hounsfield
    units: air near -1000 and a top below 4000) gets the fixed window -1000..1000 HU. Anything else
    gets the 0.5 and 99.5 percentiles of its acquired, finite voxels (``hi > lo`` is guaranteed: a
    constant volume gets a window of width 1 around its value).

    Raises:
        InputError: when no acquired slice has a finite voxel.
    """
    modality = str(volume.metadata.get("modality", "") or "").upper()
    if modality == "CT":
        return IntensityMap(*CT_WINDOW)
    values = _acquired_finite_sample(volume)
    if values.size == 0:
        raise InputError("cannot normalise: the volume has no finite values in its acquired slices")
    lo, hi = (float(v) for v in np.percentile(values, PERCENTILES))
    if not modality and _looks_like_hu(lo, hi):
        return IntensityMap(*CT_WINDOW)
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, lo + 0.5
    return IntensityMap(lo, hi)


def _looks_like_hu(p_lo: float, p_hi: float) -> bool:
    """Air (-1000 HU, or a scanner's padding down to -1024) at the bottom and at most dense bone or
    contrast (<= 4000) at the top."""
    return -1100.0 <= p_lo <= -900.0 and 0.0 <= p_hi <= 4000.0


def _acquired_finite_sample(volume: Volume) -> np.ndarray:
    """Finite voxels of the acquired slices, evenly subsampled to at most ~2M values."""
    planes = volume.slices_first()[np.asarray(volume.acquired, dtype=bool)]
    flat = planes.reshape(-1)
    step = max(1, flat.size // _MAX_SAMPLES)
    sample = flat[::step]
    return sample[np.isfinite(sample)]
