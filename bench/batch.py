"""Batch benchmark: series per minute and I/O share on a generated tree of small series.

    python bench/batch.py [--series 50] [--shape 64,64,24] [--refine pretrained] [--write-docs]

Writes a tree of ``--series`` CT series (phantoms from ``tests/io/dicom_synth.py``, every 4th slice
missing plus one random slice) and runs ``ldm-med batch`` on it in fresh processes: one process with
``--workers 1`` (default torch threads, and one thread: what each rank gets), one with
``--workers 2``, and ``torchrun --nproc-per-node 2`` (gloo, CPU, one torch thread per rank).
Series/min counts the whole process (start-up, scan, model loading included); the I/O share is
(read + write seconds) / model seconds from the run's report. With ``--write-docs`` the ``## Batch``
section of docs/benchmarks.md is replaced (appended if absent).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "io"))


def make_tree(root: Path, n: int, shape: tuple[int, int, int], seed: int = 0) -> None:
    from dicom_synth import phantom, write_ct_series

    rng = np.random.default_rng(seed)
    base = phantom(shape)
    for i in range(n):
        drop = sorted({k for k in range(1, shape[2] - 1) if k % 4 == 2} |
                      {int(rng.integers(1, shape[2] - 1))})
        write_ct_series(root / f"patient{i // 5:02d}" / f"series{i:03d}", base + 5 * (i % 7),
                        drop=drop, seed=i)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(label: str, cmd: list[str], env: dict, out: Path) -> dict:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summ = json.loads((out / "report.json").read_text())["summary"]
    st = summ["seconds_by_stage"]
    processed = summ["repaired"] + summ["complete"]
    return {"label": label, "wall": wall, "series": processed,
            "per_min": 60.0 * processed / wall, "model": st.get("model", 0.0),
            "read": st.get("read", 0.0), "write": st.get("write", 0.0),
            "io_share": (st.get("read", 0.0) + st.get("write", 0.0)) / max(st.get("model", 0), 1e-9)}


def table(rows: list[dict], args, command: str) -> str:
    one = next((r["per_min"] for r in rows if r["label"].endswith("1 thread")), rows[0]["per_min"])
    lines = ["## Batch", "",
             f"`ldm-med batch` on {args.series} generated CT series of {args.shape} voxels (every 4th "
             f"slice and one random slice missing), `--refine {args.refine}`, CPU "
             f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}), "
             f"{time.strftime('%Y-%m-%d')}. Command: `{command}`.", "",
             "| run | wall s | series/min | vs 1 process, 1 thread | model s | read s | write s | "
             "I/O / model |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['wall']:.1f} | {r['per_min']:.1f} | "
                     f"{r['per_min'] / one:.2f}x | {r['model']:.1f} | {r['read']:.1f} | "
                     f"{r['write']:.1f} | {100 * r['io_share']:.1f}% |")
    lines += ["", "Stage seconds are summed over series (and over ranks); with `--workers 2` reading "
              "and writing overlap the model, so their share is time hidden, not added. Series/min "
              "counts whole processes: start-up, the header scan and model loading included.", ""]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else ""
    start = text.find("\n## Batch\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start + 1] + section + (text[end + 1:] if end >= 0 else "")
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=50)
    ap.add_argument("--shape", default="64,64,24")
    ap.add_argument("--refine", default="pretrained", choices=("adapt", "pretrained", "off"))
    ap.add_argument("--adapt-steps", type=int, default=300)
    ap.add_argument("--runs", default="w1,w1t1,w2,torchrun2",
                    help="which of w1, w1t1 (one torch thread), w2, torchrun2 to run")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    work = Path(tempfile.mkdtemp(prefix="ldm_med_bench_batch_"))
    try:
        src = work / "in"
        make_tree(src, args.series, shape)
        flags = ["--refine", args.refine, "--adapt-steps", str(args.adapt_steps), "--device", "cpu",
                 "-q"]
        py = [sys.executable, "-m", "ldm_med", "batch"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        rows = []
        runs = args.runs.split(",")
        if "w1" in runs:
            rows.append(run("1 process, --workers 1", py + [str(src), str(work / "w1"), *flags],
                            env, work / "w1"))
        if "w1t1" in runs:
            rows.append(run("1 process, --workers 1, 1 thread",
                            py + [str(src), str(work / "w1t1"), *flags],
                            dict(env, OMP_NUM_THREADS="1"), work / "w1t1"))
        if "w2" in runs:
            rows.append(run("1 process, --workers 2",
                            py + [str(src), str(work / "w2"), *flags, "--workers", "2"], env,
                            work / "w2"))
        if "torchrun2" in runs:
            torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2",
                        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                        "-m", "ldm_med", "batch"]
            rows.append(run("torchrun, 2 ranks (1 thread each)",
                            torchrun + [str(src), str(work / "t2"), *flags],
                            dict(env, OMP_NUM_THREADS="1"), work / "t2"))
        command = "python bench/batch.py " + " ".join(sys.argv[1:])
        section = table(rows, args, command.strip())
        print(section)
        if args.write_docs:
            write_docs(section)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
