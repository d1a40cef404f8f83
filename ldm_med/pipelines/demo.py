"""``ldm-med demo``: remove slices from bundled volumes, reconstruct, compare with interpolation."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ldm_med import metrics
from ldm_med.options import ReconstructOptions
from ldm_med.pipelines.reconstruct import reconstruct
from ldm_med.volume import Volume

REPO_SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def demo_volumes() -> list[tuple[str, Volume]]:
    """The bundled CT phantom (regenerated from its seed when sample_data/ is not beside the package)
    and the first real volume of the evaluation split (never used in training)."""
    from ldm_med.data.real import real_volumes
    from ldm_med.io import load_volume

    sample = REPO_SAMPLES / "ct_phantom.nii.gz"
    if sample.exists():
        ct = load_volume(sample)
    else:
        from ldm_med.data.phantoms import ct_body

        ct = ct_body((128, 128, 48), (1.0, 1.0, 2.5), seed=2024)  # what make_samples.py writes
    volumes = [("ct_phantom", ct)]
    evals = real_volumes("eval")
    if evals:
        volumes.append((evals[0].name, evals[0].loader()))
    return volumes


def run_demo(out: Path, options: ReconstructOptions, gap: str = "x4", progress=None) -> list[dict]:
    """Reconstruct each demo volume with linear, cubic and ldm; print a table; write NIfTI and PNG.

    ``progress(stage, done, total)`` is passed to ``reconstruct``.
    """
    from ldm_med.io import save_nifti
    from ldm_med.masks import GAP_PATTERNS, format_indices
    from ldm_med.pipelines.figure import orthogonal_views

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, volume in demo_volumes():
        missing = GAP_PATTERNS[gap](volume.n_slices, np.random.default_rng(options.seed))
        print(f"\n{name}: shape {volume.shape}, spacing {tuple(round(s, 2) for s in volume.spacing)} mm, "
              f"{gap}: removed {int(missing.sum())} of {volume.n_slices} slices ({format_indices(missing)})")
        results = {}
        for method in ("linear", "cubic", "ldm"):
            results[method] = reconstruct(volume, missing, replace(options, method=method),
                                          progress=progress)
            scores = metrics.evaluate(volume.data, results[method].volume.data, missing, volume.slice_axis)
            rows.append({"volume": name, "method": method, **scores, "seconds": results[method].seconds})
            print(f"  {method:>6}: PSNR {scores['psnr']:6.2f} dB  SSIM {scores['ssim']:.4f}  "
                  f"MAE {scores['mae']:.4g}  ({results[method].seconds:.1f} s)")
        degraded = volume.data.copy()
        np.moveaxis(degraded, volume.slice_axis, 0)[missing] = volume.data.min()
        ldm = results["ldm"]
        unc = ldm.uncertainty if ldm.uncertainty is not None else np.zeros_like(volume.data)
        outputs = [("truth", volume.data), ("degraded", degraded), ("cubic", results["cubic"].volume.data),
                   ("ldm", ldm.volume.data), ("uncertainty", unc)]
        for suffix, data in outputs:
            save_nifti(volume.with_data(data), out / f"{name}_{suffix}.nii.gz")
        png = orthogonal_views(
            {"truth": volume.data, f"degraded ({gap})": degraded, "cubic": results["cubic"].volume.data,
             "ldm-med": ldm.volume.data, "uncertainty": unc},
            out / f"{name}.png", spacing=volume.spacing, cmap_for={"uncertainty": "magma"},
            centre=_planes(volume.shape, volume.slice_axis, missing),
            title=f"{name}: {gap} gaps along axis {volume.slice_axis}")
        print(f"  wrote {out}/{name}_*.nii.gz and {png}")
    return rows


def _planes(shape: tuple[int, int, int], slice_axis: int, missing: np.ndarray) -> tuple[int, int, int]:
    """Middle planes, except along the slice axis: the missing slice nearest the middle."""
    centre = [s // 2 for s in shape]
    gaps = np.flatnonzero(missing)
    centre[slice_axis] = int(gaps[np.argmin(np.abs(gaps - shape[slice_axis] // 2))])
    return tuple(centre)
