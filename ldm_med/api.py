"""Reading, writing and choosing slices: the file side of the public API (``ldm_med``).

    volume = load_volume("scan/")                        # NIfTI file, DICOM folder or DICOM file
    missing = parse_missing("auto", volume)              # bool over the slice axis, True = fill
    result = reconstruct(volume, missing, ReconstructOptions(samples=4), progress=callback)
    save_volume(result.volume, "full.nii.gz")

Every function raises ``InputError`` (one line naming the file and the problem) for bad input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ldm_med.volume import Volume


def load_volume(path: str | Path, *, axis: int | None = None, volume_index: int | None = None,
                series: str | None = None) -> Volume:
    """Read a NIfTI file, a DICOM folder (searched recursively) or a DICOM file's series.

    Args:
        axis: the slice axis (0, 1 or 2) along which slices are missing. Default: the last voxel axis
            for NIfTI, the acquisition axis for DICOM, the section axis for MRC, the spectral (or third)
            axis for FITS, the page axis for TIFF.
        volume_index: which volume of a 4D NIfTI (required when it holds several).
        series: DICOM only: the series index shown by ``ldm-med info`` or a SeriesInstanceUID.
            Default: the largest image series.
    """
    from ldm_med.errors import InputError
    from ldm_med.io import load_volume as read
    from ldm_med.io.nifti import NIBABEL_SUFFIXES, has_suffix

    path = Path(path)
    if axis is not None and axis not in (0, 1, 2):
        raise InputError(f"{path}: slice axis must be 0, 1 or 2, got {axis!r}")
    volume = read(path, volume_index=volume_index, series=series)
    if axis is None and has_suffix(path, NIBABEL_SUFFIXES):
        axis = 2  # NIfTI: the last voxel axis (the other readers know their slice axis)
    if axis is not None and axis != volume.slice_axis:
        volume = volume.with_data(volume.data, slice_axis=axis, acquired=None)
    return volume


def save_volume(volume: Volume, path: str | Path, *, synthetic: bool = False,
                provenance: dict | None = None, fmt: str | None = None) -> Path:
    """Write ``volume`` atomically in the format of the suffix (or ``fmt``): NIfTI (``.nii``,
    ``.nii.gz``: RAS affine, sform and qform set), MRC (``.mrc``, ``.map``, ``.mrcs``), FITS (``.fits``,
    ``.fit``, ``.fts``, ``.fits.gz``), TIFF (``.tif``, ``.tiff``) or PNG (``.png``, one slice).
    ``synthetic`` marks the file as synthetic in its own metadata; ``provenance`` (a JSON-serialisable
    dict) is stored in it. Returns the path written. See ``ldm_med.io.write.save_volume_as``."""
    from ldm_med.io import save_volume_as

    return save_volume_as(volume, path, synthetic=synthetic, provenance=provenance, fmt=fmt)


def parse_missing(spec: str, volume: Volume) -> np.ndarray:
    """The slices to fill, as a bool mask over ``volume.slice_axis`` (True = missing).

    ``spec``: ``"auto"`` (geometry gaps, and blank, constant or NaN slices), 0-based indices and
    ranges such as ``"3,7,10-14"``, ``"keep-every:4"`` (keep 0, 4, 8, ...; ``"keep-every:4:1"`` keeps
    1, 5, 9, ...) or ``"none"``.
    """
    from ldm_med.masks import parse_missing_spec

    return parse_missing_spec(spec, volume.n_slices, volume)


def uncertainty_volume(result) -> Volume:
    """The calibrated standard deviation of a ``Reconstruction`` (``samples >= 2``) as a ``Volume`` with
    the result's geometry; its metadata (kept in the NIfTI header extension by ``save_volume``) says
    what it is and how it was calibrated."""
    from ldm_med.errors import InputError

    if result.uncertainty is None:
        raise InputError("no uncertainty map: reconstruct with ReconstructOptions(samples=2) or more")
    calib = result.volume.metadata.get("reconstruction", {}).get("uncertainty", {})
    meta = {**result.volume.metadata, "content": "calibrated standard deviation of the posterior samples",
            "descrip": "ldm-med std; " + (calib.get("interval", "") + " = 90% interval"
                                          if calib.get("calibrated") else "UNCALIBRATED")}
    return result.volume.with_data(result.uncertainty, metadata=meta)


def save_samples(result, path: str | Path) -> Path:
    """Write the posterior samples of a ``Reconstruction`` (``samples >= 2``) as one 4D NIfTI
    ``(X, Y, Z, sample)``, atomically; acquired slices are the input's in every sample."""
    from ldm_med.errors import InputError
    from ldm_med.io import save_nifti

    if result.samples is None:
        raise InputError(f"{path}: no posterior samples: reconstruct with ReconstructOptions(samples=2) "
                         "or more")
    meta = {**result.volume.metadata, "content": f"{len(result.samples)} posterior samples (4th axis)",
            "descrip": f"ldm-med {len(result.samples)} posterior samples"}
    save_nifti(result.volume.with_data(result.volume.data, metadata=meta), path, stack=result.samples)
    return Path(path)


EXTENSIONS = {"nifti": ".nii.gz", "mrc": ".mrc", "fits": ".fits", "tiff": ".tif", "png": ".png"}


def save_generation(generation, out_dir: str | Path, *, fmt: str | None = None,
                    overwrite: bool = False) -> list[Path]:
    """Write a :class:`~ldm_med.pipelines.generate.Generation`: one file per sample in ``fmt`` (default the
    preset's natural format: MRC for molecular, FITS for astronomical, NIfTI for medical), each marked
    synthetic with its settings and seed in its metadata, plus ``gallery.png`` and ``generation.json``.
    Returns the sample files. Nothing is overwritten unless ``overwrite``."""
    import json

    from ldm_med.errors import InputError
    from ldm_med.io.write import save_volume_as, write_bytes
    from ldm_med.pipelines.gallery import save_gallery

    out = Path(out_dir)
    fmt = fmt or generation.natural_format
    if fmt not in EXTENSIONS:
        raise InputError(f"--format {fmt!r}: valid formats are {', '.join(EXTENSIONS)}")
    opts = generation.options
    if fmt == "png" and opts.dims != 2:
        raise InputError("--format png holds 2D images only; use nifti, mrc, fits or tiff for volumes")
    names = [f"{opts.preset}_{opts.dims}d_seed{opts.seed + i}{EXTENSIONS[fmt]}"
             for i in range(len(generation.volumes))]
    targets = [out / n for n in names] + [out / "gallery.png", out / "generation.json"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]}: exists (pass --overwrite to replace {len(existing)} file(s))")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{out}: cannot create the output folder ({err.strerror or err})") from None
    paths = [save_volume_as(v, out / n, synthetic=True, provenance=v.metadata.get("provenance"), fmt=fmt)
             for v, n in zip(generation.volumes, names)]
    drawn = [v.metadata["provenance"].get("attrs_drawn", {}) for v in generation.volumes]
    labels = [f"seed {opts.seed + i}" + "".join(f", drawn {k} {val:.3g}" for k, val in d.items())
              for i, d in enumerate(drawn)]
    attrs = ", ".join(f"{k}={v:g}" for k, v in opts.attrs)
    title = f"SYNTHETIC {opts.preset} ({opts.dims}D), guidance {opts.guidance:g}"
    title += f", {attrs}" if attrs else ""
    save_gallery(generation.volumes, out / "gallery.png", title=title, labels=labels)
    summary = {"synthetic": True, "settings": opts.settings(), "format": fmt,
               "seconds": round(generation.seconds, 2), "notes": generation.notes,
               "samples": [{"file": p.name, "seed": opts.seed + i, "attrs_drawn": d,
                            "measured": v.metadata["provenance"].get("measured", {})}
                           for i, (p, v, d) in enumerate(zip(paths, generation.volumes, drawn))]}
    write_bytes(out / "generation.json", (json.dumps(summary, indent=2) + "\n").encode())
    return paths


def preset_attributes(dims: int | None = None) -> dict[str, dict]:
    """Each shipped preset's attribute, without torch: ``{preset: {"name", "unit", "low", "high",
    "description"}}``. ``low``-``high``: the preset's declared range; with ``dims``, the part of it the
    shipped ``dims``-D model's training samples cover where its file records that (``attribute_ranges``;
    the 3D astronomical cubes hold fewer sources than the 2D sky images)."""
    from dataclasses import asdict

    from ldm_med.data.presets import PRESETS

    attrs = {name: asdict(preset.attribute) for name, preset in PRESETS.items()}
    recorded = _shipped_attribute_ranges(dims) if dims is not None else {}
    for name, attr in attrs.items():
        if attr["name"] in recorded.get(name, {}):
            attr["low"], attr["high"] = map(float, recorded[name][attr["name"]])
    return attrs


def _shipped_attribute_ranges(dims: int) -> dict[str, dict]:
    """``{class: {attribute: [low, high]}}`` from the shipped generation model's header (read without
    torch: the napari widget asks before anything loads)."""
    import json

    from safetensors import safe_open

    path = Path(__file__).parent / "models" / f"generator_{dims}d.safetensors"  # generation.model's default
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="numpy") as f:
        classes = json.loads((f.metadata() or {}).get("extra", "{}")).get("classes", {})
    return {name: info.get("attribute_ranges", {}) for name, info in classes.items()}


def generation_model_info(checkpoint: str | Path | None = None, dims: int = 2) -> dict:
    """What a generation model file offers (default: the shipped one for ``dims``): ``{"file", "dims",
    "arch", "size", "classes": {name: {"modality", "format", "attributes": {name: {"unit", "low",
    "high", "description"}}, "sampling": {...}}}}``: ``low``-``high`` the values the class can be asked
    for (the range its training samples cover where the model records it, else the declared range),
    ``sampling`` the class's recorded guidance settings (empty: the defaults). Loads the model (torch)."""
    from ldm_med.generation.model import load_generation_model
    from ldm_med.pipelines.generate import attribute_range, class_attributes

    model = load_generation_model(checkpoint, dims)
    classes = {}
    for name in model.label_names:
        info = model.classes[name]
        attrs = {}
        for a in class_attributes(model, name):
            low, high = attribute_range(model, name, a)
            attrs[a] = {**model.attributes[a], "low": low, "high": high}
        classes[name] = {"modality": info["modality"], "format": info["natural_format"],
                         "attributes": attrs, "sampling": dict(info.get("sampling", {}))}
    return {"file": str(model.path), "dims": model.dims, "arch": model.arch, "size": list(model.size),
            "classes": classes}
