"""``ldm-med train autoencoder|diffusion|refiner|decoder|export``; also
``torchrun -m ldm_med.train autoencoder ...``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ldm_med.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an autoencoder or a latent denoiser from a YAML recipe; "
                                     "export a run",
                       description="Train from YAML recipes (configs/*.yaml). Under torchrun: "
                                   "torchrun --nproc-per-node N -m ldm_med.train autoencoder --config FILE")
    add_commands(p)


def add_commands(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="train_command",
                                  metavar="{autoencoder,diffusion,refiner,decoder,export}")
    for kind, text in (("autoencoder", "train the slice autoencoder (run it first)"),
                       ("diffusion", "train a latent denoiser (slice-inpainting or generation)"),
                       ("refiner", "pretrain the slice-gap refiner that reconstruction adapts to each scan"),
                       ("decoder", "distil the small decoder that decodes the uncertainty map's samples")):
        p = kinds.add_parser(kind, help=text)
        p.add_argument("--config", help=f"YAML recipe, e.g. configs/default_{kind}.yaml "
                                        "(optional with --resume)")
        p.add_argument("--out", help="run folder (default runs/<recipe name>)")
        p.add_argument("--steps", type=int, help="total training steps (overrides train.steps)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
        p.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint "
                            "(same result as not stopping)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe value, e.g. --set data.batch_size=4 (repeatable)")
        p.add_argument("--stop-at", type=int, metavar="STEP",
                       help="stop after STEP with a checkpoint, keeping the schedule of --steps "
                            "(resume later)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        if kind == "diffusion":
            p.add_argument("--autoencoder", help="trained autoencoder (.safetensors or run folder); "
                                                 "overrides the recipe's `autoencoder:`")
            p.add_argument("--data", action="append", metavar="DIR",
                           help="task: generation: train on a folder of NIfTI/DICOM/MRC/FITS/TIFF/PNG files "
                                "instead of the recipe's sources, one class per subfolder, attributes from "
                                "DIR/attributes.csv (columns file, then one per attribute); a tenth of "
                                "the files is held out (repeatable)")
        p.set_defaults(handler=run_train, kind=kind)
    e = kinds.add_parser("export", help="write a run's EMA weights as a shippable model file")
    e.add_argument("run", help="run folder (or a model .safetensors)")
    e.add_argument("-o", "--output", required=True, help="output .safetensors")
    e.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
    e.add_argument("--autoencoder-out", help="slice-inpainting denoisers: also export the autoencoder here "
                                            "(default: reference the run's autoencoder where it is)")
    e.set_defaults(handler=run_export)
    parser.set_defaults(handler=lambda args: _help(parser))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def resolve_run(args: argparse.Namespace):
    """The recipe and run folder for ``args`` (the run's own resolved recipe when resuming)."""
    from ldm_med.checkpoint import STATE_FILE, load_state
    from ldm_med.config import apply_overrides, from_dict, load_config, to_dict

    if not args.config and not (args.resume and args.out):
        raise InputError("--config FILE is needed (or --resume with --out RUN_FOLDER)")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if getattr(args, "data", None):
        folders = ", ".join("{folder: " + json.dumps(str(Path(d).resolve())) + "}" for d in args.data)
        overrides += [f"data.sources=[{folders}]", "data.validation=[]", "data.val_fraction=0.1",
                      "task=generation", "labels.enabled=true", "attributes={}"]
    if args.resume and (out / STATE_FILE).is_file():
        _, saved, _ = load_state(out / STATE_FILE)
        cfg = from_dict(apply_overrides(saved, overrides), args.kind, name=str(out / STATE_FILE))
        if args.config:
            given = load_config(args.config, args.kind, overrides)
            _warn_differences(to_dict(given), to_dict(cfg), args.config)
    elif args.resume and not args.config:
        raise InputError(f"{out}: nothing to resume (no {STATE_FILE})")
    else:
        cfg = load_config(args.config, args.kind, overrides)
    if getattr(args, "autoencoder", None):
        cfg = dataclasses.replace(cfg, autoencoder=args.autoencoder)
    return cfg, out


def _warn_differences(given: dict, saved: dict, name: str, prefix: str = "") -> None:
    # settled when the run started (train/resolve.py), so they differ from any recipe
    ignored = {"train.steps", "residual_scale", "model.num_classes", "autoencoder", "labels.names",
               "model.cond_channels", "attributes"}
    for key in sorted(set(given) | set(saved)):
        a, b, path = given.get(key), saved.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            _warn_differences(a, b, name, path + ".")
        elif a != b and path not in ignored:
            warnings.warn(f"--resume uses the run's own recipe: {path} is {b!r} there, {a!r} in {name}",
                          RuntimeWarning, stacklevel=2)


def run_train(args: argparse.Namespace) -> int:
    from ldm_med.cli._process import import_monai
    from ldm_med.train.loop import TrainingDiverged, train

    if args.kind in ("refiner", "decoder"):
        return run_one_pass(args)
    cfg, out = resolve_run(args)
    import_monai()
    try:
        train(cfg, out, device=args.device, resume=args.resume, stop_at=args.stop_at, progress=not args.quiet)
    except TrainingDiverged as err:
        print(f"ldm-med train: {err}", file=sys.stderr)
        return 1
    return 0


def run_one_pass(args: argparse.Namespace) -> int:
    """Refiner and decoder runs: minutes long, one pass, no checkpoints."""
    if args.resume or args.stop_at is not None:
        raise InputError(f"{args.kind} runs take minutes and have no checkpoints: --resume and --stop-at "
                         "do not apply")
    cfg, out = resolve_run(args)
    if args.kind == "decoder":
        from ldm_med.cli._process import import_monai

        import_monai()
        from ldm_med.train.decoder import train_decoder as train_one
    else:
        from ldm_med.train.refiner import train_refiner as train_one
    path = train_one(cfg, out, device=args.device, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ldm_med.checkpoint import export_model

    path = export_model(args.run, args.output, half=args.half, autoencoder_out=args.autoencoder_out)
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB{', float16' if args.half else ''})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of ``python -m ldm_med.train`` (and so of ``torchrun -m ldm_med.train``)."""
    from ldm_med.errors import Cancelled

    parser = argparse.ArgumentParser(prog="ldm_med.train",
                                     description="Train ldm-med models (torchrun-ready).")
    add_commands(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InputError as err:
        print(f"ldm_med.train: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print("ldm_med.train: interrupted", file=sys.stderr)
        return 130
