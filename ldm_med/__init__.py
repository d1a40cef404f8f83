"""ldm-med: latent diffusion for volumetric scans.

Data flows one way: files -> ``Volume`` -> normalise -> encode -> sample in latent space -> decode ->
paste acquired slices -> un-normalise -> ``Volume`` -> files / napari layers.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ldm_med.errors import InputError
from ldm_med.volume import Volume

try:
    __version__ = version("ldm-med")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["InputError", "Volume", "__version__"]
