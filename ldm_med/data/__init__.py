"""Data: procedural generators (training data and fixtures), intensity normalisation, real volumes.

``GENERATORS`` maps a short name to a seeded generator ``fn(shape=..., seed=...)``; every generator
returns a :class:`~ldm_med.volume.Volume` with ``metadata["modality"]`` and ``metadata["generator"]``
(``astro`` returns a 2D array when given a 2D shape).
"""
from __future__ import annotations

from collections.abc import Callable

from ldm_med.data.intensity import CT_WINDOW, IntensityMap, intensity_map_for
from ldm_med.data.phantoms import ct_body, mr_head
from ldm_med.data.real import RealVolume, real_volumes
from ldm_med.data.science import astro_field, molecular_density
from ldm_med.volume import Volume

GENERATORS: dict[str, Callable[..., Volume]] = {
    "ct": ct_body,
    "mr": mr_head,
    "molecule": molecular_density,
    "astro": astro_field,
}

__all__ = [
    "CT_WINDOW",
    "GENERATORS",
    "IntensityMap",
    "RealVolume",
    "astro_field",
    "ct_body",
    "intensity_map_for",
    "molecular_density",
    "mr_head",
    "real_volumes",
]
