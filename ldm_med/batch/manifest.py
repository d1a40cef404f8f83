"""The run's manifest: an SQLite database in OUT_DIR that every rank (and every resumed run) shares.

One row per series key: its status (``running``, ``done``, ``complete``, ``refused``, ``failed``), the
rank and process that last touched it, and its report record (JSON). A ``meta`` table holds the run's
settings and the anonymisation salt. A series counts as finished only when its row says so *and* its
folder exists: the folder is renamed into place before the row is written, so a run killed between
the two redoes that series. Writes are short transactions with a generous busy timeout, so several
ranks on one filesystem can share the file.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

FINISHED = ("done", "complete", "refused")


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=120, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 120000")
        self.lock = threading.RLock()  # one connection, shared by the writer threads
        with self._tx():
            self.db.execute("CREATE TABLE IF NOT EXISTS series (key TEXT PRIMARY KEY, "
                            "status TEXT NOT NULL, rank INTEGER, pid INTEGER, record TEXT, "
                            "updated REAL)")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")

    def _tx(self):
        db, lock = self.db, self.lock

        class _T:
            def __enter__(self_inner):
                lock.acquire()
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, *_):
                try:
                    db.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    lock.release()

        return _T()

    def meta(self, name: str, default: str | None = None) -> str | None:
        """A meta value; ``default`` is stored (first writer wins) when there is none."""
        with self._tx():
            row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
            if row is None and default is not None:
                self.db.execute("INSERT INTO meta VALUES (?, ?)", (name, default))
                return default
        return None if row is None else row[0]

    def set_meta(self, name: str, value: str) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def salt(self) -> str:
        return self.meta("anonymize_salt", secrets.token_hex(16)) or ""

    def set(self, key: str, status: str, record: dict | None, rank: int = 0) -> None:
        text = None if record is None else json.dumps(record, sort_keys=True)
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?, ?)",
                            (key, status, rank, os.getpid(), text, time.time()))

    def get(self, key: str) -> tuple[str, dict | None] | None:
        with self.lock:
            row = self.db.execute("SELECT status, record FROM series WHERE key = ?",
                                  (key,)).fetchone()
        if row is None:
            return None
        return row[0], (json.loads(row[1]) if row[1] else None)

    def records(self) -> dict[str, tuple[str, dict | None]]:
        with self.lock:
            rows = self.db.execute("SELECT key, status, record FROM series").fetchall()
        return {k: (s, json.loads(r) if r else None) for k, s, r in rows}

    def close(self) -> None:
        self.db.close()
