"""What each block of fine-tuning steps buys, seen by the check and by the truth: the data behind the
early stop of the per-scan fine-tuning (``ldm_med.inpainting.adapt``).

    python bench/adapt_trajectory.py [--steps 300] [--every 25] [--quick] > docs/adapt_trajectory.txt

For every benchmark kind (CT and MR phantoms, molecular density maps, astronomical cubes, the real
evaluation volumes) and two gap patterns (three missing slices; x4), the fine-tuning runs the whole
budget; every ``--every`` steps the check on hidden acquired slices scores the fine-tuned refiner and
picks the blend, and that blend's PSNR on the truly missing slices is recorded. Prints one JSON line
per (volume, pattern): check RMSE and true PSNR per step count, and PSNR of the best interpolation.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import eval_volumes  # noqa: E402

from ldm_med import metrics  # noqa: E402
from ldm_med.data.intensity import intensity_map_for  # noqa: E402
from ldm_med.inpainting.adapt import PRETRAINED, TUNED, _blend  # noqa: E402
from ldm_med.inpainting.blend import check, holdout_masks  # noqa: E402
from ldm_med.inpainting.interpolate import METHODS, fill_missing  # noqa: E402
from ldm_med.inpainting.models import default_refiner, load_refiner  # noqa: E402
from ldm_med.inpainting.refine import AdaptOptions, fit, inplane_planes, mixed_patterns  # noqa: E402
from ldm_med.masks import GAP_PATTERNS  # noqa: E402
from ldm_med.pipelines.reconstruct import scan_modality  # noqa: E402


def patterns(n: int) -> dict[str, np.ndarray]:
    three = np.zeros(n, bool)
    three[[n // 3, n // 2 + 1, n // 2 + 2]] = True
    return {"three": three, "x4": GAP_PATTERNS["x4"](n, np.random.default_rng(0))}


def trajectory(name, vol, pattern, missing, steps, every, batch, tune_layers=0) -> dict:
    data = vol.slices_first()
    imap = intensity_map_for(vol.with_data(vol.data, acquired=~missing))
    x = imap.forward(fill_missing(data, missing, axis=0, method="linear")).astype(np.float32)
    truth = imap.forward(data).astype(np.float32)
    spacing = vol.spacing_slices_first()
    base = {m: metrics.psnr(truth, fill_missing(truth, missing, 0, m), missing, axis=0) for m in METHODS}
    net = load_refiner(default_refiner(scan_modality(vol, imap)))
    pretrained = copy.deepcopy(net)
    opts = AdaptOptions(steps=steps, batch_size=batch, tune_layers=tune_layers)
    rows = []

    def record(done: int) -> bool:
        nets = {PRETRAINED: pretrained, TUNED: net} if done else {PRETRAINED: pretrained}
        c = check(x, missing, nets, opts.check_stride)
        est = _blend(c.weights, nets, x, missing, opts, "cpu")
        rows.append({"steps": done, "check_tuned": c.rmse.get(TUNED), "check_blend": c.rmse["blend"],
                     "psnr": metrics.psnr(truth, est, missing, axis=0), "weights": c.weights,
                     "time": time.perf_counter() - t0})
        return False

    t0 = time.perf_counter()
    record(0)
    held = holdout_masks(missing)
    fit(net, inplane_planes(x, ~missing, spacing), mixed_patterns([missing, *held]), opts, stop=record,
        every=every)
    net.eval()
    record(steps)
    return {"volume": name, "pattern": pattern, "best_baseline": max(base.values()), "baselines": base,
            "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--quick", action="store_true", help="one volume per kind")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tune-layers", type=int, default=0, help="fine-tune only the last N convolutions")
    ap.add_argument("--batch", type=int, default=AdaptOptions.batch_size, help="fine-tuning batch size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, vol in eval_volumes(args.quick):
        for pattern, missing in patterns(vol.n_slices).items():
            print(json.dumps(trajectory(name, vol, pattern, missing, args.steps, args.every,
                                        args.batch, args.tune_layers)), flush=True)


if __name__ == "__main__":
    main()
