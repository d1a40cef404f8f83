"""The run's report: ``report.json`` (summary, every series, every skipped file), ``series.csv`` and
``skipped.csv`` in OUT_DIR. Built from the plan and the manifest, so one report covers every rank and
every resumed run. No patient identifiers: paths are relative to IN_DIR and redacted, descriptions
redacted (dropped with ``--anonymize``), source UIDs dropped with ``--anonymize``."""
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

SERIES_COLUMNS = ("index", "key", "status", "reason_code", "reason", "modality", "n_images",
                  "shape", "n_synthesised", "synthesised", "folder", "seconds", "sent")
SKIPPED_COLUMNS = ("path", "reason_code", "reason")


def summary(series: list[dict], skipped: list[dict], wall: float, n_files: int) -> dict:
    status = Counter(s["status"] for s in series)
    refused = Counter(s.get("reason_code") or "other" for s in series if s["status"] == "refused")
    seconds = Counter()
    for s in series:
        for k, v in (s.get("seconds") or {}).items():
            seconds[k] += v
    model = seconds.get("model", 0.0)
    io_s = seconds.get("read", 0.0) + seconds.get("write", 0.0)
    processed = status.get("done", 0) + status.get("complete", 0)
    return {
        "files": n_files,
        "series_found": len(series),
        "repaired": status.get("done", 0),
        "complete": status.get("complete", 0),
        "refused": status.get("refused", 0),
        "refused_by_reason": dict(sorted(refused.items())),
        "failed": status.get("failed", 0),
        "pending": status.get("pending", 0) + status.get("running", 0),
        "skipped_files": len(skipped),
        "skipped_by_reason": dict(sorted(Counter(k["reason_code"] for k in skipped).items())),
        "slices_synthesised": sum(s.get("n_synthesised", 0) for s in series),
        "sent": sum(1 for s in series if (s.get("sent") or {}).get("status") == "ok"),
        "seconds_wall": round(wall, 3),
        "seconds_by_stage": {k: round(v, 3) for k, v in sorted(seconds.items())},
        "io_share_of_model": round(io_s / model, 4) if model else None,
        "series_per_minute": round(60.0 * processed / wall, 3) if wall > 0 else None,
    }


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (json.dumps(row[c]) if isinstance(row.get(c), (list, dict))
                             else row.get(c, "")) for c in columns})
    return buf.getvalue()


def write_report(out_dir: Path, run: dict, series: list[dict], skipped: list[dict],
                 summ: dict) -> Path:
    """Write report.json, series.csv and skipped.csv atomically; returns the JSON path."""
    path = out_dir / "report.json"
    _atomic_text(path, json.dumps({"run": run, "summary": summ, "series": series,
                                   "skipped_files": skipped}, indent=1, sort_keys=True) + "\n")
    _atomic_text(out_dir / "series.csv", _csv(series, SERIES_COLUMNS))
    _atomic_text(out_dir / "skipped.csv", _csv(skipped, SKIPPED_COLUMNS))
    return path


def summary_lines(summ: dict) -> list[str]:
    lines = [f"{summ['series_found']} series in {summ['files']} files: {summ['repaired']} repaired "
             f"({summ['slices_synthesised']} slices synthesised), {summ['complete']} complete, "
             f"{summ['refused']} refused, {summ['failed']} failed"
             + (f", {summ['pending']} not finished" if summ["pending"] else "")]
    if summ["refused_by_reason"]:
        lines.append("refused: " + ", ".join(f"{k} {v}" for k, v in
                                              summ["refused_by_reason"].items()))
    if summ["skipped_by_reason"]:
        lines.append(f"{summ['skipped_files']} files skipped: " + ", ".join(
            f"{k} {v}" for k, v in summ["skipped_by_reason"].items()))
    lines.append(f"time {summ['seconds_wall']:.1f} s"
                 + (f", {summ['series_per_minute']:.2f} series/min"
                    if summ["series_per_minute"] else ""))
    return lines
