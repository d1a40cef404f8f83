"""What the check's second view buys: the blend chosen on hidden acquired slices alone against the blend
chosen on those and on in-plane rows at the real gap geometry (``ldm_med/inpainting/matched.py``).

    python bench/check_views.py --kinds astro                      # the benchmark's cubes (~25 min)
    python bench/check_views.py --kinds astro --seeds 710000-710003    # unseen cubes (~25 min)
    python bench/check_views.py --kinds molecule,ct_phantom,mr_phantom,nibabel --patterns x2,x4

Each cell runs the default fine-tuning once (its early stop uses the hidden slices, as in the pipeline),
then scores the same candidates both ways and reports the PSNR margin of each blend over the best plain
interpolation on the truly missing slices (dB), with the through-plane / in-plane structure ratio that
``matched.py`` corrects for. The default pipeline uses the second view for spectral cubes only
(``SECOND_VIEW_MODALITIES``). Writes its own section of docs/benchmarks.md unless ``--no-write``.
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

from ldm_med import ReconstructOptions  # noqa: E402
from ldm_med.data import astro_field  # noqa: E402
from ldm_med.data.intensity import intensity_map_for  # noqa: E402
from ldm_med.inpainting import matched  # noqa: E402
from ldm_med.inpainting.adapt import adapt_and_refine  # noqa: E402
from ldm_med.inpainting.blend import HiddenSliceCheck  # noqa: E402
from ldm_med.inpainting.interpolate import METHODS, fill_missing  # noqa: E402
from ldm_med.inpainting.models import default_refiner, load_refiner  # noqa: E402
from ldm_med.inpainting.refine import AdaptOptions, refine  # noqa: E402
from ldm_med.masks import GAP_PATTERNS  # noqa: E402
from ldm_med.pipelines.reconstruct import scan_modality  # noqa: E402

PATTERNS = ("x2", "x3", "x4", "x6", "drop25", "block3")
DEPTHS = (32, 40, 24, 56)  # channels of the unseen cubes, in turn


def volumes(kinds: list[str], seeds: str | None):
    if seeds:  # unseen astronomical cubes
        lo, _, hi = seeds.partition("-")
        for i, s in enumerate(range(int(lo), int(hi or lo) + 1)):
            depth = DEPTHS[i % len(DEPTHS)]
            yield f"astro_{s}_{depth}ch", astro_field((96, 96, depth), seed=s)
        return
    for name, vol in eval_volumes(quick=False):
        if name.startswith(tuple(kinds)):
            yield name, vol


def cell(vol, pattern: str) -> dict:
    missing = GAP_PATTERNS[pattern](vol.n_slices, np.random.default_rng(0))
    imap = intensity_map_for(vol.with_data(vol.data, acquired=~missing))
    truth = imap.forward(vol.slices_first().astype(np.float32)).astype(np.float32)
    x_c = fill_missing(truth, missing, 0, "linear")
    modality = scan_modality(vol, imap)
    steps = ReconstructOptions().adapt_budget(int(missing.sum()) * x_c.shape[1] * x_c.shape[2])
    out = adapt_and_refine(load_refiner(default_refiner(modality)), x_c, missing, vol.spacing_slices_first(),
                           AdaptOptions(steps=steps))
    nets = out.fill.args[1]  # the candidates the blend was chosen among

    def err(estimate: np.ndarray) -> float:
        return float(np.sqrt(np.square(estimate[missing] - truth[missing]).mean()))

    parts = {m: fill_missing(truth, missing, 0, m) for m in METHODS}
    parts.update({name: refine(net, x_c, missing) for name, net in nets.items()})
    best = min(err(parts[m]) for m in METHODS)
    both = HiddenSliceCheck(x_c, missing).score(nets, inplane=True)
    lag, through = matched.through_structure(truth, missing)
    acquired = truth[~missing]
    ratio = max(through / matched.structure(rows, lag) for rows in (acquired.transpose(0, 2, 1), acquired))
    gain = {label: 20 * np.log10(best / err(sum(w * parts[n] for n, w in check.weights.items())))
            for label, check in (("hidden", out.check), ("both", both))}
    return {"pattern": pattern, "ratio": ratio, **gain}


def report(rows: list[dict]) -> str:
    lines = ["| volume | pattern | structure ratio | hidden slices only | both views |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['volume']} | {r['pattern']} | {r['ratio']:.2f} | {r['hidden']:+.2f} | "
              f"{r['both']:+.2f} |" for r in rows]
    kinds = sorted({r["volume"].split("_")[0] for r in rows})
    groups = {kind: [r for r in rows if r["volume"].split("_")[0] == kind] for kind in kinds}
    lines += ["", *kind_summary(groups, {"hidden": "hidden slices only", "both": "both views"})]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="astro",
                    help="benchmark kinds, comma-separated: ct_phantom, mr_phantom, molecule, astro, nibabel")
    ap.add_argument("--seeds", help="unseen astronomical cubes instead, e.g. 710000-710003")
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, vol in volumes(args.kinds.split(","), args.seeds):
        for pattern in args.patterns.split(","):
            rows.append({"volume": name, **cell(vol, pattern)})
            print(rows[-1], flush=True)
    command = " ".join(["python bench/check_views.py", *sys.argv[1:]])
    text = (f"## The check's second view (`{command}`)\n\nPSNR margin (dB) over the best plain interpolation "
            "on the missing slices of the blend chosen on hidden acquired slices alone, and on those and "
            "in-plane rows at the real gap geometry; structure ratio: through-plane over in-plane structure "
            f"function at the acquired spacing. CPU, {args.threads} threads.\n\n" + report(rows) + "\n")
    print(text)
    if not args.no_write:
        marker = f"bench/check_views.py {args.seeds or args.kinds}"
        write_section(ROOT / "docs" / "benchmarks.md", text, marker)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
