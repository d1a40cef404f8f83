"""--send: C-STORE to a real Orthanc started here on localhost (skipped when it is not installed)."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from conftest import run_cli

from ldm_med.batch.send import Destination, send_series

ORTHANC = "/usr/sbin/Orthanc"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def orthanc(tmp_path):
    binary = ORTHANC if Path(ORTHANC).exists() else shutil.which("Orthanc")
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc)")
    http, dicom = _free_port(), _free_port()
    store = tmp_path / "orthanc"
    store.mkdir()
    cfg = tmp_path / "orthanc.json"
    cfg.write_text(json.dumps({"Name": "ldm-med-test", "StorageDirectory": str(store),
                               "IndexDirectory": str(store), "HttpPort": http, "DicomPort": dicom,
                               "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
                               "AuthenticationEnabled": False, "Plugins": []}))
    proc = subprocess.Popen([binary, str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(url + "/system")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("Orthanc did not start")
                time.sleep(0.2)
        yield {"url": url, "port": dicom}
    finally:
        proc.terminate()  # our own process, by its handle
        proc.wait(timeout=30)


def test_series_arrive_in_orthanc_under_the_source_study(orthanc, tree, tmp_path):
    out = tmp_path / "out"
    src = Path(tree["root"]) / "oblique"
    assert run_cli(src, out, "--method", "linear", "--format", "dicom",
                   "--send", f"ORTHANC@127.0.0.1:{orthanc['port']}", "-q") == 0
    (rec,) = json.loads((out / "report.json").read_text())["series"]
    assert rec["sent"]["status"] == "ok" and rec["sent"]["instances"] == 12
    found = _get(orthanc["url"] + "/tools/find", {"Level": "Series", "Expand": True,
                                                  "Query": {"SeriesInstanceUID":
                                                            rec["derived_series_uid"]}})
    assert len(found) == 1 and len(found[0]["Instances"]) == 12
    study = _get(orthanc["url"] + f"/studies/{found[0]['ParentStudy']}")
    source = pydicom.dcmread(next(src.glob("*.dcm")))
    assert study["MainDicomTags"]["StudyInstanceUID"] == source.StudyInstanceUID
    assert found[0]["MainDicomTags"]["SeriesDescription"].startswith("ldm-med")


def test_unreachable_node_is_retried_then_reported(tree, linear_run):
    files = sorted((linear_run["out"] / linear_run["by_folder"]["oblique"]["folder"] /
                    "dicom").glob("*.dcm"))
    outcome = send_series(Destination("NOBODY", "127.0.0.1", _free_port()), files, retries=2,
                          timeout=2, backoff=0.01)
    assert outcome["status"] == "failed" and outcome["attempts"] == 3
    assert outcome["instances"] == 0 and outcome["errors"]
