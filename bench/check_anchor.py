"""Which plain interpolation the check picks on spectral cubes, against the one that is truly best.

    python bench/check_anchor.py [--no-write]      # 7 cubes x 6 gap patterns, interpolations only (~1 min)

The check hides every other interior acquired slice, so it ranks the interpolations at twice the real
gaps (``ldm_med/inpainting/blend.py``). Per cell: the interpolation with the lowest RMSE on the truly
missing slices, the check's pick (its anchor) and what that pick loses to the best in dB; and one lever
measured against it: a second, wider hold-out (3 of every 4 interior acquired slices hidden) and a
log-linear extrapolation of each interpolation's error from the two hold-outs back to the real gap
(``rmse_2g ** 2 / rmse_4g``); and each fixed interpolation, and B-spline unless the check puts it
clearly behind. The cubes are the benchmark's (seeds 700000-700002) and the unseen ones
(710000-710003), in normalised units. Writes its own section of docs/benchmarks.md unless ``--no-write``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _sections import write_section  # noqa: E402

from ldm_med.data import astro_field  # noqa: E402
from ldm_med.inpainting.blend import holdout_masks  # noqa: E402
from ldm_med.inpainting.interpolate import METHODS, fill_missing  # noqa: E402
from ldm_med.masks import GAP_PATTERNS  # noqa: E402

CUBES = ((700000, 32), (700001, 48), (700002, 24), (710000, 32), (710001, 40), (710002, 24), (710003, 56))
PATTERNS = ("x2", "x3", "x4", "x6", "drop25", "block3")
MARGINS = (0.02, 0.05, 0.1)  # "B-spline unless the check puts it more than this share above the best"


def rmse(estimate: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return float(np.sqrt(np.mean((estimate[where] - truth[where]) ** 2)))


def wide_holdout(missing: np.ndarray) -> np.ndarray:
    """Hide 3 of every 4 interior acquired slices (the check's gaps doubled once more)."""
    acquired = np.flatnonzero(~missing)
    held = np.zeros_like(missing)
    held[acquired[1:-1]] = True
    held[acquired[::4]] = False
    return held


def holdout_rmse(x: np.ndarray, missing: np.ndarray, masks: list[np.ndarray], method: str) -> float:
    return float(np.sqrt(np.mean([rmse(fill_missing(x, missing | h, 0, method), x, h) ** 2 for h in masks])))


def cell(x: np.ndarray, pattern: str) -> dict:
    missing = GAP_PATTERNS[pattern](x.shape[0], np.random.default_rng(0))
    true = {m: rmse(fill_missing(x, missing, 0, m), x, missing) for m in METHODS}
    check = {m: holdout_rmse(x, missing, holdout_masks(missing), m) for m in METHODS}
    wide = wide_holdout(missing)
    wider = {m: holdout_rmse(x, missing, [wide], m) for m in METHODS} if wide.any() else check
    extrapolated = {m: check[m] ** 2 / max(wider[m], 1e-12) for m in METHODS}
    best = min(true, key=true.get)
    picks = {"check": min(check, key=check.get), "extrapolated": min(extrapolated, key=extrapolated.get),
             **{m: m for m in METHODS},
             **{f"bspline_{d:g}": "bspline" if check["bspline"] <= (1 + d) * min(check.values())
                else min(check, key=check.get) for d in MARGINS}}
    loss = {k: 20 * np.log10(true[p] / true[best]) for k, p in picks.items()}
    return {"pattern": pattern, "best": best, **{f"{k}_pick": p for k, p in picks.items()},
            **{f"{k}_loss": v for k, v in loss.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lines = ["## The check's anchor on spectral cubes (`python bench/check_anchor.py`)", "",
             "Plain interpolations only, normalised cubes; loss = dB the pick's PSNR on the truly missing "
             "slices is below the best interpolation's.", "",
             "| cube | pattern | best | check picks | loss dB | extrapolated picks | loss dB |",
             "|---|---|---|---|---|---|---|"]
    rows = []
    for seed, depth in CUBES:
        vol = astro_field((96, 96, depth), seed=seed)
        x = np.moveaxis(vol.data, vol.slice_axis, 0).astype(np.float64)
        x = (x - x.mean()) / x.std()
        for pattern in PATTERNS:
            r = cell(x, pattern)
            rows.append(r)
            lines.append(f"| astro_{seed}_{depth}ch | {pattern} | {r['best']} | {r['check_pick']} | "
                         f"{r['check_loss']:.2f} | {r['extrapolated_pick']} | {r['extrapolated_loss']:.2f} |")
            print(lines[-1], flush=True)
    choices = ("check", "extrapolated", *METHODS, *(f"bspline_{d:g}" for d in MARGINS))
    lines += ["", "Loss per pattern over the 7 cubes, mean / worst dB, of the check's pick, the extrapolated "
              "pick, each interpolation always, and B-spline unless the check's RMSE for it is more than "
              "2%, 5% or 10% above the best interpolation's (then the check's pick):", "",
              "| pattern | " + " | ".join(choices) + " |", "|---|" + "---|" * len(choices)]
    for pattern in PATTERNS:
        rs = [r for r in rows if r["pattern"] == pattern]
        cells = [f"{np.mean([r[c + '_loss'] for r in rs]):.2f} / {max(r[c + '_loss'] for r in rs):.2f}"
                 for c in choices]
        lines.append(f"| {pattern} | " + " | ".join(cells) + " |")
    print("\n".join(lines[-len(PATTERNS) - 2:]))
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "\n".join(lines), "bench/check_anchor.py")


if __name__ == "__main__":
    main()
