"""Fuzz tests: the readers, the --missing parser, checkpoint and recipe loading under hostile input.

Quick by default (a few hundred inputs in all); ``python bench/fuzz.py --inputs 10000`` runs the long part.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "io"))

from harness import CAP  # noqa: E402


@pytest.fixture(autouse=True)
def _allocation_cap(monkeypatch):
    monkeypatch.setenv("LDM_MED_MAX_BYTES", str(CAP))
