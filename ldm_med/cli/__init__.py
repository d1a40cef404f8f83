"""Command line: ``ldm-med COMMAND ...``. Thin: parse arguments, call the API, print.

Each sub-module of ``ldm_med.cli`` adds its commands with ``register(subparsers)``; a command's
handler returns an exit code. ``InputError`` becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from ldm_med.cli._process import keep_freed_memory
from ldm_med.errors import Cancelled, InputError

# Modules that contribute commands, in the order they appear in --help.
COMMAND_MODULES = ("info", "train", "reconstruct", "batch", "generate")


def build_parser() -> argparse.ArgumentParser:
    from ldm_med import __version__

    parser = argparse.ArgumentParser(
        prog="ldm-med",
        description="Latent diffusion for volumetric scans: reconstruct missing slices, "
        "generate synthetic volumes.",
    )
    parser.add_argument("--version", action="version", version=f"ldm-med {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"ldm_med.cli.{name}").register(sub)
    return parser


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds: temporary files are removed, nothing half-written stays


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    keep_freed_memory()  # the process is the command's own: keep freed network buffers mapped
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)  # batch installs its own while it runs
    try:
        return int(args.handler(args) or 0)
    except InputError as err:
        print(f"ldm-med {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permission denied, a file gone mid-run: not bad input, one line
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"ldm-med {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except Cancelled:
        print(f"ldm-med {args.command}: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"ldm-med {args.command}: interrupted", file=sys.stderr)
        return 130
