"""Start-up time of the light commands, whole process, against a bare ``python -c "import numpy"``.

    python bench/startup.py [--repeats N] [--no-write]

Runs each command ``N`` times in a fresh process (the installed ``ldm-med`` entry point of this
Python's environment) and reports the median and the fastest wall time. Writes a markdown table into
``docs/performance.md`` between this script's markers (other sections are kept). Target: ``--help``
within 2x of the bare import.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench/startup.py: begin -->", "<!-- bench/startup.py: end -->"
DICOM = ROOT / "sample_data" / "ct_gap_dicom"
NIFTI = ROOT / "sample_data" / "ct_phantom.nii.gz"


def commands() -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "ldm_med"]
    return {
        'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
        "ldm-med --help": [*cli, "--help"],
        "ldm-med info DICOM_DIR (17 files)": [*cli, "info", str(DICOM)],
        "ldm-med info NIFTI (128x128x48)": [*cli, "info", str(NIFTI)],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }


def wall_times(argv: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(time.perf_counter() - start)
    return times


def table(results: dict[str, list[float]]) -> str:
    bare = statistics.median(results['python -c "import numpy"'])
    rows = ["| command | median s | fastest s | x bare numpy import |", "|---|---|---|---|"]
    for name, times in results.items():
        med = statistics.median(times)
        rows.append(f"| `{name}` | {med:.3f} | {min(times):.3f} | {med / bare:.2f} |")
    return "\n".join(rows)


def write(text: str) -> None:
    doc = DOC.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n## Start-up of the light commands (`bench/startup.py`)\n\n" + block + "\n"
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    for argv in commands().values():  # warm the file cache once
        wall_times(argv, 1)
    results = {name: wall_times(argv, args.repeats) for name, argv in commands().items()}
    load = os.getloadavg()[0]
    text = (f"Command: `python bench/startup.py --repeats {args.repeats}` "
            f"({datetime.date.today()}, {os.cpu_count()} cores, load average {load:.1f} while it ran; "
            "whole process, wall time)\n\n" + table(results))
    print(text)
    if not args.no_write:
        write(text)


if __name__ == "__main__":
    main()
