"""Score reconstruction methods against the truth on slices removed on purpose.

For each volume, gap pattern and method: remove slices, reconstruct through ``reconstruct`` (so the
baselines and the model share one code path), and score PSNR/SSIM/MAE on the removed slices only.
Results are rows of a table, written as CSV and markdown.
"""
from __future__ import annotations

import csv
import resource
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ldm_med import metrics
from ldm_med.options import INTERPOLATIONS, METHODS, REFINE_MODES, ReconstructOptions
from ldm_med.pipelines.reconstruct import reconstruct
from ldm_med.volume import Volume

# what ``method_options`` understands: the methods, and ``ldm:<refine mode>`` ablations
EVALUATION_METHODS = METHODS + tuple(f"ldm:{mode}" for mode in REFINE_MODES)


@dataclass
class Row:
    volume: str
    pattern: str
    method: str
    n_missing: int
    psnr: float
    ssim: float
    mae: float
    seconds: float
    peak_rss_mb: float


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def method_options(options: ReconstructOptions, method: str) -> ReconstructOptions:
    """Options for a method name: ``linear``, ``cubic``, ``ldm``, or ``ldm:<refine>`` for an ablation of the
    refiner (``ldm:pretrained``: not fine-tuned on the scan; ``ldm:off``: the diffusion model alone)."""
    base, _, refine = method.partition(":")
    return replace(options, method=base, refine=refine or options.refine)


def evaluate_volume(name: str, volume: Volume, patterns: Iterable[str], methods: Iterable[str],
                    options: ReconstructOptions, seed: int = 0,
                    on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """All (pattern, method) rows for one fully sampled volume."""
    from ldm_med.masks import GAP_PATTERNS

    rows = []
    truth = volume.data
    for pattern in patterns:
        missing = GAP_PATTERNS[pattern](volume.n_slices, np.random.default_rng(seed))
        for method in methods:
            result = reconstruct(volume, missing, replace(method_options(options, method), seed=seed))
            scores = metrics.evaluate(truth, result.volume.data, missing, axis=volume.slice_axis)
            row = Row(name, pattern, method, int(missing.sum()), scores["psnr"], scores["ssim"],
                      scores["mae"], result.seconds, peak_rss_mb())
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def write_csv(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def summary_table(rows: list[Row]) -> str:
    """Markdown: mean PSNR / SSIM / MAE / seconds per (pattern, method) over volumes, and the gain of
    each method over the best plain interpolation on each volume: its mean over volumes and the worst
    volume."""
    patterns = list(dict.fromkeys(r.pattern for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    lines = ["| pattern | method | volumes | PSNR dB | SSIM | MAE | dPSNR vs best baseline | worst volume "
             "| s/volume |", "|---|---|---|---|---|---|---|---|---|"]
    for p in patterns:
        base: dict[str, float] = {}
        for r in rows:
            if r.pattern == p and r.method in INTERPOLATIONS:
                base[r.volume] = max(base.get(r.volume, -np.inf), r.psnr)
        for m in methods:
            rs = [r for r in rows if r.pattern == p and r.method == m]
            gains = [r.psnr - base[r.volume] for r in rs if r.volume in base]
            mean, worst = (np.mean(gains), min(gains)) if gains else (float("nan"), float("nan"))
            lines.append(f"| {p} | {m} | {len(rs)} | {np.mean([r.psnr for r in rs]):.2f} | "
                         f"{np.mean([r.ssim for r in rs]):.4f} | {np.mean([r.mae for r in rs]):.4g} | "
                         f"{mean:+.2f} | {worst:+.2f} | {np.mean([r.seconds for r in rs]):.2f} |")
    return "\n".join(lines)


def per_volume_table(rows: list[Row]) -> str:
    lines = ["| volume | pattern | method | PSNR dB | SSIM | MAE | s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.volume} | {r.pattern} | {r.method} | {r.psnr:.2f} | {r.ssim:.4f} | {r.mae:.4g} | "
              f"{r.seconds:.2f} |" for r in rows]
    return "\n".join(lines)
