"""napari sample data: the bundled volumes (``sample_data/``), or the same generators and seeds when
the files are not beside the installed package.

* CT phantom with missing slices: the DICOM series ``ct_gap_dicom/`` (slices 8, 15 and 16 absent
  from the series, so the geometry shows the gaps; Hounsfield units).
* MR phantom with missing slices: ``mr_phantom.nii.gz`` with slices 9, 18, 19 and 29 blanked and
  marked missing.
* Molecular density map and astronomical spectral cube, complete; the files and the generators both
  say their modality (``EM``, ``ASTRO``), which picks the refiner.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 2024  # sample_data/make_samples.py
CT_GAPS = (8, 15, 16)
MR_GAPS = (9, 18, 19, 29)


def _sample_dir() -> Path | None:
    for folder in (Path(__file__).resolve().parents[1] / "sample_data",
                   Path.cwd() / "sample_data"):
        if (folder / "ct_phantom.nii.gz").is_file():
            return folder
    return None


def _layer(filename: str, name: str, generate) -> list[tuple]:
    from napari_plugin._reader import volume_layer

    folder = _sample_dir()
    path = folder / filename if folder is not None else None
    if path is not None and path.exists():
        return [volume_layer(path, name)]
    return [volume_layer(Path(filename), name, volume=generate())]


def _drop_slices(volume, gaps: tuple[int, ...]):
    """The volume with ``gaps`` blanked (0) and marked missing, as a scanner that skipped them."""
    data = volume.data.copy()
    acquired = volume.acquired.copy()
    np.moveaxis(data, volume.slice_axis, 0)[list(gaps)] = 0.0
    acquired[list(gaps)] = False
    return volume.with_data(data, acquired=acquired)


def ct_phantom() -> list[tuple]:
    def generate():
        from ldm_med.data import ct_body

        vol = ct_body((96, 96, 20), (1.25, 1.25, 2.5), seed=SEED + 1)
        vol.metadata["modality"] = "CT"
        return _drop_slices(vol, CT_GAPS)

    return _layer("ct_gap_dicom", "CT phantom", generate)


def mr_phantom() -> list[tuple]:
    import ldm_med
    from napari_plugin._reader import volume_layer

    folder = _sample_dir()
    if folder is not None:
        volume = ldm_med.load_volume(folder / "mr_phantom.nii.gz")
    else:
        from ldm_med.data import mr_head

        volume = mr_head((128, 128, 40), (1.0, 1.0, 3.0), seed=SEED)
    volume = _drop_slices(volume, MR_GAPS)
    return [volume_layer(Path("mr_phantom.nii.gz"), "MR phantom",
                         volume=volume)]


def molecule() -> list[tuple]:
    def generate():
        from ldm_med.data import molecular_density

        return molecular_density((64, 64, 64), seed=SEED)

    return _layer("molecule.nii.gz", "molecular density map", generate)


def astro_cube() -> list[tuple]:
    def generate():
        from ldm_med.data import astro_field

        return astro_field((128, 128, 24), seed=SEED)

    return _layer("astro_field.nii.gz", "astronomical cube", generate)
