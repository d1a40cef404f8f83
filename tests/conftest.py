"""Shared test setup.

One torch thread per test process: the suite runs as two xdist workers on two cores, and OpenMP
threads waiting for a busy core stall every small op (measured: 13 s instead of 65 s for tests/nets).
"""
from __future__ import annotations

import torch

torch.set_num_threads(1)
