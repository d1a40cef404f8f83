"""Does the diffusion model's spread grow with the gap? The samples' RMS standard deviation, and the RMS
error of their mean, by a missing slice's distance to the nearest acquired slice, at two gap widths.

    python bench/spread_gap.py [--kinds ct,mr] [--gaps 4,8] [--samplers dpm++2m:2,dpm++2m:8,dpm++2m-sde:8]
                               [--checkpoint DENOISER]   # another denoiser than the shipped one

The per-scan calibration (``ldm_med/inpainting/calibrate.py``) hides acquired slices, so it measures
errors at gaps twice the real ones; its scale carries over only if the map grows with the gap as the
errors do. Volumes: CT and MR phantoms from seed 920000 (not in the benchmark), 48 slices, linear
anchor, the shipped inpainting model, 8 samples. Figures: docs/method.md ("Coverage beyond the
benchmark's ten volumes").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldm_med.data import ct_body, mr_head  # noqa: E402
from ldm_med.data.intensity import intensity_map_for  # noqa: E402
from ldm_med.inpainting.interpolate import fill_missing  # noqa: E402
from ldm_med.inpainting.models import load_inpainting_model  # noqa: E402
from ldm_med.inpainting.sampling import SamplingOptions, sample_corrections  # noqa: E402
from ldm_med.masks import keep_every  # noqa: E402

MAKERS = {"ct": lambda: ct_body((128, 128, 48), (1.0, 1.0, 2.5), seed=920000),
          "mr": lambda: mr_head((128, 128, 48), (1.0, 1.0, 2.0), seed=920000)}


def by_distance(model, vol, k: int, sampler: str, steps: int) -> list[tuple[int, float, float]]:
    """``(distance, RMS std of the samples, RMS error of their mean)`` per distance, every k-th slice
    acquired (and the last one, so no slice is extrapolated)."""
    data = np.moveaxis(vol.data, vol.slice_axis, 0)
    missing = keep_every(data.shape[0], k, 0)
    missing[-1] = False
    imap = intensity_map_for(vol.with_data(vol.data, acquired=~missing))
    x = imap.forward(fill_missing(data, missing, 0, "linear")).astype(np.float32)
    truth = imap.forward(data)[missing]
    c = sample_corrections(model, x, missing, SamplingOptions(samples=8, sampler=sampler, steps=steps),
                           torch.device("cpu"))
    std, err = c.std(axis=0), x[missing] + c.mean(axis=0) - truth
    acquired = np.flatnonzero(~missing)
    dist = np.array([np.abs(acquired - i).min() for i in np.flatnonzero(missing)])
    rms = lambda a: float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))
    return [(int(d), rms(std[dist == d]), rms(err[dist == d])) for d in np.unique(dist)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="ct,mr")
    ap.add_argument("--gaps", default="4,8")
    ap.add_argument("--samplers", default="dpm++2m:2,dpm++2m:8,dpm++2m-sde:8")
    ap.add_argument("--checkpoint", default=None, help="a slice-inpainting denoiser (default: the shipped)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_inpainting_model(args.checkpoint, torch.device("cpu"))
    print("| volume | sampler, steps | gap | std / error of the mean at distance 1, 2, ... (normalised) |")
    print("|---|---|---|---|")
    for kind in args.kinds.split(","):
        vol = MAKERS[kind]()
        for spec in args.samplers.split(","):
            sampler, steps = spec.split(":")
            for k in map(int, args.gaps.split(",")):
                cells = ", ".join(f"{s:.4f} / {e:.3f}" for _, s, e in by_distance(model, vol, k, sampler,
                                                                                    int(steps)))
                print(f"| {kind}_920000 | {sampler}, {steps} | x{k} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
