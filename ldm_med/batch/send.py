"""C-STORE of a derived series to a DICOM node (``--send AET@HOST:PORT``), with retries."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from ldm_med.errors import InputError

_DEST = re.compile(r"^([ -~]{1,16})@([A-Za-z0-9_.:\-\[\]]+):(\d{1,5})$")
CALLING_AET = "LDM-MED"


@dataclass(frozen=True)
class Destination:
    aet: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        m = _DEST.match(text.strip())
        if not m or not 0 < int(m.group(3)) < 65536 or "\\" in m.group(1):
            raise InputError(f"--send {text!r}: expected AET@HOST:PORT, e.g. ORTHANC@localhost:4242 "
                             "(AE title of at most 16 characters)")
        return cls(m.group(1).strip(), m.group(2).strip("[]"), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def _store_once(dest: Destination, paths: list[Path], timeout: float) -> tuple[int, list[str]]:
    """One association: (instances stored, failures)."""
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=CALLING_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop, [str(datasets[0].file_meta.TransferSyntaxUID)])
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.aet)
    if not assoc.is_established:
        return 0, [f"association with {dest} {'rejected' if assoc.is_rejected else 'failed'}"]
    stored, failures = 0, []
    try:
        for path, ds in zip(paths, datasets):
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is not None and (code == 0 or 0xB000 <= code <= 0xBFFF):
                stored += 1
            else:
                failures.append(f"{path.name}: C-STORE status "
                                f"{'none' if code is None else hex(code)}")
    finally:
        assoc.release()
    return stored, failures


def send_series(dest: Destination, paths: list[Path], retries: int = 3,
                timeout: float = 30.0, backoff: float = 1.0) -> dict:
    """Store ``paths`` at ``dest``; failed instances are retried up to ``retries`` more times.

    Returns the outcome for the report: status ``ok`` or ``failed``, instances, attempts, errors.
    """
    todo, attempts, errors, stored = list(paths), 0, [], 0
    while todo and attempts <= retries:
        if attempts:
            time.sleep(backoff * 2 ** (attempts - 1))
        attempts += 1
        try:
            n, failures = _store_once(dest, todo, timeout)
        except Exception as err:  # noqa: BLE001 - network errors: retried, then reported
            n, failures = 0, [f"{type(err).__name__}: {err}"]
        if not failures:
            stored += len(todo)
            todo = []
            break
        errors = failures
        if n == len(todo) - len(failures):  # some stored: retry only the failed ones
            failed = {f.split(":")[0] for f in failures}
            stored += n
            todo = [p for p in todo if p.name in failed] or todo
    return {"status": "failed" if todo else "ok", "destination": str(dest),
            "instances": stored, "attempts": attempts, "errors": errors[:5] if todo else []}
