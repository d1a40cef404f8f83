"""Batch processing of DICOM folder trees (``ldm-med batch IN_DIR OUT_DIR``).

    from ldm_med.batch import BatchConfig, run_batch
    code = run_batch(BatchConfig(in_dir, out_dir, options=ldm_med.ReconstructOptions(...)))

Modules, in the order a run uses them:

* ``plan``: discovery (the io layer's header-first scan) and a decision per series;
* ``shard``: torchrun ranks, the plan shared from rank 0, a balanced share of series per rank;
* ``runner``: read -> reconstruct (``ldm_med.reconstruct``) -> write -> send, per series, with the
  manifest (``manifest``: SQLite in OUT_DIR) for resume and atomic folder renames;
* ``derived``: derived DICOM series; ``anonymize``: PS3.15 basic profile; ``send``: C-STORE;
* ``report``: report.json, series.csv, skipped.csv and the summary.
"""
from __future__ import annotations

from ldm_med.batch.config import FORMATS, BatchConfig
from ldm_med.batch.runner import Terminated, run_batch

__all__ = ["FORMATS", "BatchConfig", "Terminated", "run_batch"]
