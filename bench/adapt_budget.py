"""The probe behind ``ReconstructOptions.adapt_budget``: what fine-tuning steps buy on a small job.

    python bench/adapt_budget.py

Three missing slices (8, 15, 16) of a 96x96x20 CT phantom, a 96x96x20 MR phantom (unseen seeds) and
the first real EPI of the evaluation split; for 300, 100 and 50 fine-tuning steps and the pretrained
refiner alone: PSNR gain over linear interpolation on the missing slices, CPU-seconds (one thread), and
the blend the check chose. Prints one line per run.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldm_med
from ldm_med import metrics
from ldm_med.data import ct_body, mr_head
from ldm_med.data.real import real_volumes


def main() -> None:
    torch.set_num_threads(1)
    vols = [("ct", ct_body((96, 96, 20), (1.25, 1.25, 2.5), seed=810001)),
            ("mr", mr_head((96, 96, 20), (1.0, 1.0, 3.0), seed=810002)),
            ("epi", real_volumes("eval")[0].loader())]
    for name, vol in vols:
        missing = np.zeros(vol.n_slices, bool)
        missing[[8, 15, 16]] = True
        linear = ldm_med.reconstruct(vol, missing, ldm_med.ReconstructOptions(method="linear"))
        base = metrics.psnr(vol.data, linear.volume.data, missing, axis=vol.slice_axis)
        for steps in (300, 100, 50, 0):
            opts = (ldm_med.ReconstructOptions(adapt_steps=steps, device="cpu") if steps else
                    ldm_med.ReconstructOptions(refine="pretrained", device="cpu"))
            start = time.process_time()
            result = ldm_med.reconstruct(vol, missing, opts)
            cpu = time.process_time() - start
            gain = metrics.psnr(vol.data, result.volume.data, missing, axis=vol.slice_axis) - base
            print(f"{name} {steps:3d} steps: {gain:+.2f} dB over linear, {cpu:.1f} CPU-s, blend "
                  f"{result.volume.metadata['reconstruction']['blend']}", flush=True)


if __name__ == "__main__":
    main()
