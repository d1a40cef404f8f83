"""Generation benchmark: distances to held-out generator samples, attribute control, memorisation, time.

    python bench/generation.py                      # shipped 2D and 3D models -> docs/benchmarks.md
    python bench/generation.py --dims 2 --compare runs/generate_2d_dit/model.safetensors

Per preset, against held-out generator samples (seeds 800000+, never trained on):

* three set distances (``ldm_med.generation.quality``: energy distances of power spectra, intensity
  histograms (1-Wasserstein) and autoencoder features) for the diffusion model, for random latents decoded
  without diffusion, and for noise shaped to the data's mean power spectrum and pooled histogram;
* attribute control: Spearman correlation between requested and measured attribute over a sweep of the
  part of the declared range the training samples cover (the class's trained range, which ``generate``
  clamps to), or (``--sweep-range declared``) of the declared range;
* memorisation: median distance from each sample to its nearest training sample, next to the same for
  held-out generator samples (a ratio below 1 would mean samples sit closer to the training set);
* seconds per sample (sampling and decoding; model loading excluded), default sampler and steps, for
  the distance samples and for the sweep's requested ones (candidates and steering included).

Writes its section of ``docs/benchmarks.md`` (between its markers; other sections are kept).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ldm_med  # noqa: E402
from ldm_med.data.presets import PRESETS  # noqa: E402
from ldm_med.generation import quality as q  # noqa: E402
from ldm_med.generation.model import load_generation_model  # noqa: E402

HELD_OUT_SEED, TRAIN_SEED = 800000, 1000


def model_range(preset, volume) -> np.ndarray:
    """A generated/reference sample in the model's range, ``(H, W)`` or ``(D, H, W)``."""
    data = volume.data[:, :, 0] if volume.data.shape[2] == 1 else np.moveaxis(volume.data, 2, 0)
    return preset.stretch.forward(data)


def reference(preset, dims: int, seeds) -> list[np.ndarray]:
    return [model_range(preset, preset.sample(s, dims)) for s in seeds]


def trained_range(model, name: str, n: int) -> tuple[float, float]:
    """Class ``name``'s trained attribute range as the model records it (what ``generate`` clamps to),
    else measured the same way on its first ``n`` training samples."""
    from ldm_med.config import Source
    from ldm_med.pipelines.generate import attribute_range
    from ldm_med.train.gendata import preset_ranges

    attr = PRESETS[name].attribute.name
    if attr not in model.classes[name].get("attribute_ranges", {}):
        measured = preset_ranges([Source(preset=name, count=n, seed=TRAIN_SEED)], model.size, n)
        return tuple(measured[name][attr])
    return attribute_range(model, name, attr)


def decoded_random_latents(model, n: int, seed: int = 0) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    f = model.ae.downsample
    size = model.size
    lat = (*size[:-2], size[-2] // f, size[-1] // f)
    out = []
    with torch.no_grad():
        for _ in range(n):
            z = torch.randn((1, model.latent_channels, *lat), generator=g) / model.latent_scale
            x = model.ae.decode(z) if len(size) == 2 else model.ae.decode_volume(z)
            out.append(x.numpy()[0, 0])
    return out


def distances(ae, samples, ref) -> dict[str, float]:
    return {"power": q.energy_distance([q.radial_power(s) for s in samples],
                                       [q.radial_power(r) for r in ref]),
            "histogram": q.energy_distance([q.quantiles(s) for s in samples], [q.quantiles(r) for r in ref],
                                           "wasserstein"),
            "features": q.energy_distance([q.autoencoder_features(ae, s) for s in samples],
                                          [q.autoencoder_features(ae, r) for r in ref])}


DECODER_NOISE = True


ATTR_GUIDANCE = None
DRAW_ATTRIBUTES = None  # the model's setting per class
STEER = None  # the model's setting per class


def generate(preset: str, dims: int, ckpt, n: int, seed: int, attrs=(), steps: int = 20, guidance=None):
    opts = ldm_med.GenerateOptions(preset=preset, dims=dims, n=n, seed=seed, attrs=attrs, steps=steps,
                                   guidance=guidance, attr_guidance=ATTR_GUIDANCE, device="cpu",
                                   checkpoint=ckpt,
                                   decoder_noise=DECODER_NOISE, draw_attributes=DRAW_ATTRIBUTES, steer=STEER)
    return ldm_med.generate(opts)


def bench_preset(name: str, dims: int, ckpt, args) -> dict:
    preset = PRESETS[name]
    model = load_generation_model(ckpt, dims)
    n = args.n or (24 if dims == 2 else 6)
    held = reference(preset, dims, range(HELD_OUT_SEED, HELD_OUT_SEED + n))
    n_train = args.train_n or (120 if dims == 2 else 30)
    train = reference(preset, dims, range(TRAIN_SEED, TRAIN_SEED + n_train))
    t = time.perf_counter()
    gen = generate(name, dims, ckpt, n, seed=args.seed, steps=args.steps, guidance=args.guidance)
    per_sample = (time.perf_counter() - t) / n
    samples = [model_range(preset, v) for v in gen.volumes]
    ae = model.ae
    row = {"preset": name, "dims": dims, "n": n, "seconds_per_sample": per_sample,
           "ldm": distances(ae, samples, held),
           "random_latents": distances(ae, decoded_random_latents(model, n), held),
           "shaped_noise": distances(ae, q.shaped_noise(train, n), held)}
    # attribute control: a sweep over the part of the declared range the training samples cover (as the
    # model records it, else measured here), or over the declared range
    spec = preset.attribute
    low, high = ((spec.low, spec.high) if args.sweep_range == "declared"
                 else trained_range(model, name, args.range_n))
    values = np.linspace(low, high, args.sweep or (6 if dims == 2 else 5))
    reps = args.reps or (3 if dims == 2 else 1)
    requested, measured = [], []
    t = time.perf_counter()
    for i, v in enumerate(values):
        res = generate(name, dims, ckpt, reps, seed=10_000 + 100 * i, attrs=((spec.name, float(v)),),
                       steps=args.steps, guidance=args.guidance)
        for vol in res.volumes:
            requested.append(float(v))
            measured.append(vol.metadata["provenance"]["measured"][spec.name])
    row["seconds_per_request"] = (time.perf_counter() - t) / len(requested)  # candidates, steering included
    row["attribute"] = {"name": spec.name, "unit": spec.unit, "spearman": q.spearman(requested, measured),
                        "range": (float(low), float(high)),
                        "requested": requested, "measured": measured}
    # memorisation
    nn_gen = q.nearest_distance(samples, train)
    nn_held = q.nearest_distance(held, train)
    from scipy.stats import mannwhitneyu

    row["memorisation"] = {"generated": float(np.median(nn_gen)), "held_out": float(np.median(nn_held)),
                           "closest_generated": float(nn_gen.min()), "closest_held_out": float(nn_held.min()),
                           # one-sided Mann-Whitney: are generated samples closer to training than held-out?
                           "p_closer": float(mannwhitneyu(nn_gen, nn_held, alternative="less").pvalue)}
    return row


def table(rows: list[dict], title: str) -> str:
    out = [f"### {title}", "",
           "| preset | dims | distance | ldm | random latents | shaped noise | beats both |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        for k in ("power", "histogram", "features"):
            a, b, c = r["ldm"][k], r["random_latents"][k], r["shaped_noise"][k]
            out.append(f"| {r['preset']} | {r['dims']}D | {k} | {a:.4f} | {b:.4f} | {c:.4f} | "
                       f"{'yes' if a < min(b, c) else '**no**'} |")
    out += ["", "| preset | dims | attribute | swept | Spearman (requested vs measured) | NN distance to "
            "training: generated / held-out, median; closest; p (generated closer) | s per sample | "
            "s per requested sample |",
            "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, m = r["attribute"], r["memorisation"]
        out.append(f"| {r['preset']} | {r['dims']}D | {a['name']} ({a['unit']}) | {a['range'][0]:g}-"
                   f"{a['range'][1]:g} | {a['spearman']:.2f} | {m['generated']:.3f} / {m['held_out']:.3f}; "
                   f"{m['closest_generated']:.3f} / {m['closest_held_out']:.3f}; {m['p_closer']:.2f} | "
                   f"{r['seconds_per_sample']:.2f} | {r['seconds_per_request']:.2f} |")
    return "\n".join(out)


def write_section(path: Path, text: str, name: str = "generation") -> None:
    """Replace this script's section ``name`` of ``path`` (between its markers), keeping the rest."""
    from _sections import write_section as write

    write(path, text, f"bench/generation.py {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--checkpoint-2d"), ap.add_argument("--checkpoint-3d")
    ap.add_argument("--compare", help="a second 2D model (the other denoiser family) to compare")
    ap.add_argument("--n", type=int, help="samples per preset (default 24 in 2D, 6 in 3D)")
    ap.add_argument("--train-n", type=int, help="training samples for the memorisation check")
    ap.add_argument("--sweep", type=int), ap.add_argument("--reps", type=int)
    ap.add_argument("--sweep-range", choices=("declared", "trained"), default="trained",
                    help="sweep the part of the attribute's declared range the training samples cover (the "
                         "model's attribute_ranges, which generate clamps to; else min to max over "
                         "--range-n of them: the 3D astronomical cubes hold 3-26 sources, the declared "
                         "range goes to 60), or the declared range (values beyond the trained one clamped)")
    ap.add_argument("--range-n", type=int, default=100,
                    help="training samples for --sweep-range trained, where the model records no range")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, help="default: the model's setting per class, else 2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-decoder-noise", action="store_true",
                    help="sample the decoder's mean (compares denoisers alone)")
    ap.add_argument("--attr-guidance", type=float,
                    help="guidance of the attribute apart from the class (default: --guidance)")
    drawing = ap.add_mutually_exclusive_group()
    drawing.add_argument("--free-attributes", dest="draw", action="store_const", const=False,
                         help="leave the attribute of the distance samples unconditioned (the sweep "
                              "requests values); default: the model's setting per class, else drawn from "
                              "the class's training distribution")
    drawing.add_argument("--draw-attributes", dest="draw", action="store_const", const=True,
                         help="draw it for every class, whatever the model's setting")
    ap.add_argument("--steer", type=float,
                    help="steering strength toward the class's attribute (default: the model's setting)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--section", default="generation", help="the marker name of the section to write")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global DECODER_NOISE, ATTR_GUIDANCE, DRAW_ATTRIBUTES, STEER
    DECODER_NOISE, ATTR_GUIDANCE, STEER = not args.no_decoder_noise, args.attr_guidance, args.steer
    DRAW_ATTRIBUTES = args.draw
    command = "python bench/generation.py " + " ".join(sys.argv[1:])
    heading = "Generation" if args.section == "generation" else f"Generation: {args.section}"
    attr_guidance = args.attr_guidance
    if attr_guidance is None:  # a recorded setting carries its own; an explicit --guidance does not
        attr_guidance = "as recorded, else as guidance" if args.guidance is None else "as guidance"
    sections = [f"## {heading} (`{command.strip()}`)", "",
                f"CPU, {args.threads} threads, load average at the start {os.getloadavg()[0]:.1f}; "
                f"sampler dpm++2m, {args.steps} steps, guidance "
                f"{'as the model records per class, else 2' if args.guidance is None else args.guidance}, "
                f"attribute guidance {attr_guidance}, steering "
                f"{'as the model records per class, else off' if args.steer is None else args.steer}, "
                "decoder noise "
                f"{'off' if args.no_decoder_noise else 'on'}, attributes of the distance samples "
                + {None: "as the model records per class, else drawn from the training distribution",
                   True: "drawn from the training distribution", False: "unconditioned"}[args.draw] + ". "
                "Distances are energy "
                "distances to held-out generator samples (lower is better; see "
                "`ldm_med/generation/quality.py`).", ""]
    for dims in args.dims:
        ckpt = getattr(args, f"checkpoint_{dims}d")
        rows = [bench_preset(p, dims, ckpt, args) for p in args.presets]
        name = load_generation_model(ckpt, dims).path.name
        sections += [table(rows, f"{dims}D, {name}"), ""]
        for r in rows:
            print(r["preset"], dims, {k: round(v, 4) for k, v in r["ldm"].items()},
                  r["attribute"]["spearman"], r["memorisation"], round(r["seconds_per_sample"], 2),
                  flush=True)
        if dims == 2 and args.compare:
            other = [bench_preset(p, 2, args.compare, args) for p in args.presets]
            sections += [table(other, f"2D, {Path(args.compare).name} (the other denoiser family)"), "",
                         family_summary(rows, other, name, Path(args.compare).name), ""]
    write_section(Path(args.out), "\n".join(sections).rstrip(), args.section)
    return 0


def family_summary(a: list[dict], b: list[dict], name_a: str, name_b: str) -> str:
    def score(rows):  # mean over presets of the three distances, each relative to shaped noise
        return float(np.mean([r["ldm"][k] / max(r["shaped_noise"][k], 1e-12) for r in rows
                              for k in ("power", "histogram", "features")]))

    lines = ["| model | mean distance / shaped-noise distance | s per sample | quality per CPU-second "
             "(1 / (distance ratio x s)) |", "|---|---|---|---|"]
    for name, rows in ((name_a, a), (name_b, b)):
        s, t = score(rows), float(np.mean([r["seconds_per_sample"] for r in rows]))
        lines.append(f"| {name} | {s:.3f} | {t:.2f} | {1.0 / (s * t):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
