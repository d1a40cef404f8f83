"""Whole-process reconstruction times: what a user waits for, start-up included.

    python bench/speed.py [--repeats 3] [--no-write]

Runs ``ldm-med reconstruct`` as a fresh process, default settings, on: the bundled 96x96x20 DICOM
series (3 missing slices); CT phantoms of 128x128x64 and 256x256x128 with x4 gaps (``--missing
keep-every:4``); the 128x128x64 one with ``--samples 8``; the DICOM series again with the fine-tuning
forced (``--skip-margin inf``), and the ``--samples 8`` case with ``--fast-uncertainty`` (the distilled
decoder), for comparison; every case once per round. Reports the median wall
time, the peak memory and what the fine-tuning did, and writes the table into ``docs/benchmarks.md``
(its own section).
The targets (issue "never lose to interpolation"): DICOM <= 8 s, 128x128x64 <= 15 s, 256x256x128 <= 40 s,
``--samples 8`` at most 3x one sample. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench/speed.py: begin -->", "<!-- bench/speed.py: end -->"
TIME = "/usr/bin/time"
FAST = "CT 128x128x64, x4, --samples 8 --fast-uncertainty"


def phantom(shape: tuple[int, int, int], folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    import ldm_med
    from ldm_med.data.phantoms import ct_body

    path = folder / f"ct_{'x'.join(map(str, shape))}.nii.gz"
    if not path.exists():
        ldm_med.save_volume(ct_body(shape=shape, spacing=(0.8, 0.8, 1.5), seed=700050), path, synthetic=True)
    return path


def matmul_peak() -> float:
    """fp32 matmul GFLOP/s with torch's default threads (best of 8): how fast this machine is now.
    On shared virtual machines it moves by tens of percent within an hour, and the times with it."""
    code = ("import time, torch\na = torch.randn(2048, 2048); torch.mm(a, a); best = 1e9\n"
            "for _ in range(8):\n"
            "    t = time.perf_counter(); torch.mm(a, a); best = min(best, time.perf_counter() - t)\n"
            "print(2 * 2048 ** 3 / best / 1e9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(out.stdout.strip() or "nan")


def run_once(args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "ldm_med", "reconstruct", *args, "-o", str(out), "--overwrite"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LDM_MED_THREADS")}
    wrapped = [TIME, "-f", "__rss_kb=%M"] + cmd if Path(TIME).exists() else cmd
    start = time.perf_counter()
    done = subprocess.run(wrapped, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    rss = re.search(r"__rss_kb=(\d+)", done.stderr)
    tuned = re.search(r"fine-tuned (\d+) of (\d+) steps", done.stdout)
    skipped = re.search(r"not fine-tuned: the shipped refiner was ([-\d.]+) dB ahead", done.stdout)
    what = (f"{tuned.group(1)} of {tuned.group(2)}" if tuned else
            f"skipped ({skipped.group(1)} dB ahead on the check)" if skipped else "-")
    return {"seconds": seconds, "rss_gb": int(rss.group(1)) / 2**20 if rss else float("nan"), "tuned": what}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ldm-med-speed-"))
    small, large = phantom((128, 128, 64), tmp), phantom((256, 256, 128), tmp)
    dicom = str(ROOT / "sample_data" / "ct_gap_dicom")
    cases = [("bundled DICOM 96x96x20, 3 missing", [dicom], 8),
             ("CT 128x128x64, x4 (48 missing)", [str(small), "--missing", "keep-every:4"], 15),
             ("CT 256x256x128, x4 (96 missing)", [str(large), "--missing", "keep-every:4"], 40),
             ("CT 128x128x64, x4, --samples 8", [str(small), "--missing", "keep-every:4", "--samples", "8"],
              None),
             (FAST, [str(small), "--missing", "keep-every:4", "--samples", "8", "--fast-uncertainty"], None),
             ("bundled DICOM, --skip-margin inf (fine-tuning always runs)", [dicom, "--skip-margin", "inf"],
              None)]
    peaks = [matmul_peak()]
    # round robin: every round runs every case once, so the machine's drift (its fp32 peak moves by tens
    # of percent within an hour) falls on all cases alike, and each round gives a paired ratio
    runs = {name: [] for name, _, _ in cases}
    for _ in range(args.repeats):
        for name, cli, _ in cases:
            runs[name].append(run_once(cli, tmp / "out.nii.gz"))
    rows = []
    for name, _, target in cases:
        done = runs[name]
        row = {"case": name, "median_s": statistics.median(r["seconds"] for r in done),
               "min_s": min(r["seconds"] for r in done), "rss_gb": max(r["rss_gb"] for r in done),
               "tuned": done[0]["tuned"], "target": target}
        rows.append(row)
        print(json.dumps(row), flush=True)
    peaks.append(matmul_peak())
    print(f"fp32 matmul peak before/after: {peaks[0]:.0f}/{peaks[1]:.0f} GFLOP/s")
    one = runs["CT 128x128x64, x4 (48 missing)"]
    for i, eight in ((3, runs["CT 128x128x64, x4, --samples 8"]), (4, runs[FAST])):
        ratios = [e["seconds"] / o["seconds"] for o, e in zip(one, eight)]
        rows[i]["target"] = (f"<= 3x one sample ({3 * rows[1]['median_s']:.0f} s); per round "
                             f"{', '.join(f'{r:.2f}x' for r in ratios)}")
    if not args.no_write:
        write(rows, args, peaks)


def write(rows, args, peaks) -> None:
    load = os.getloadavg()[0]
    lines = ["## Whole-process speed (`bench/speed.py`)", "",
             f"Command: `python bench/speed.py --repeats {args.repeats}` ({datetime.date.today()}, "
             f"{os.cpu_count()} cores, CPU, load average {load:.2f} at the end; fp32 matmul peak "
             f"{peaks[0]:.0f} GFLOP/s before and {peaks[1]:.0f} after, with torch's default threads: the "
             "machines this runs on differ by 3-4x from one day to another (104-465 GFLOP/s seen), so "
             "compare the rows of one run, not runs). `ldm-med reconstruct` as a "
             "fresh process with default settings (start-up, reading and writing included); median and "
             "fastest of the repeats (run round robin, every case once per round); peak resident memory; "
             "the fine-tuning steps kept of the budget, or why none ran (the last row forces them, as "
             "before the CT rule).", "",
             "| case | median s | fastest s | target s | peak GB | fine-tuned steps |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['median_s']:.1f} | {r['min_s']:.1f} | {r['target'] or '-'} | "
              f"{r['rss_gb']:.2f} | {r['tuned']} |" for r in rows]
    block = f"{BEGIN}\n" + "\n".join(lines) + f"\n{END}"
    doc = DOC.read_text()
    if BEGIN in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(doc)


if __name__ == "__main__":
    main()
