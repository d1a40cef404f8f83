"""``ldm-med generate``: synthetic images and volumes from the shipped (or a trained) generation model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ldm_med.options import FORMATS, PRESET_NAMES, SAMPLER_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="generate synthetic medical, molecular or astronomical images and volumes",
        description="Sample a class- and attribute-conditional latent diffusion model. Every file is marked "
                    "SYNTHETIC in its own metadata, with the seed and every setting; same seed, same bytes.")
    p.add_argument("--list", action="store_true",
                   help="list the model's presets with their attribute, unit and trained range, then exit")
    p.add_argument("--preset", metavar="PRESET",
                   help=f"what to generate: {', '.join(PRESET_NAMES)} (or a class of --checkpoint)")
    p.add_argument("--dims", type=int, choices=(2, 3), default=2, help="2D images or 3D volumes (default 2)")
    p.add_argument("--size", type=int, nargs="+", metavar="N",
                   help="H W (2D) or D H W (3D); default the model's training size (128 128 or 64 64 64)")
    p.add_argument("--n", type=int, default=4, help="number of samples (default 4)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance: 0 unconditional, 1 conditional, >1 stronger (default: "
                        "the model's measured setting for the preset, shown by --list; else 2)")
    p.add_argument("--attr-guidance", type=float, default=None, metavar="G",
                   help="guidance of the attributes apart from the class (against the class-only "
                        "model; one more network pass per step); default: the model's setting with the "
                        "default --guidance, else the same as --guidance")
    p.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                   help="attribute to condition on, in its unit, e.g. n_sources=40 (repeatable); "
                        "`ldm-med generate --list` shows each preset's attribute and range. An attribute "
                        "not given is drawn per sample from the preset's training distribution")
    drawing = p.add_mutually_exclusive_group()
    drawing.add_argument("--free-attributes", dest="draw_attributes", action="store_const", const=False,
                         help="leave attributes not given by --attr unconditioned instead of drawing them "
                              "(default: the model's setting for the preset, shown by --list; else draw)")
    drawing.add_argument("--draw-attributes", dest="draw_attributes", action="store_const", const=True,
                         help="draw attributes not given by --attr, whatever the model's setting")
    p.add_argument("--candidates", type=int, default=None, metavar="K",
                   help="with --attr: draw up to K candidates per sample, stop at the first whose "
                        "measured attribute is within a tenth of its range of the request, keep the "
                        "closest (up to K times the time; default: the model's setting for the preset, "
                        "shown by --list; else 1)")
    p.add_argument("--steer", type=float, default=None, metavar="S",
                   help="for an attribute with a differentiable measure (the molecular radius of "
                        "gyration), requested or drawn: pull the sampler's late estimates toward its value "
                        "by the measure's gradient, a share S of the way per step (0: off; default: the "
                        "model's setting for the preset, shown by --list; else 0)")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i (default 0)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default="dpm++2m")
    p.add_argument("--steps", type=int, default=20, help="sampler steps (default 20)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--checkpoint", help="a generation model file (default: the shipped model for --dims)")
    p.add_argument("--format", choices=FORMATS,
                   help="file format (default the preset's own: MRC molecular, FITS astronomical, "
                        "NIfTI medical)")
    p.add_argument("--no-decoder-noise", dest="decoder_noise", action="store_false",
                   help="do not add the autoencoder's residual noise (smooth samples: the decoder's "
                        "bias-corrected mean)")
    p.add_argument("--out", help="output folder (sample files, gallery.png, generation.json)")
    p.add_argument("--overwrite", action="store_true", help="replace files that already exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    import ldm_med
    from ldm_med.cli._process import import_monai
    from ldm_med.errors import InputError
    from ldm_med.options import parse_attribute
    from ldm_med.progress import progress_reporter

    if args.list:
        return list_presets(args)
    if not args.preset or not args.out:
        raise InputError("--preset and --out are required (or --list to see the presets)")

    opts = ldm_med.GenerateOptions(
        preset=args.preset, dims=args.dims, size=tuple(args.size) if args.size else None, n=args.n,
        guidance=args.guidance, attr_guidance=args.attr_guidance,
        attrs=tuple(parse_attribute(a) for a in args.attr), draw_attributes=args.draw_attributes,
        seed=args.seed,
        sampler=args.sampler, steps=args.steps, device=args.device, checkpoint=args.checkpoint,
        decoder_noise=args.decoder_noise, candidates=args.candidates, steer=args.steer)
    import_monai()  # after the options are checked: a typo fails at once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = ldm_med.generate(opts, progress=None if args.quiet else progress_reporter())
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    paths = ldm_med.save_generation(result, args.out, fmt=args.format, overwrite=args.overwrite)
    if not args.quiet:
        per = result.seconds / max(1, len(paths))
        print(f"{len(paths)} synthetic {opts.preset} sample(s) in {result.seconds:.1f} s ({per:.2f} s each) "
              f"-> {args.out}/ ({(args.format or result.natural_format).upper()} files, gallery.png, "
              "generation.json)")
        for p, v in zip(paths, result.volumes):
            drawn = v.metadata["provenance"].get("attrs_drawn", {})
            found = v.metadata["provenance"].get("measured", {})
            said = [f"drawn {k} {val:.4g}" for k, val in drawn.items()]
            said += [f"measured {k} {val:g}" for k, val in found.items()]
            chosen = v.metadata["provenance"].get("reranking")
            said += [f"closest of {len(chosen['seeds'])} candidates"] if chosen else []
            steered = v.metadata["provenance"].get("steering")
            said += [f"steered toward {steered['attribute']}"] if steered else []
            print(f"  {p.name}" + (f"  ({', '.join(said)})" if said else ""))
    return 0


def list_presets(args: argparse.Namespace) -> int:
    import ldm_med

    info = ldm_med.generation_model_info(args.checkpoint, args.dims)
    print(f"{Path(info['file']).name}: {info['dims']}D {info['arch']} model, size "
          f"{' x '.join(map(str, info['size']))}")
    for name, c in info["classes"].items():
        attrs = [f"{a}=[{s['low']:g}, {s['high']:g}] {s['unit']}" for a, s in c["attributes"].items()]
        sampling = c.get("sampling", {})
        labels = (("guidance", "guidance"), ("attr_guidance", "attribute guidance"))
        scales = "".join(f"; {label} {sampling[key]:g}" for key, label in labels if key in sampling)
        scales += "; attributes free" if sampling.get("draw_attributes") is False else ""
        if sampling.get("candidates"):
            scales += f"; {sampling['candidates']} candidates per --attr sample"
        if sampling.get("steer"):
            scales += f"; --attr steered at {sampling['steer']:g}"
        print(f"  {name:<14} {c['modality']:<6} {c['format']:<6} {'; '.join(attrs) or '-'}{scales}")
    return 0
