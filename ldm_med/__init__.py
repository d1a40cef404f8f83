"""ldm-med: latent diffusion for volumetric scans.

The public API, the one surface the command line, the batch runner and the napari plugin call::

    import ldm_med

    volume = ldm_med.load_volume("scan.nii.gz")
    missing = ldm_med.parse_missing("keep-every:4", volume)
    result = ldm_med.reconstruct(volume, missing, ldm_med.ReconstructOptions(samples=4))
    ldm_med.save_volume(result.volume, "full.nii.gz")

    samples = ldm_med.generate(ldm_med.GenerateOptions("molecular", dims=3, n=2, seed=7))
    ldm_med.save_generation(samples, "synthetic/")          # MRC files + gallery.png

Names are imported on first use, so ``import ldm_med`` does not load torch.
Data flows one way: files -> ``Volume`` -> normalise -> refine / sample in latent space -> paste
acquired slices -> un-normalise -> ``Volume`` -> files / napari layers.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from ldm_med.errors import Cancelled, InputError
from ldm_med.lazy import lazy_attributes
from ldm_med.volume import Volume

try:
    __version__ = version("ldm-med")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it (imported when the name is first used)
_LAZY = {
    "load_volume": "ldm_med.api",
    "save_volume": "ldm_med.api",
    "parse_missing": "ldm_med.api",
    "save_samples": "ldm_med.api",
    "uncertainty_volume": "ldm_med.api",
    "ReconstructOptions": "ldm_med.options",
    "METHODS": "ldm_med.options",
    "REFINE_MODES": "ldm_med.options",
    "SAMPLER_NAMES": "ldm_med.options",
    "reconstruct": "ldm_med.pipelines.reconstruct",
    "Reconstruction": "ldm_med.pipelines.reconstruct",
    "Progress": "ldm_med.progress",
    "GenerateOptions": "ldm_med.options",
    "PRESET_NAMES": "ldm_med.options",
    "generate": "ldm_med.pipelines.generate",
    "Generation": "ldm_med.pipelines.generate",
    "save_generation": "ldm_med.api",
    "generation_model_info": "ldm_med.api",
    "preset_attributes": "ldm_med.api",
}

__all__ = ["Cancelled", "InputError", "Volume", "__version__", *_LAZY]

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports them
    from ldm_med.api import (  # noqa: F401
        generation_model_info,
        load_volume,
        parse_missing,
        preset_attributes,
        save_generation,
        save_samples,
        save_volume,
        uncertainty_volume,
    )
    from ldm_med.options import (  # noqa: F401
        METHODS,
        PRESET_NAMES,
        REFINE_MODES,
        SAMPLER_NAMES,
        GenerateOptions,
        ReconstructOptions,
    )
    from ldm_med.pipelines.generate import Generation, generate  # noqa: F401
    from ldm_med.pipelines.reconstruct import Reconstruction, reconstruct  # noqa: F401
    from ldm_med.progress import Progress  # noqa: F401


__getattr__, __dir__ = lazy_attributes("ldm_med", _LAZY, globals())
