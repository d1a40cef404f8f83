"""``ldm-med batch IN_DIR OUT_DIR``: repair every DICOM series of a folder tree (``ldm_med.batch``)."""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from ldm_med.cli.reconstruct import _model_options

    p = sub.add_parser(
        "batch", help="repair every series of a DICOM folder tree: derived DICOM, NIfTI, a report",
        description="Walk IN_DIR, reconstruct the missing slices of every series that can be "
        "repaired safely, write derived DICOM series and/or NIfTI to OUT_DIR with report.json, "
        "series.csv and skipped.csv. Under torchrun the series are shared between the ranks.")
    p.add_argument("in_dir", help="folder tree of DICOM files (never written)")
    p.add_argument("out_dir", help="output folder (outside IN_DIR)")
    p.add_argument("--format", default="dicom,nifti",
                   help="comma-separated outputs: dicom (derived series), nifti (default: both)")
    p.add_argument("--missing", default="auto",
                   help="slices to fill in every series: 'auto' (geometry gaps and blank/corrupt "
                        "slices; default) or a specification such as '3,7,10-14' or 'keep-every:4'")
    p.add_argument("--dry-run", action="store_true", help="print what would be done; write nothing")
    p.add_argument("--resume", action="store_true",
                   help="skip series the manifest in OUT_DIR records as finished; redo the others")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every series of an earlier run in OUT_DIR, replacing its files")
    p.add_argument("--anonymize", action="store_true",
                   help="de-identify the derived series (DICOM PS3.15 basic profile, consistent UIDs)")
    p.add_argument("--send", metavar="AET@HOST:PORT",
                   help="store each derived series at this DICOM node (C-STORE, with retries)")
    p.add_argument("--workers", type=int, default=1,
                   help="threads that read and write beside the compute (default 1: one at a time)")
    p.add_argument("--max-gap", type=int, default=None,
                   help="longest run of missing slices to fill (default 16); longer: refused")
    p.add_argument("--include-complete", action="store_true",
                   help="also write series that have nothing missing")
    _model_options(p)
    p.set_defaults(handler=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    from ldm_med.batch import BatchConfig, Terminated, run_batch
    from ldm_med.batch.plan import DEFAULT_MAX_GAP
    from ldm_med.cli._process import import_monai
    from ldm_med.cli.reconstruct import _options
    from ldm_med.io.limits import CpuShare
    from ldm_med.progress import progress_reporter

    send = None
    if args.send:
        from ldm_med.batch.send import Destination

        send = Destination.parse(args.send)
    cfg = BatchConfig(
        in_dir=args.in_dir, out_dir=args.out_dir,
        formats=tuple(f.strip().lower() for f in args.format.split(",") if f.strip()),
        missing=args.missing, options=_options(args), dry_run=args.dry_run, resume=args.resume,
        overwrite=args.overwrite,
        anonymize=args.anonymize, send=send, workers=args.workers,
        max_gap=DEFAULT_MAX_GAP if args.max_gap is None else args.max_gap,
        include_complete=args.include_complete, quiet=args.quiet)
    if cfg.options.uses_diffusion and not cfg.dry_run:
        import_monai()
    try:
        with CpuShare(args.threads) as cpu:
            return run_batch(cfg, progress_factory=lambda: cpu.wrap(progress_reporter(args.quiet)))
    except Terminated:
        print("ldm-med batch: terminated (SIGTERM); unfinished series were removed, "
              "run again with --resume", file=sys.stderr)
        return 143
