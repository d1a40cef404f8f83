"""Which pretrained refiner density maps and astronomical cubes should get: the general one (CT and MR
phantoms, real MR) or the scientific one (``configs/science_refiner.yaml``: the project's molecular and
astronomical generators).

Both run the default pipeline (fine-tuning, check, blend) on the reconstruction benchmark's molecular
and astronomical volumes (unseen seeds 700000-700002, the same sizes and smoothness levels) with every
gap pattern; the table gives each cell's PSNR margin over the best plain interpolation (linear, cubic,
B-spline, Lanczos) on the missing slices, then the mean and the worst per kind.

    python bench/science_refiner.py            # ~20 min on 2 cores; writes its section of docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _sections import write_section  # noqa: E402

from ldm_med import ReconstructOptions, metrics, reconstruct  # noqa: E402
from ldm_med.inpainting.interpolate import METHODS, fill_missing  # noqa: E402
from ldm_med.inpainting.models import DEFAULT_REFINERS  # noqa: E402
from ldm_med.masks import GAP_PATTERNS  # noqa: E402

SEED = 700000
PATTERNS = ("x2", "x3", "x4", "x6", "drop25", "block3")


def volumes():
    from ldm_med.data import astro_field, molecular_density

    out = [(f"molecule_{s}_{r}A", molecular_density((64, 64, 64), seed=s, resolution=r))
           for s, r in zip(range(SEED, SEED + 3), (2.5, 4.0, 6.0))]
    out += [(f"astro_{s}_{d}ch", astro_field((96, 96, d), seed=s))
            for s, d in zip(range(SEED, SEED + 3), (32, 48, 24))]
    return out


def margins(refiners: dict[str, Path]) -> list[dict]:
    rows = []
    for name, vol in volumes():
        for pattern in PATTERNS:
            missing = GAP_PATTERNS[pattern](vol.n_slices, np.random.default_rng(0))
            best = max(metrics.psnr(vol.data, fill_missing(vol.data, missing, 2, m), missing)
                       for m in METHODS)
            row = {"volume": name, "pattern": pattern}
            for label, path in refiners.items():
                out = reconstruct(vol, missing, ReconstructOptions(refiner=str(path), device="cpu")).volume
                row[label] = metrics.psnr(vol.data, out.data, missing) - best
            print(row, flush=True)
            rows.append(row)
    return rows


def report(rows: list[dict], labels: list[str]) -> str:
    head = "| volume | pattern | " + " | ".join(f"{a} refiner" for a in labels) + " |"
    lines = [head, "|---|---|" + "---|" * len(labels)]
    lines += [f"| {r['volume']} | {r['pattern']} | " + " | ".join(f"{r[a]:+.2f}" for a in labels) + " |"
              for r in rows]
    lines += ["", "| kind | " + " | ".join(f"{a}: mean / x4 mean / worst / cells < -0.2 dB" for a in labels)
              + " |", "|---|" + "---|" * len(labels)]
    for kind in ("molecule", "astro"):
        sel = [r for r in rows if r["volume"].startswith(kind)]
        cells = []
        for a in labels:
            v = np.array([r[a] for r in sel])
            x4 = np.mean([r[a] for r in sel if r["pattern"] == "x4"])
            cells.append(f"{v.mean():+.2f} / {x4:+.2f} / {v.min():+.2f} / {int((v < -0.2).sum())}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    refiners = {"general": DEFAULT_REFINERS["other"], "science": DEFAULT_REFINERS["science"]}
    rows = margins(refiners)
    text = ("## Refiner for density maps and astronomical cubes (`python bench/science_refiner.py`)\n\n"
            "PSNR margin (dB) of the default pipeline over the best plain interpolation on the missing "
            "slices, with each pretrained refiner; CPU.\n\n" + report(rows, list(refiners)) + "\n")
    print(text)
    write_section(Path(args.out), text, "bench/science_refiner.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
