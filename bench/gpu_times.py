"""In-process times of the default paths on one device, after a warm-up: what a GPU buys once the process
has started (``bench/speed.py`` measures whole processes, start-up included).

    python bench/gpu_times.py [--device cuda] [--repeats 3] [--quick]

Cases: reconstruction of CT phantoms with x4 gaps (128x128x64 with one and with 8 samples, 256x256x128
with one), and ``generate`` with the shipped models (2D 128x128 and 3D 64^3, 20 steps, one candidate).
Prints one JSON line per case (median and fastest seconds, peak device memory) and a Markdown table;
``bench/gpu_check.sh`` runs it on a lent GPU machine. ``--quick``: smaller volumes, for checking the
script itself on a CPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldm_med import GenerateOptions, ReconstructOptions, generate, reconstruct  # noqa: E402
from ldm_med.data.phantoms import ct_body  # noqa: E402
from ldm_med.masks import GAP_PATTERNS  # noqa: E402


def timed(fn, device: torch.device, repeats: int) -> dict:
    fn()  # warm-up: model loading, kernels, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "peak_gpu_gb": peak}


def cases(device: str, quick: bool) -> list[tuple[str, object]]:
    small, large = ((32, 32, 16), (64, 64, 32)) if quick else ((128, 128, 64), (256, 256, 128))
    out = []
    for shape, samples in ((small, 1), (small, 8), (large, 1)):
        volume = ct_body(shape=shape, spacing=(0.8, 0.8, 1.5), seed=700050)
        missing = GAP_PATTERNS["x4"](volume.n_slices, np.random.default_rng(0))
        name = f"reconstruct CT {'x'.join(map(str, shape))}, x4, {samples} sample{'s' * (samples > 1)}"
        opts = ReconstructOptions(samples=samples, device=device)
        out.append((name, lambda v=volume, m=missing, o=opts: reconstruct(v, m, o)))
    for dims, preset, size in ((2, "astronomical", None), (3, "molecular", [16, 32, 32] if quick else None)):
        opts = GenerateOptions(preset=preset, dims=dims, n=1, seed=0, device=device, candidates=1, size=size)
        out.append((f"generate {dims}D {preset}, one sample", lambda o=opts: generate(o)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads")
    rows = []
    for case, fn in cases(args.device, args.quick):
        row = {"case": case, **timed(fn, device, args.repeats)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{name}, torch {torch.__version__}, in-process after one warm-up, {args.repeats} repeats\n")
    print("| case | median s | fastest s | peak GPU GB |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['peak_gpu_gb']:.2f} |")


if __name__ == "__main__":
    main()
