"""Coverage-guided byte fuzzing of the file readers with atheris (libFuzzer), beside the hypothesis suite.

    pip install atheris
    python bench/fuzz_atheris.py --format nifti -runs=10000        # nifti, dicom, mrc, fits, tiff, png

Each input is written to a file with the format's suffix and read with ``ldm_med.io.load_volume`` under the
same contract as ``tests/fuzz``: a valid result or an ``InputError`` naming the file, within the time bound
and the allocation cap (``tests/fuzz/harness.py::check``). The corpus starts from a small valid file written
by ldm-med itself; libFuzzer then mutates it, guided by the coverage of ldm_med.io. Any other exception
stops the run with the input saved as ``crash-*`` (libFuzzer's behaviour); ``Done N runs`` at the end
means N inputs kept the contract.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
sys.path.insert(0, str(ROOT / "tests" / "io"))

SUFFIXES = {"nifti": ".nii", "dicom": ".dcm", "mrc": ".mrc", "fits": ".fits", "tiff": ".tif", "png": ".png"}


def seed_bytes(fmt: str) -> bytes:
    """A small valid file of ``fmt`` written by ldm-med (DICOM: one slice of the synthetic CT series)."""
    import numpy as np

    from ldm_med.volume import Volume

    with tempfile.TemporaryDirectory() as tmp:
        if fmt == "dicom":
            from dicom_synth import write_ct_series

            write_ct_series(Path(tmp) / "s", np.zeros((8, 6, 3), np.int16))
            return sorted((Path(tmp) / "s").iterdir())[0].read_bytes()
        from ldm_med.io.write import save_volume_as

        data = (np.arange(6 * 5 * (1 if fmt == "png" else 4)).reshape(6, 5, -1) % 200).astype(np.float32)
        vol = Volume(data=data, affine=np.diag([1.0, 1.0, 2.0, 1.0]), metadata={"modality": "MR"})
        return Path(save_volume_as(vol, Path(tmp) / f"seed{SUFFIXES[fmt]}")).read_bytes()


def main() -> None:
    import atheris

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=sorted(SUFFIXES), required=True)
    args, libfuzzer_args = parser.parse_known_args()
    os.environ.setdefault("LDM_MED_MAX_BYTES", str(64 << 20))  # the cap harness.check holds readers to

    with atheris.instrument_imports(include=["ldm_med.io"]):
        from ldm_med.io import load_volume
    from harness import check

    work = Path(tempfile.mkdtemp(prefix="ldm-med-atheris-"))
    corpus = work / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(seed_bytes(args.format))
    (work / "input").mkdir()  # alone in its folder: a DICOM file is read with its series' folder
    path = work / "input" / f"input{SUFFIXES[args.format]}"
    def one_input(data: bytes) -> None:
        path.write_bytes(data)
        check(f"{args.format}:load_volume", lambda: load_volume(path), [path, path.parent])

    atheris.Setup([sys.argv[0], *libfuzzer_args, str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
