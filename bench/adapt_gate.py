"""Does the check before any fine-tuning say whether fine-tuning will pay? The data behind
``AdaptOptions.skip_margin`` (``ldm_med.inpainting.adapt``).

    python bench/adapt_gate.py [--quick] [--kinds ct_phantom,mr_phantom] > runs/adapt_gate.jsonl
    python bench/adapt_gate.py --report runs/adapt_gate.jsonl

For every benchmark volume and gap pattern, ``reconstruct()`` runs twice through the public API: with the
refiner as shipped (``refine="pretrained"``, its check on hidden acquired slices gives the margin of the
pretrained refiner over the best interpolation, before any fine-tuning) and with the default
fine-tuning (``refine="adapt"``), with the gate turned off (``skip_margin=inf``). One JSON line per
(volume, pattern): the check's margin in dB, PSNR on the missing slices of both runs and of the best
plain interpolation, fine-tuning steps kept, seconds. ``--report`` prints the table sorted by margin:
what fine-tuning bought at each margin, and what a gate at each threshold would have cost and saved.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from reconstruction import eval_volumes  # noqa: E402

from ldm_med import ReconstructOptions, metrics, reconstruct  # noqa: E402
from ldm_med.inpainting.adapt import PRETRAINED  # noqa: E402
from ldm_med.inpainting.blend import Check  # noqa: E402
from ldm_med.inpainting.interpolate import METHODS  # noqa: E402
from ldm_med.masks import GAP_PATTERNS  # noqa: E402


def cell(name, vol, pattern, seed=0) -> dict:
    missing = GAP_PATTERNS[pattern](vol.n_slices, np.random.default_rng(seed))

    def psnr(result) -> float:
        return metrics.psnr(vol.data, result.volume.data, missing, axis=vol.slice_axis)

    base = max(psnr(reconstruct(vol, missing, ReconstructOptions(method=m))) for m in METHODS)
    pre = reconstruct(vol, missing, ReconstructOptions(refine="pretrained", device="cpu"))
    full = reconstruct(vol, missing, replace(ReconstructOptions(device="cpu"), skip_margin=math.inf))
    info_pre = pre.volume.metadata["reconstruction"]
    info = full.volume.metadata["reconstruction"]
    margin = Check(rmse=info_pre["check_rmse"]).margin_db(PRETRAINED)  # before any fine-tuning
    return {"volume": name, "pattern": pattern, "margin_db": margin,
            "best_baseline": base, "pretrained": psnr(pre), "adapt": psnr(full),
            "steps_kept": info["adapt_steps_used"], "budget": info["adapt_budget"],
            "s_pretrained": pre.seconds, "s_adapt": full.seconds}


def report(path: Path) -> None:
    rows = sorted((json.loads(line) for line in path.read_text().splitlines() if line.strip()),
                  key=lambda r: r["margin_db"])
    print("| volume | pattern | check margin dB | pretrained vs best baseline | fine-tuned vs best baseline "
          "| fine-tuning bought | steps kept | s pretrained / s fine-tuned |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = r["best_baseline"]
        print(f"| {r['volume']} | {r['pattern']} | {r['margin_db']:+.2f} | {r['pretrained'] - base:+.2f} "
              f"| {r['adapt'] - base:+.2f} | {r['adapt'] - r['pretrained']:+.2f} "
              f"| {r['steps_kept']} of {r['budget']} | {r['s_pretrained']:.1f} / {r['s_adapt']:.1f} |")
    print("\n| skip fine-tuning when the margin is above | cells skipped | dB lost, sum | worst cell | "
          "seconds saved |")
    print("|---|---|---|---|---|")
    for t in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0):
        skipped = [r for r in rows if r["margin_db"] > t]
        lost = [r["adapt"] - r["pretrained"] for r in skipped]
        saved = sum(r["s_adapt"] - r["s_pretrained"] for r in skipped)
        worst = max(lost, default=0.0)
        print(f"| {t:.1f} dB | {len(skipped)} of {len(rows)} | {sum(lost):+.2f} | {worst:+.2f} "
              f"| {saved:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one volume per kind")
    ap.add_argument("--kinds", default="", help="volume name prefixes, comma-separated")
    ap.add_argument("--patterns", default="x2,x3,x4,x6,drop25,block3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", type=Path, help="print the tables of a finished run")
    args = ap.parse_args()
    if args.report:
        return report(args.report)
    torch.set_num_threads(args.threads)
    kinds = tuple(args.kinds.split(",")) if args.kinds else ("",)
    for name, vol in eval_volumes(args.quick):
        if name.startswith(kinds):
            for pattern in args.patterns.split(","):
                print(json.dumps(cell(name, vol, pattern)), flush=True)


if __name__ == "__main__":
    main()
