"""The long fuzz run: every target of tests/fuzz with many inputs, and a tally of the outcomes.

    python bench/fuzz.py --inputs 10000                 # >= 10,000 inputs per target (hours on 1 core)
    python bench/fuzz.py --inputs 500 --only nifti      # one target: nifti, dicom, text, checkpoint, formats
    nice -n 19 env OMP_NUM_THREADS=1 python bench/fuzz.py --inputs 10000 --json fuzz.json

Each input must give a valid result or an ``InputError`` naming the file, within the per-input time bound
(``LDM_MED_FUZZ_SECONDS``, default 20 s), without allocating beyond the cap the tests set (64 MiB) and
without a patient identifier in any message or report (see tests/fuzz/harness.py). Inputs are random
(not derandomized) in the long run, so two runs try different inputs; a failure prints the input that
reproduces it. The quick part of the same tests runs in the normal suite (``pytest tests/fuzz``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"nifti": "test_fuzz_nifti.py", "dicom": "test_fuzz_dicom.py", "text": "test_fuzz_text.py",
           "checkpoint": "test_fuzz_checkpoint.py", "formats": "test_fuzz_formats.py"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10000, help="hypothesis examples per test")
    parser.add_argument("--only", choices=sorted(TARGETS), action="append", help="run only these targets")
    parser.add_argument("--json", type=Path, help="write the tally here")
    args = parser.parse_args()
    os.environ["LDM_MED_FUZZ_EXAMPLES"] = str(args.inputs)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
    import harness
    import pytest

    files = [str(ROOT / "tests" / "fuzz" / TARGETS[t]) for t in (args.only or sorted(TARGETS))]
    start = time.time()
    rc = pytest.main(["-p", "no:xdist", "-p", "no:cacheprovider", "-q", *files])
    tally: dict[str, dict[str, int]] = {}
    for (target, outcome), n in sorted(harness.TALLY.items()):
        tally.setdefault(target, {})[outcome] = n
    result = {"inputs_per_test": args.inputs, "exit_code": int(rc), "seconds": round(time.time() - start),
              "tally": tally}
    for target, outcomes in tally.items():
        print(f"{target:32s} " + "  ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(f"pytest exit code {int(rc)} (0: every input within the contract) in {result['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())
