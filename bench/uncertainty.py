"""Does the uncertainty map earn its place? Per volume kind, at x4 gaps, with ``--samples N``:

* Spearman correlation, on the missing slices, between |error| and: the calibrated map (the samples'
  spread and the two cues below, weighted by a fit on hidden acquired slices), the ablation "samples
  only" (the same pipeline with the map fixed to the samples' spread), and the two maps anyone can
  compute without a model: ``|result - linear|`` and the in-plane gradient magnitude of the linear
  estimate;
* coverage of ``result +- 1.645 std`` (a central 90% interval) and its mean width;
* PSNR of the result against the best plain interpolation (never worse is the contract).

    python bench/uncertainty.py [--samples 8] [--quick] [--fast-uncertainty] [--no-write]
    python bench/uncertainty.py --sweep [--seed 920000] [--count 5] [--patterns x2,x4,x6]

Volumes: CT and MR phantoms, molecular density maps and astronomical cubes from unseen generator seeds,
and the real evaluation split. Writes its section of ``docs/uncertainty.md`` (with this command) and
prints the table.

``--sweep`` measures the calibration alone, wider: the coverage of the default ``--samples 8`` run on
``--count`` volumes of each generated kind from seeds the benchmark does not use, and on both real
splits, at several gap patterns (the table above is x4 only). Its own section of the same file.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _sections import write_section  # noqa: E402

import ldm_med
from ldm_med import metrics
from ldm_med.data import astro_field, ct_body, molecular_density, mr_head
from ldm_med.data.real import real_volumes
from ldm_med.masks import GAP_PATTERNS
from ldm_med.options import INTERPOLATIONS

SEED = 910000  # generator seeds never used for training or the bundled samples
SWEEP_SEED = 920000  # the sweep's: unused elsewhere too
DOC = ROOT / "docs" / "uncertainty.md"


def generated(seed: int) -> list[tuple[str, str, ldm_med.Volume]]:
    return [("CT phantom", f"ct_{seed}", ct_body((128, 128, 48), (1.0, 1.0, 2.5), seed=seed)),
            ("MR phantom", f"mr_{seed}", mr_head((128, 128, 48), (1.0, 1.0, 2.0), seed=seed)),
            ("molecular", f"molecule_{seed}", molecular_density((64, 64, 64), seed=seed)),
            ("astronomical", f"astro_{seed}", astro_field((96, 96, 32), seed=seed))]


def volumes(quick: bool) -> list[tuple[str, str, ldm_med.Volume]]:
    n = 1 if quick else 2
    out = [v for i in range(n) for v in generated(SEED + i)]
    out += [("real MR (eval split)", rv.name, rv.loader()) for rv in real_volumes("eval")[:n]]
    return out


def spearman(a: np.ndarray, b: np.ndarray, n: int = 200_000) -> float:
    idx = np.random.default_rng(0).permutation(a.size)[:n]
    return float(stats.spearmanr(a.ravel()[idx], b.ravel()[idx])[0])


def samples_only(vol, missing, samples: int, fast: bool = False) -> np.ndarray:
    """The ablation: the map with its weights fixed to the samples' spread alone (still calibrated)."""
    from ldm_med.inpainting import calibrate

    fit = calibrate.fit_map_weights
    calibrate.fit_map_weights = lambda errors, features: np.array([1.0, 0.0, 0.0])
    try:
        result = ldm_med.reconstruct(vol, missing, ldm_med.ReconstructOptions(samples=samples, device="cpu",
                                                                              spread_decoder=fast))
    finally:
        calibrate.fit_map_weights = fit
    return np.moveaxis(result.uncertainty, vol.slice_axis, 0)


def row(kind: str, name: str, vol: ldm_med.Volume, samples: int, fast: bool = False) -> dict:
    missing = GAP_PATTERNS["x4"](vol.n_slices, np.random.default_rng(0))
    truth = np.moveaxis(vol.data, vol.slice_axis, 0)
    start = time.perf_counter()
    result = ldm_med.reconstruct(vol, missing, ldm_med.ReconstructOptions(samples=samples, device="cpu",
                                                                          spread_decoder=fast))
    seconds = time.perf_counter() - start
    std_only = samples_only(vol, missing, samples, fast)
    est = np.moveaxis(result.volume.data, vol.slice_axis, 0)
    std = np.moveaxis(result.uncertainty, vol.slice_axis, 0)
    base = {m: ldm_med.reconstruct(vol, missing, ldm_med.ReconstructOptions(method=m)).volume.data
            for m in INTERPOLATIONS}
    linear = np.moveaxis(base["linear"], vol.slice_axis, 0)
    grad = np.hypot(*np.gradient(linear, axis=(1, 2)))
    err = np.abs(est - truth)[missing]
    best = max(metrics.psnr(vol.data, b, missing, axis=vol.slice_axis) for b in base.values())
    calib = result.volume.metadata["reconstruction"]["uncertainty"]
    return {"kind": kind, "volume": name, "psnr": metrics.psnr(vol.data, result.volume.data, missing,
                                                                 axis=vol.slice_axis),
            "best_baseline": best, "rho_map": spearman(std[missing], err),
            "rho_samples": spearman(std_only[missing], err),
            "weights": "/".join(f"{w:.2g}" for w in calib.get("weights", {}).values()),
            "rho_diff": spearman(np.abs(est - linear)[missing], err),
            "rho_grad": spearman(grad[missing], err),
            "coverage": float(np.mean(err <= 1.645 * std[missing])),
            "width": float(2 * 1.645 * std[missing].mean()),
            "mae": float(err.mean()), "scale": calib.get("scale", float("nan")), "seconds": seconds}


def coverage_row(kind: str, name: str, vol: ldm_med.Volume, pattern: str, samples: int) -> dict:
    """The default run's 90% coverage on the missing slices of one gap pattern (the sweep)."""
    missing = GAP_PATTERNS[pattern](vol.n_slices, np.random.default_rng(0))
    result = ldm_med.reconstruct(vol, missing, ldm_med.ReconstructOptions(samples=samples, device="cpu"))
    truth, est, std = (np.moveaxis(a, vol.slice_axis, 0)[missing]
                       for a in (vol.data, result.volume.data, result.uncertainty))
    err = np.abs(est - truth)
    return {"kind": kind, "volume": name, "pattern": pattern, "coverage": float(np.mean(err <= 1.645 * std)),
            "width": float(2 * 1.645 * std.mean()) / max(float(err.mean()), 1e-12)}


def sweep_table(rows: list[dict]) -> str:
    lines = ["| kind | pattern | volumes | mean coverage | lowest | highest | outside 0.85-0.95 | "
             "width / MAE |", "|---|---|---|---|---|---|---|---|"]
    for kind in dict.fromkeys(r["kind"] for r in rows):
        for pattern in dict.fromkeys(r["pattern"] for r in rows):
            rs = [r for r in rows if r["kind"] == kind and r["pattern"] == pattern]
            c = np.array([r["coverage"] for r in rs])
            worst = max(rs, key=lambda r: abs(r["coverage"] - 0.9))
            lines.append(f"| {kind} | {pattern} | {len(rs)} | {c.mean():.3f} | {c.min():.3f} | "
                         f"{c.max():.3f} | {int(((c < 0.85) | (c > 0.95)).sum())} "
                         f"(furthest: {worst['volume']} {worst['coverage']:.3f}) | "
                         f"{np.mean([r['width'] for r in rs]):.2f} |")
    c = np.array([r["coverage"] for r in rows])
    lines.append(f"| all | | {len(rows)} | {c.mean():.3f} | {c.min():.3f} | {c.max():.3f} | "
                 f"{int(((c < 0.85) | (c > 0.95)).sum())} | |")
    return "\n".join(lines)


def sweep(args) -> None:
    vols = [v for i in range(args.count) for v in generated(args.seed + i)]
    vols += [(f"real MR ({split} split)", rv.name, rv.loader()) for split in ("train", "eval")
             for rv in real_volumes(split)]
    rows = []
    for kind, name, vol in vols:
        for pattern in args.patterns.split(","):
            rows.append(coverage_row(kind, name, vol, pattern, args.samples))
            print(rows[-1], flush=True)
    text = sweep_table(rows)
    print(text)
    if not args.no_write:
        cmd = " ".join(["python bench/uncertainty.py", *sys.argv[1:]])
        seeds = f"{args.seed}-{args.seed + args.count - 1}"
        write_section(DOC, f"## Coverage across gap patterns\n\nCommand: `{cmd}` ({datetime.date.today()}, "
                      f"CPU, {os.cpu_count()} cores). The default `--samples {args.samples}` run; coverage "
                      "of result +- 1.645 std on the missing slices (nominal 90%) per volume kind and gap "
                      f"pattern; {args.count} generated volumes per kind (seeds {seeds}), and the real "
                      "volumes of both splits.\n\n" + text, "bench/uncertainty.py --sweep")


def table(rows: list[dict]) -> str:
    head = ("| kind | volume | PSNR | best baseline | Spearman map | samples only | \\|result-linear\\| | "
            "gradient | weights std/diff/grad | 90% coverage | width / MAE | scale | s |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['volume']} | {r['psnr']:.2f} | {r['best_baseline']:.2f} | "
                     f"{r['rho_map']:.3f} | {r['rho_samples']:.3f} | {r['rho_diff']:.3f} | "
                     f"{r['rho_grad']:.3f} | {r['weights']} | {r['coverage']:.3f} | "
                     f"{r['width'] / r['mae']:.2f} | {r['scale']:.3g} | {r['seconds']:.0f} |")
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    lines += ["", "| kind | mean Spearman map | samples only | better trivial map | worst coverage | "
              "mean dPSNR vs best baseline | worst dPSNR |", "|---|---|---|---|---|---|---|"]
    for k in kinds:
        rs = [r for r in rows if r["kind"] == k]
        triv = max(np.mean([r["rho_diff"] for r in rs]), np.mean([r["rho_grad"] for r in rs]))
        d = [r["psnr"] - r["best_baseline"] for r in rs]
        lines.append(f"| {k} | {np.mean([r['rho_map'] for r in rs]):.3f} | "
                     f"{np.mean([r['rho_samples'] for r in rs]):.3f} | {triv:.3f} | "
                     f"{min(r['coverage'] for r in rs):.3f} | {np.mean(d):+.2f} | {min(d):+.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="one volume per kind")
    parser.add_argument("--fast-uncertainty", action="store_true",
                        help="decode the samples with the distilled decoder (printed only)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="coverage only, several patterns and seeds")
    parser.add_argument("--seed", type=int, default=SWEEP_SEED, help="the sweep's first generator seed")
    parser.add_argument("--count", type=int, default=5, help="the sweep's volumes per generated kind")
    parser.add_argument("--patterns", default="x2,x4,x6", help="the sweep's gap patterns")
    args = parser.parse_args()
    if args.sweep:
        return sweep(args)
    rows = []
    for kind, name, vol in volumes(args.quick):
        rows.append(row(kind, name, vol, args.samples, args.fast_uncertainty))
        print(rows[-1], flush=True)
    text = table(rows)
    print(text)
    if not args.no_write and not args.fast_uncertainty:  # the docs table is the default pipeline's
        cmd = " ".join(["python bench/uncertainty.py", *sys.argv[1:]])
        write_section(DOC, "## At x4, with the ablations and the trivial maps\n\n"
            f"Command: `{cmd}` ({datetime.date.today()}, CPU, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f} at the end: the `s` column is only a speed figure when this "
            "benchmark ran alone). x4 gaps, default settings with "
            f"`--samples {args.samples}`. PSNR in dB on the missing slices; Spearman between each map "
            "and |error| there; coverage of result +- 1.645 std (nominal 90%); width = mean interval "
            "width over the mean absolute error.\n\n" + text, "bench/uncertainty.py", first=True)


if __name__ == "__main__":
    main()
