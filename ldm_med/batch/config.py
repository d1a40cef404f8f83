"""``BatchConfig``: what a batch run does, validated once (``InputError`` -> exit code 2)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldm_med.batch.plan import DEFAULT_MAX_GAP
from ldm_med.errors import InputError
from ldm_med.options import ReconstructOptions

FORMATS = ("dicom", "nifti")


@dataclass(frozen=True)
class BatchConfig:
    """Attributes:
        in_dir: the DICOM tree (read only, never written).
        out_dir: where series folders, the manifest and the report go (not inside ``in_dir``).
        formats: ``dicom`` (derived series) and/or ``nifti`` (volume, mask, uncertainty).
        missing: ``auto`` or a ``--missing`` specification applied to every series.
        options: how to reconstruct (``ldm_med.ReconstructOptions``).
        send: ``ldm_med.batch.send.Destination`` or None.
        workers: threads for reading and writing beside the compute (1: all in turn).
        max_gap: longest run of missing slices that is filled; longer gaps are refused.
        include_complete: write series with nothing missing too.
        overwrite: redo the series of an earlier run in ``out_dir`` (without it, and without ``resume``,
            an ``out_dir`` holding an earlier run is refused: nothing is replaced unasked).
    """

    in_dir: Path
    out_dir: Path
    formats: tuple[str, ...] = FORMATS
    missing: str = "auto"
    options: ReconstructOptions = field(default_factory=ReconstructOptions)
    dry_run: bool = False
    resume: bool = False
    overwrite: bool = False
    anonymize: bool = False
    send: object = None
    workers: int = 1
    max_gap: int = DEFAULT_MAX_GAP
    include_complete: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        in_dir, out_dir = Path(self.in_dir).resolve(), Path(self.out_dir).resolve()
        if not in_dir.is_dir():
            raise InputError(f"{self.in_dir}: " + ("not a folder" if in_dir.exists()
                                                   else "no such folder"))
        if out_dir == in_dir or in_dir in out_dir.parents:
            raise InputError(f"{self.out_dir}: OUT_DIR is inside IN_DIR {self.in_dir}; batch never "
                             "writes into its input: choose a folder outside it")
        if out_dir in in_dir.parents:
            raise InputError(f"{self.out_dir}: OUT_DIR contains IN_DIR {self.in_dir}; its outputs "
                             "would be read as input on the next run: choose a folder beside it")
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"{self.out_dir}: exists and is not a folder")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise InputError(f"--format {','.join(self.formats)}: valid formats are "
                             f"{', '.join(FORMATS)} (comma-separated)")
        if "dicom" not in self.formats and self.send is not None:
            raise InputError("--send needs --format dicom (it sends the derived DICOM series)")
        for name, low in (("workers", 1), ("max_gap", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise InputError(f"--{name.replace('_', '-')} must be an integer >= {low}, "
                                 f"got {value!r}")
        object.__setattr__(self, "in_dir", in_dir)
        object.__setattr__(self, "out_dir", out_dir)
        object.__setattr__(self, "formats", tuple(dict.fromkeys(self.formats)))
