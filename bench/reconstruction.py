"""Reconstruction benchmark: ldm-med against linear and cubic interpolation, plus speed and memory.

    python bench/reconstruction.py [--quick] [--samples N] [--steps N] [--no-large]

Writes docs/benchmarks.md (tables and the command that made them) and docs/benchmarks.csv.

* Quality: PSNR / SSIM / MAE on the removed slices only, for gap patterns x2, x4, drop25 and block3, on
  CT and MR phantoms from seeds never used in training (700000+) and on the real volumes of the
  evaluation split (``ldm_med.data.real``), which were never trained on.
* Ceiling: the autoencoder's own reconstruction PSNR on the missing slices, and the best the residual
  formulation could reach with perfect latents, ``x_c + D(E(x)) - D(E(x_c))``, next to the baselines.
* Speed and peak memory: 256x256x128 and 512x512x256 CT phantoms with x4 gaps, each in a fresh process.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ldm_med import ReconstructOptions, metrics
from ldm_med.options import MIN_ADAPT_STEPS, VOXELS_PER_STEP
from ldm_med.pipelines.evaluate import evaluate_volume, per_volume_table, summary_table, write_csv

EVAL_SEED = 700000


KINDS = {"ct_phantom": "CT phantoms (unseen seeds)", "mr_phantom": "MR phantoms (unseen seeds)",
         "molecule": "molecular density maps (unseen seeds)",
         "astro": "astronomical cubes (unseen seeds)", "": "real volumes (evaluation split)"}


def eval_volumes(quick: bool):
    """Every kind the tool claims, from generator seeds never trained on, at several scales and
    smoothness levels (molecular resolution, astronomical cube depth), and the real evaluation split."""
    from ldm_med.data import astro_field, molecular_density
    from ldm_med.data.phantoms import ct_body, mr_head
    from ldm_med.data.real import real_volumes

    n = 1 if quick else 3
    seeds = [EVAL_SEED + i for i in range(n)]
    vols = [(f"ct_phantom_{s}", ct_body(shape=(128, 128, 48), seed=s)) for s in seeds]
    vols += [(f"mr_phantom_{s}", mr_head(shape=(128, 128, 48), seed=s)) for s in seeds]
    for s, res in zip(seeds, (2.5, 4.0, 6.0)):  # sharp to smooth density maps (resolution in angstrom)
        vols.append((f"molecule_{s}_{res}A", molecular_density((64, 64, 64), seed=s, resolution=res)))
    for s, depth in zip(seeds, (32, 48, 24)):
        vols.append((f"astro_{s}_{depth}ch", astro_field((96, 96, depth), seed=s)))
    vols += [(rv.name, rv.loader()) for rv in real_volumes("eval")]
    return vols


def kind_of(volume_name: str) -> str:
    return next(title for prefix, title in KINDS.items() if volume_name.startswith(prefix))


@torch.inference_mode()
def ceiling_rows(name, volume, pattern="x4", seed=0):
    """PSNR on missing slices of: linear, cubic, the AE's own reconstruction, the oracle residual."""
    from ldm_med.data.intensity import intensity_map_for
    from ldm_med.inpainting.interpolate import fill_missing
    from ldm_med.inpainting.latent import ANCHOR
    from ldm_med.inpainting.models import load_inpainting_model
    from ldm_med.inpainting.sampling import _pad_hw
    from ldm_med.masks import GAP_PATTERNS

    model = load_inpainting_model()
    missing = GAP_PATTERNS[pattern](volume.n_slices, np.random.default_rng(seed))
    imap = intensity_map_for(volume)
    x = volume.slices_first()
    x_c = fill_missing(x, missing, axis=0, method=ANCHOR)

    def ae_round_trip(arr):
        t, (h, w) = _pad_hw(torch.from_numpy(imap.forward(arr[missing]).astype(np.float32))[:, None],
                            model.ae.downsample)
        return imap.inverse(model.ae.decode(model.ae.encode(t)[0])[:, 0, :h, :w].numpy())

    ae_x = x.copy()
    ae_x[missing] = ae_round_trip(x)
    oracle = x_c.copy()
    oracle[missing] = x_c[missing] + ae_x[missing] - ae_round_trip(x_c)
    row = {"volume": name, "pattern": pattern}
    for label, est in [("linear", fill_missing(x, missing, 0, "linear")),
                       ("cubic", fill_missing(x, missing, 0, "cubic")),
                       ("autoencoder D(E(x))", ae_x), ("oracle x_c + D(E(x)) - D(E(x_c))", oracle)]:
        row[label] = metrics.psnr(x, est, missing, axis=0)
    return row


def timed_run(shape, args) -> dict:
    """Reconstruct a CT phantom of ``shape`` with x4 gaps in a fresh process; time and peak RSS."""
    code = f"""
import json, resource, time, numpy as np
from ldm_med.data.phantoms import ct_body
from ldm_med.masks import GAP_PATTERNS
from ldm_med import ReconstructOptions, reconstruct
vol = ct_body(shape={tuple(shape)}, spacing=(0.8, 0.8, 1.5), seed={EVAL_SEED + 50})
missing = GAP_PATTERNS['x4'](vol.n_slices, np.random.default_rng(0))
t = time.perf_counter()
res = reconstruct(vol, missing, ReconstructOptions(steps={args.steps}, samples=1, device='cpu'))
print(json.dumps({{'seconds': time.perf_counter() - t, 'reported_seconds': res.seconds,
                  'peak_rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return {"shape": "x".join(map(str, shape)), "error": out.stderr.strip().splitlines()[-1]}
    return {"shape": "x".join(map(str, shape)), **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one phantom of each kind")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--steps", type=int, default=ReconstructOptions().steps)
    parser.add_argument("--patterns", default="x2,x3,x4,x6,drop25,block3")
    parser.add_argument("--methods", default="linear,cubic,bspline,lanczos,ldm,ldm:pretrained,ldm:off",
                        help="ldm:pretrained / ldm:off are ablations: refiner not fine-tuned / "
                             "diffusion alone")
    parser.add_argument("--kinds", default=None,
                        help="only these kinds, comma-separated name prefixes (ct_phantom, mr_phantom, "
                             "molecule, astro, nibabel)")
    parser.add_argument("--no-large", action="store_true", help="skip the 512x512x256 memory run")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    options = ReconstructOptions(steps=args.steps, samples=args.samples, device="cpu")
    patterns = args.patterns.split(",")

    rows, ceilings = [], []
    kinds = tuple(args.kinds.split(",")) if args.kinds else ("",)
    for name, vol in eval_volumes(args.quick):
        if not name.startswith(kinds):
            continue
        print(f"{name}: {vol.shape}", flush=True)
        rows += evaluate_volume(name, vol, patterns, args.methods.split(","), options,
                                on_row=lambda r: print(f"  {r.pattern:>7} {r.method:>14} PSNR {r.psnr:6.2f} "
                                                       f"SSIM {r.ssim:.4f} {r.seconds:5.1f} s", flush=True))
        ceilings.append(ceiling_rows(name, vol))
    write_report(Path(args.out), rows, ceilings, [], args)  # quality first: speed runs take minutes
    speed = []
    shapes = [] if args.quick else [(256, 256, 128)] + ([] if args.no_large else [(512, 512, 256)])
    for shape in shapes:
        speed.append(timed_run(shape, args))
        write_report(Path(args.out), rows, ceilings, speed, args)


BEGIN, END = "<!-- bench/reconstruction.py: begin -->", "<!-- bench/reconstruction.py: end -->"


def write_section(path: Path, text: str) -> None:
    """Replace this script's section of ``path`` (between its markers), keeping the others."""
    doc = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = block + "\n\n" + doc
    path.write_text(doc)


def write_report(out: Path, rows, ceilings, speed, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "benchmarks.csv")
    groups = {title: [r for r in rows if kind_of(r.volume) == title] for title in KINDS.values()}
    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    lines = ["# Reconstruction benchmark", "",
             f"Command: `python bench/reconstruction.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {datetime.date.today()}; CPU: {cpu}, {torch.get_num_threads()} threads; torch "
             f"{torch.__version__}; Python {platform.python_version()}.  ",
             "Models: the shipped defaults (`ldm_med/models/`). `ldm` is the default pipeline: the shipped "
             "refiner for the volume (the CT one for the CT phantoms, the science one for density maps "
             f"and cubes, the general one for MR) fine-tuned on each scan (one step per {VOXELS_PER_STEP} "
             f"missing voxels, {MIN_ADAPT_STEPS} to {ReconstructOptions().adapt_steps}, stopped early when "
             "the check stops gaining; not on CT where the shipped refiner already beats every "
             "interpolation on the check) and blended with the pretrained one and the best plain "
             "interpolation by the check on hidden acquired slices (cubes: and its second view at the "
             "real gaps; docs/method.md); `ldm:pretrained` skips the fine-tuning; `ldm:off` is the latent "
             f"diffusion model alone (sampler {ReconstructOptions().sampler}, {args.steps} steps, "
             f"{args.samples} sample(s)). Metrics on the removed slices only; dPSNR is the method's PSNR "
             "minus the best of the plain interpolations (linear, cubic, bspline, lanczos) on that volume: "
             "the mean over volumes, and the worst volume.", ""]
    for title, rs in groups.items():
        if rs:
            lines += [f"## {title}", "", summary_table(rs), ""]
    lines += ["## Ceiling: what the autoencoder allows (x4 gaps, PSNR dB on missing slices)", "",
              "| volume | linear | cubic | autoencoder D(E(x)) | oracle x_c + D(E(x)) - D(E(x_c)) |",
              "|---|---|---|---|---|"]
    lines += [f"| {c['volume']} | {c['linear']:.2f} | {c['cubic']:.2f} | {c['autoencoder D(E(x))']:.2f} | "
              f"{c['oracle x_c + D(E(x)) - D(E(x_c))']:.2f} |" for c in ceilings]
    if speed:
        lines += ["", "## Speed and peak memory (CPU, x4 gaps, one sample, fresh process each)", "",
                  "| volume | seconds | peak RSS GB |", "|---|---|---|"]
        lines += [f"| {s['shape']} | {s['seconds']:.1f} | {s['peak_rss_gb']:.2f} |" if "error" not in s
                  else f"| {s['shape']} | failed: {s['error']} | |" for s in speed]
    lines += ["", "## Per volume", "", per_volume_table(rows), ""]
    write_section(out / "benchmarks.md", "\n".join(lines))
    print("\n".join(lines[:40]))


if __name__ == "__main__":
    main()
