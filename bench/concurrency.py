"""Two default reconstructions at once against one alone: do concurrent runs share the cores?

    python bench/concurrency.py              # the record: default settings, writes docs/reliability.md
    python bench/concurrency.py --args "--method linear" --no-write    # a quick check that it works

Times ``ldm-med reconstruct sample_data/ct_gap_dicom`` (the bundled 96x96x20 CT series, 3 missing
slices) as whole processes: once alone, then two started together (each with its own output). The
processes use ldm-med's default thread rule (cores shared between the running ldm-med processes), so
OMP_NUM_THREADS and LDM_MED_THREADS are removed from their environment unless --keep-env. The issue's
target: two concurrent runs take at most 2.5x the time of one alone on a 2-core machine. Run it on an
otherwise idle machine: other load makes the numbers meaningless.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "ct_gap_dicom"
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- concurrency:begin -->", "<!-- concurrency:end -->"


def _command(out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "ldm_med", "reconstruct", str(SAMPLE), "-o", str(out), "-q",
            "--overwrite", *extra]


def _run(n: int, extra: list[str], env: dict[str, str], folder: Path) -> list[float]:
    """Start ``n`` reconstructions together; wall seconds of each."""
    start = time.perf_counter()
    procs = [subprocess.Popen(_command(folder / f"out{i}.nii.gz", extra), env=env) for i in range(n)]
    ends = []
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"ldm-med reconstruct exited with {p.returncode}")
        ends.append(time.perf_counter() - start)
    return ends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--args", default="", help="extra reconstruct flags (quick check: '--method linear')")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per case (median kept)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/reliability.md alone")
    parser.add_argument("--keep-env", action="store_true", help="keep OMP_NUM_THREADS / LDM_MED_THREADS")
    args = parser.parse_args()
    extra = shlex.split(args.args)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if not args.keep_env:
        for key in ("OMP_NUM_THREADS", "LDM_MED_THREADS", "MKL_NUM_THREADS"):
            env.pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        alone = sorted(_run(1, extra, env, Path(tmp))[0] for _ in range(args.repeats))
        pair = sorted(max(_run(2, extra, env, Path(tmp))) for _ in range(args.repeats))
    one, two = alone[len(alone) // 2], pair[len(pair) // 2]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    line = (f"| {time.strftime('%Y-%m-%d')} | {cores} | `{' '.join(extra) or 'default'}` | {one:.1f} s | "
            f"{two:.1f} s | {two / one:.2f}x |")
    print(f"one alone {one:.1f} s; two concurrent: the slower finished after {two:.1f} s ({two / one:.2f}x)")
    if args.no_write:
        return 0
    table = ("| date | cores | reconstruct flags | one alone | two at once (slower) | ratio |\n"
             "|---|---|---|---|---|---|\n" + line)
    text = DOC.read_text() if DOC.exists() else ""
    block = f"{BEGIN}\n{table}\n{END}"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), block, text, flags=re.S) if BEGIN in text \
        else text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
