"""Real scans that ship inside installed packages (offline), with a fixed train/eval split.

Every candidate below was checked by hand: what it is, its size, and whether it can be read without
a network or an optional decoder. The split is fixed by name, once, and whole scans stay on one side
(frames of one acquisition never straddle the split). By default only volumes with at least 16 slices
along the acquisition axis and at least 32x32 pixels in-plane are listed (``min_slices`` and
``min_inplane`` relax that).

=====================  ======  ================================================  ===========  =====
name                   split   source (package: file)                            shape (mm)   mod.
=====================  ======  ================================================  ===========  =====
nibabel_epi_t0         eval    nibabel: tests/data/example4d.nii.gz, frame 0     128x96x24    MR
                                                                                 (2x2x2.2)
nibabel_epi_t1         eval    nibabel: tests/data/example4d.nii.gz, frame 1     128x96x24    MR
afni_tlrc              train   nibabel: tests/data/scaled+tlrc.BRIK (EPI-like,   47x54x43     MR
                               Talairach space; below the 48-pixel default)      (3x3x3)
nibabel_anatomical     train   nibabel: tests/data/anatomical.nii (T1; below     33x41x25     MR
                               the 48-pixel default)                             (2x2x2)
=====================  ======  ================================================  ===========  =====

With the default limits only the two EPI frames qualify, so the default train list is empty: the two
frames are 2 s apart in one session, so splitting them would put a near copy of the evaluation scan
into training. Both are therefore evaluation data; the two small volumes are training material for
callers that relax the limits.

What was looked at and left out (no volume with >= 16 slices of >= 48x48 pixels):

* CT: none ships anywhere. pydicom's ``CT_small.dcm`` (128x128) and pydicom-data's ``693_*.dcm``
  (512x512) are single slices; ``eCT_Supplemental.dcm`` has 2 frames; the ``dicomdirtests`` CT series
  have 16x16 pixels and 4-5 slices, and ``TINY_ALPHA`` has no pixel data at all.
* MR: pydicom's ``MR_small*.dcm`` and ``MR2_*``, ``MR-SIEMENS-*`` are single slices; ``emri_small*.dcm``
  is 64x64 with 10 frames; ``dicomdirtests`` MR series are 16x16 localizers and projections; nibabel's
  PAR/REC phantoms have 9 slices, ``functional.nii`` 3, ``example4d+orig`` (AFNI) 33x41x25, the MINC2
  files need h5py and are 10x20x20 at most; ``nifti1.hdr``/``analyze.hdr`` ship without their images.
* Ultrasound cine loops (``color3d_jpeg_baseline.dcm``, ``examples_ybr_color.dcm``): frames are time,
  not space.
* scikit-image: ``brain()`` and ``cells3d()`` are downloaded on first use, not shipped.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ldm_med.errors import InputError
from ldm_med.volume import Volume

SPLITS = ("train", "eval")


@dataclass
class RealVolume:
    """A real scan available offline: ``loader()`` returns it as a 3D :class:`Volume`."""

    name: str
    loader: Callable[[], Volume]
    split: str
    modality: str = ""
    shape: tuple[int, int, int] = (0, 0, 0)
    slice_axis: int = 2
    source: str = ""
    path: Path | None = field(default=None, repr=False)

    @property
    def n_slices(self) -> int:
        return self.shape[self.slice_axis]

    @property
    def inplane(self) -> tuple[int, int]:
        return tuple(s for a, s in enumerate(self.shape) if a != self.slice_axis)  # type: ignore


def _nibabel_data(name: str) -> Path | None:
    try:
        path = Path(str(resources.files("nibabel") / "tests" / "data" / name))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def _nibabel_loader(path: Path, frame: int | None, modality: str, name: str,
                    description: str) -> Callable[[], Volume]:
    def load() -> Volume:
        import nibabel as nib

        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        if data.ndim == 4:
            data = data[..., frame or 0]
        data = np.squeeze(data) if data.ndim > 3 else data
        slice_dim = img.header.get_dim_info()[2] if hasattr(img.header, "get_dim_info") else None
        meta = {"modality": modality, "source": f"nibabel:{path.name}", "name": name,
                "description": description}
        if frame is not None:
            meta["frame"] = frame
        return Volume(np.asarray(data, dtype=np.float32), img.affine,
                      slice_axis=2 if slice_dim is None else int(slice_dim), metadata=meta)

    return load


_CANDIDATES = (
    # name, file, frame, split, modality, shape, description
    ("nibabel_epi_t0", "example4d.nii.gz", 0, "eval", "MR", (128, 96, 24), "EPI brain, frame 0"),
    ("nibabel_epi_t1", "example4d.nii.gz", 1, "eval", "MR", (128, 96, 24), "EPI brain, frame 1"),
    ("afni_tlrc", "scaled+tlrc.BRIK", 0, "train", "MR", (47, 54, 43), "EPI-like brain, Talairach"),
    ("nibabel_anatomical", "anatomical.nii", None, "train", "MR", (33, 41, 25), "T1 brain"),
)


def real_volumes(
    split: str | None = None, *, min_slices: int = 16, min_inplane: int = 32
) -> list[RealVolume]:
    """The real volumes present in this installation, optionally of one split (``"train"``/``"eval"``).

    Only volumes with ``>= min_slices`` slices and ``>= min_inplane`` pixels along both in-plane axes
    are listed; files missing from the installed packages are skipped silently.
    """
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or None for all")
    out = []
    for name, fname, frame, sp, modality, shape, desc in _CANDIDATES:
        path = _nibabel_data(fname)
        if path is None or (split is not None and sp != split):
            continue
        rv = RealVolume(name, _nibabel_loader(path, frame, modality, name, desc), sp, modality,
                        shape, 2, f"nibabel:tests/data/{fname}", path)
        if rv.n_slices >= min_slices and min(rv.inplane) >= min_inplane:
            out.append(rv)
    return out
