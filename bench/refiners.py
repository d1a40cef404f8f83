"""Which pretrained refiner a kind of volume should get: the default pipeline (fine-tuning, check, blend)
run with each of two or more refiner files on the reconstruction benchmark's volumes of the chosen kinds
(unseen generator seeds 700000-700002 at several scales and smoothness levels, and the real evaluation
split), every gap pattern. The table gives each cell's PSNR margin over the best plain interpolation
(linear, cubic, B-spline, Lanczos) on the missing slices, then per kind the mean, the x4 mean, the worst
cell and the cells below -0.2 dB.

    # the shipped science refiner against the general one on density maps and cubes (~20 min, 2 cores)
    python bench/refiners.py --kinds molecule,astro --section science \\
        --refiner general=ldm_med/models/refiner.safetensors \\
        --refiner science=ldm_med/models/science_refiner.safetensors
    # a retrained CT refiner against the shipped one on the CT phantoms
    python bench/refiners.py --kinds ct_phantom --section ct \\
        --refiner shipped=ldm_med/models/ct_refiner.safetensors \\
        --refiner annealed=runs/ct_refiner_anneal/model.safetensors

Each run writes its own section of docs/benchmarks.md (``--section``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _margins import kind_summary  # noqa: E402
from _sections import write_section  # noqa: E402
from reconstruction import eval_volumes  # noqa: E402

from ldm_med import ReconstructOptions, metrics, reconstruct  # noqa: E402
from ldm_med.inpainting.interpolate import METHODS, fill_missing  # noqa: E402
from ldm_med.masks import GAP_PATTERNS  # noqa: E402

PATTERNS = ("x2", "x3", "x4", "x6", "drop25", "block3")
KINDS = ("ct_phantom", "mr_phantom", "molecule", "astro", "nibabel")


def margins(kinds: list[str], refiners: dict[str, Path], patterns: list[str]) -> list[dict]:
    rows = []
    for name, vol in eval_volumes(quick=False):
        if not name.startswith(tuple(kinds)):
            continue
        for pattern in patterns:
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


def report(rows: list[dict], labels: list[str], kinds: list[str]) -> str:
    head = "| volume | pattern | " + " | ".join(f"{a} refiner" for a in labels) + " |"
    lines = [head, "|---|---|" + "---|" * len(labels)]
    lines += [f"| {r['volume']} | {r['pattern']} | " + " | ".join(f"{r[a]:+.2f}" for a in labels) + " |"
              for r in rows]
    groups = {kind: [r for r in rows if r["volume"].startswith(kind)] for kind in kinds}
    lines += ["", *kind_summary(groups, {a: a for a in labels})]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="molecule,astro", help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--refiner", action="append", required=True, metavar="LABEL=PATH",
                    help="a refiner file to compare (two or more)")
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--section", required=True, help="the name of this comparison's section in the docs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kinds = args.kinds.split(",")
    if unknown := sorted(set(kinds) - set(KINDS)):
        ap.error(f"unknown kinds {unknown}; valid: {', '.join(KINDS)}")
    refiners = {label: Path(path) for label, _, path in (r.partition("=") for r in args.refiner)}
    rows = margins(kinds, refiners, args.patterns.split(","))
    command = " ".join(["python bench/refiners.py", *(a if " " not in a else f'"{a}"' for a in sys.argv[1:])])
    text = (f"## Refiners compared: {args.section} (`{command}`)\n\n"
            "PSNR margin (dB) of the default pipeline over the best plain interpolation on the missing "
            f"slices, with each pretrained refiner; CPU, {args.threads} threads.\n\n"
            + report(rows, list(refiners), kinds) + "\n")
    print(text)
    write_section(Path(args.out), text, f"bench/refiners.py {args.section}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
