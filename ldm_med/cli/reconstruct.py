"""``ldm-med reconstruct``, ``ldm-med demo`` and ``ldm-med evaluate``."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np

from ldm_med.cli._outputs import check_outputs
from ldm_med.cli._process import import_monai
from ldm_med.errors import InputError
from ldm_med.io import limits


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="fill missing or corrupt slices of a NIfTI file or DICOM folder")
    p.add_argument("input", help="NIfTI file (.nii, .nii.gz) or DICOM folder")
    p.add_argument("-o", "--output", required=True, help="output NIfTI (.nii or .nii.gz)")
    p.add_argument("--missing", default="auto",
                   help="slices to fill along --axis, in voxel order: '3,7,10-14', 'keep-every:4', or 'auto' "
                        "(geometry gaps and blank/constant/NaN slices; default)")
    _model_options(p)
    p.add_argument("--uncertainty",
                   help="write the calibrated per-voxel std of the --samples (>= 2) posterior samples to "
                        "this NIfTI: result +- 1.645 std is a 90%% interval, calibrated on hidden "
                        "acquired slices of the scan itself")
    p.add_argument("--save-samples", metavar="PATH",
                   help="write the --samples (>= 2) posterior samples as one 4D NIfTI (X, Y, Z, sample)")
    p.add_argument("--axis", type=int, choices=(0, 1, 2),
                   help="slice axis (default: the last voxel axis for NIfTI, the acquisition axis for DICOM)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files that exist (default: refuse, exit code 2)")
    _input_options(p)
    p.set_defaults(handler=run_reconstruct)

    d = sub.add_parser("demo", help="remove slices from a bundled volume, reconstruct, compare with "
                                    "interpolation")
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--gap", default="x4", help="gap pattern: x2, x4, drop25, block3 (default x4)")
    _model_options(d, samples=4, steps=4)
    d.set_defaults(handler=run_demo)

    e = sub.add_parser("evaluate", help="score methods on your own fully sampled volumes (PSNR/SSIM/MAE)")
    e.add_argument("inputs", nargs="+", help="NIfTI files or DICOM folders without missing slices")
    e.add_argument("--patterns", default="x2,x4,drop25,block3", help="comma-separated gap patterns")
    e.add_argument("--methods", default="linear,cubic,ldm",
                   help="comma-separated methods: linear, cubic, ldm, and the ablations ldm:pretrained "
                        "(refiner not fine-tuned) and ldm:off (diffusion model alone)")
    e.add_argument("--out", default="evaluation", help="folder for results.csv and results.md")
    e.add_argument("--axis", type=int, choices=(0, 1, 2), help="slice axis (default as for reconstruct)")
    _model_options(e, method=False)
    _input_options(e)
    e.set_defaults(handler=run_evaluate)


def _model_options(p: argparse.ArgumentParser, samples: int = 1, steps: int | None = None,
                   method: bool = True) -> None:
    from ldm_med.options import METHODS, REFINE_MODES, ReconstructOptions

    steps = steps or ReconstructOptions.steps
    if method:
        p.add_argument("--method", default="ldm", choices=METHODS)
    p.add_argument("--refine", default="adapt", choices=REFINE_MODES,
                   help="slice-gap refiner: fine-tune it on this scan's own in-plane data (adapt, default), "
                        "use it as shipped (pretrained), or leave the estimate to the diffusion model (off)")
    p.add_argument("--adapt-steps", type=int, default=ReconstructOptions.adapt_steps,
                   help=f"at most this many fine-tuning steps of --refine adapt (default "
                        f"{ReconstructOptions.adapt_steps}); small jobs take fewer: one per 400 missing "
                        "voxels, at least 75; the fine-tuning stops once the check on hidden acquired "
                        "slices stops improving")
    p.add_argument("--skip-margin", type=float, default=None, metavar="DB",
                   help="with --refine adapt, no fine-tuning when the check puts the shipped refiner more "
                        "than DB dB ahead of the best interpolation (default: 0 for CT, whose refiner "
                        "never gained from it on the benchmark, else never skipped; inf: always fine-tune)")
    p.add_argument("--refiner", help="refiner checkpoint (default: shipped with ldm-med, one for CT in "
                                     "Hounsfield units and a general one for everything else)")
    p.add_argument("--sampler", default=ReconstructOptions.sampler,
                   help=f"sampler name (default {ReconstructOptions.sampler})")
    p.add_argument("--steps", type=int, default=steps, help=f"sampler steps (default {steps})")
    p.add_argument("--samples", type=int, default=samples,
                   help=f"latent-diffusion samples; their spread is the uncertainty map (default {samples})")
    p.add_argument("--fast-uncertainty", action="store_true",
                   help="decode the --samples with a small decoder distilled from the autoencoder's (a third "
                        "of its cost: about 4-6 s less for 8 samples of 128x128x64 on 2 cores); the map "
                        "ranks errors as well, and its 90%% interval held 0.90-0.95 of the truth on 9 of the "
                        "10 benchmark volumes (0.951 on one; docs/performance.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--checkpoint", help="denoiser checkpoint (default: the model shipped with ldm-med)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--threads", type=int,
                   help="CPU threads for torch (default: LDM_MED_THREADS or OMP_NUM_THREADS if set, else the "
                        "cores shared evenly between the ldm-med processes running, re-checked as they "
                        "start and end; under torchrun cores / LOCAL_WORLD_SIZE)")


def _input_options(p: argparse.ArgumentParser) -> None:
    from ldm_med.options import MODALITIES

    p.add_argument("--volume-index", type=int, help="which volume of a 4D NIfTI to use")
    p.add_argument("--series",
                   help="DICOM series (UID or index from `ldm-med info`) when a folder has several")
    p.add_argument("--modality", type=str.upper, choices=MODALITIES,
                   help="what the volume holds, where its file does not say (NIfTI, TIFF): CT, MR, EM (a "
                        "density map) or ASTRO (a spectral cube); it picks the shipped refiner, and ASTRO "
                        "also checks the blend on in-plane rows at the real gaps")


def _options(args: argparse.Namespace, method: str | None = None):
    """``ReconstructOptions`` from the parsed flags; they validate themselves (``InputError``)."""
    from ldm_med import ReconstructOptions

    return ReconstructOptions(method=method or getattr(args, "method", "ldm"), sampler=args.sampler,
                              steps=args.steps, samples=args.samples, seed=args.seed, device=args.device,
                              checkpoint=args.checkpoint, refine=args.refine, adapt_steps=args.adapt_steps,
                              skip_margin=args.skip_margin, refiner=args.refiner,
                              spread_decoder=args.fast_uncertainty)


def _load(path: str, args: argparse.Namespace):
    from ldm_med import load_volume

    volume = load_volume(path, axis=args.axis, volume_index=args.volume_index, series=args.series)
    if args.modality:
        volume.metadata.update(modality=args.modality, modality_guessed=False)
    return volume


@contextlib.contextmanager
def _progress(quiet: bool):
    """The command line's progress reporter (bars on a terminal, plain lines otherwise), closed at the end."""
    from ldm_med.progress import progress_reporter

    reporter = progress_reporter(quiet)
    try:
        yield reporter
    finally:
        if reporter is not None:
            reporter.close()


def run_reconstruct(args: argparse.Namespace) -> int:
    import ldm_med
    from ldm_med.io.nifti import require_nifti_path
    from ldm_med.masks import format_indices

    outputs = [("-o", args.output), ("--uncertainty", args.uncertainty),
               ("--save-samples", args.save_samples)]
    for flag, path in outputs:
        if path:
            require_nifti_path(path, flag)
            if flag != "-o" and args.samples < 2:
                raise InputError(f"{flag} needs --samples 2 or more (it comes from the posterior samples)")
    check_outputs(args.input, [p for _, p in outputs if p], args.overwrite)
    options = _options(args)
    volume = _load(args.input, args)
    missing = ldm_med.parse_missing(args.missing, volume)
    if not missing.any():
        print(f"{args.input}: no missing slices found along axis {volume.slice_axis}; "
              "output is a copy of the input", file=sys.stderr)
    limits.check_memory(limits.reconstruct_bytes(volume.shape, volume.spacing, volume.slice_axis,
                                                 options.samples), args.input)
    if options.uses_diffusion:
        import_monai()  # after the input is checked: bad input fails at once
    with _progress(args.quiet) as progress, limits.CpuShare(args.threads) as cpu:
        result = ldm_med.reconstruct(volume, missing, options, progress=cpu.wrap(progress))
    ldm_med.save_volume(result.volume, args.output)
    if args.uncertainty:
        ldm_med.save_volume(ldm_med.uncertainty_volume(result), args.uncertainty)
    if args.save_samples:
        ldm_med.save_samples(result, args.save_samples)
    print(f"filled {int(missing.sum())} of {volume.n_slices} slices along axis {volume.slice_axis} "
          f"({format_indices(missing)}) with {options.method} in {result.seconds:.1f} s -> {args.output}")
    info = result.volume.metadata.get("reconstruction", {})
    for line in (_choice_line(info), _uncertainty_line(info)):
        if line:
            print(line)
    return 0


def _choice_line(info: dict) -> str:
    """What the check on hidden acquired slices chose, and its errors (normalised units)."""
    if not info.get("blend"):
        return ""
    blend = " + ".join(f"{w:.2f} {name}" for name, w in info["blend"].items())
    line = f"estimate: {blend}"
    if info.get("adapt_skipped"):
        line += f"; not fine-tuned: {info['adapt_skipped']}"
    elif info.get("adapt_budget"):
        line += f"; fine-tuned {info['adapt_steps_used']} of {info['adapt_budget']} steps"
    if info.get("check_score"):
        line += (" (chosen by hiding acquired slices and on in-plane rows at the real gaps; error relative "
                 f"to the best interpolation: {_ranked(info['check_score'], '.3f')})")
    elif info.get("check_rmse"):
        line += f" (chosen by hiding acquired slices; RMSE there: {_ranked(info['check_rmse'], '.4g')})"
    return line


def _ranked(errors: dict, fmt: str) -> str:
    return ", ".join(f"{name} {v:{fmt}}" for name, v in sorted(errors.items(), key=lambda kv: kv[1]))


def _uncertainty_line(info: dict) -> str:
    calib = info.get("uncertainty")
    if not calib:
        return ""
    if not calib["calibrated"]:
        return f"warning: the uncertainty map is not calibrated: {calib['why']}"
    terms = {"samples_std": f"std of {info['samples']} samples",
             "abs_result_minus_linear": "|result - linear|", "linear_gradient": "gradient"}
    mix = " + ".join(f"{w:.3g} {terms[name]}" for name, w in calib["weights"].items() if w > 0)
    return (f"uncertainty: {calib['scale']:.3g} x ({mix}), fitted and calibrated on hidden acquired slices "
            f"so that {calib['interval']} is a {calib['nominal_coverage']:.0%} interval "
            f"(before scaling: {calib['holdout_coverage_before']:.0%} there)")


def run_demo(args: argparse.Namespace) -> int:
    from ldm_med.pipelines.demo import run_demo as demo

    with _progress(args.quiet) as progress, limits.CpuShare(args.threads) as cpu:
        demo(Path(args.out), _options(args, method="ldm"), gap=args.gap, progress=cpu.wrap(progress))
    return 0
def run_evaluate(args: argparse.Namespace) -> int:
    from ldm_med.masks import GAP_PATTERNS
    from ldm_med.pipelines.evaluate import (
        EVALUATION_METHODS,
        evaluate_volume,
        summary_table,
        write_csv,
    )

    patterns = [p.strip() for p in args.patterns.split(",") if p.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for p in patterns:
        if p not in GAP_PATTERNS:
            raise InputError(f"unknown gap pattern {p!r}; valid: {', '.join(GAP_PATTERNS)}")
    for m in methods:
        if m not in EVALUATION_METHODS:
            raise InputError(f"unknown method {m!r}; valid: {', '.join(EVALUATION_METHODS)}")
    options = _options(args, method="ldm")
    volumes = [(Path(p).name, _load(p, args)) for p in args.inputs]  # all inputs checked before any work
    for name, vol in volumes:
        if not vol.acquired.all():
            raise InputError(f"{name}: has missing slices {np.flatnonzero(~vol.acquired).tolist()[:8]}; "
                             "evaluation needs fully sampled volumes")
    rows = []
    with limits.CpuShare(args.threads):
        for name, vol in volumes:
            rows += evaluate_volume(name, vol, patterns, methods, options, seed=args.seed,
                                    on_row=lambda r: print(f"{r.volume} {r.pattern:>7} {r.method:>6}: "
                                                           f"PSNR {r.psnr:6.2f} dB  SSIM {r.ssim:.4f}  "
                                                           f"{r.seconds:.1f} s", flush=True))
    out = Path(args.out)
    write_csv(rows, out / "results.csv")
    table = summary_table(rows)
    (out / "results.md").write_text(table + "\n")
    print(table)
    return 0
