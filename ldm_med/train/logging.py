"""What a run writes for people: ``log.csv``, TensorBoard events (when importable), ``loss.png`` and
sample grids ``samples/step_NNNNNN.png``. Only rank 0 writes (``enabled``)."""
from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

BASE_FIELDS = ("step", "loss", "lr", "time", "val_loss")


class RunLog:
    """CSV (+ TensorBoard) scalars of one run.

    Args:
        out: the run folder.
        fields: extra metric columns after ``step, loss, lr, time, val_loss``.
        resume_step: when resuming, rows after this step (logged after the last checkpoint, to be
            redone) are dropped.
        enabled: False on ranks other than 0.
    """

    def __init__(self, out: Path, fields: Sequence[str], resume_step: int | None = None,
                 enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(out) / "log.csv"
        self.fields = list(BASE_FIELDS) + [f for f in fields if f not in BASE_FIELDS]
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        rows = self.read() if resume_step is not None and self.path.exists() else []
        rows = [r for r in rows if int(float(r["step"])) <= (resume_step or 0)]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                pass
            else:
                purge = resume_step + 1 if resume_step else None  # drop events logged after the checkpoint
                self.tb = SummaryWriter(str(Path(out) / "tb"), purge_step=purge)

    def read(self) -> list[dict[str, str]]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {k: _fmt(metrics.get(k)) for k in self.fields}
        row["step"] = str(step)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for key, value in metrics.items():
                if key not in ("step", "time") and value is not None and math.isfinite(value):
                    self.tb.add_scalar(_tag(key), value, step)
            self.tb.flush()

    def plot(self, path: Path | None = None) -> Path | None:
        """``loss.png``: training loss (and validation loss) against step, log scale."""
        if not self.enabled:
            return None
        path = path or self.path.with_name("loss.png")
        rows = self.read()
        steps = np.array([float(r["step"]) for r in rows])
        if not len(steps):
            return None
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for key, style in (("loss", "-"), ("val_loss", "o-")):
            vals = np.array([float(r[key]) if r.get(key) else np.nan for r in rows])
            ok = np.isfinite(vals)
            if ok.any():
                ax.plot(steps[ok], vals[ok], style, label=key.replace("_", " "), markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if all(float(r["loss"]) > 0 for r in rows if r.get("loss")):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _tag(key: str) -> str:
    """TensorBoard tag: ``lr``, ``val/<metric>`` or ``train/<metric>``."""
    if key == "lr":
        return key
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import matplotlib.pyplot as plt
    return plt


def save_grid(path: Path, rows: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str],
              col_titles: Sequence[str] | None = None, title: str = "",
              vrange: tuple[float, float] = (-1, 1)) -> Path:
    """A PNG grid of 2D images (rows x columns), grey, shared intensity range ``vrange``."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.8 * n_cols + 0.6, 1.8 * n_rows + 0.4), dpi=100,
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                ax.imshow(np.asarray(row[j], dtype=np.float32), cmap="gray", vmin=vrange[0], vmax=vrange[1],
                          interpolation="nearest", aspect="auto")
            else:
                ax.axis("off")
            if j == 0:
                ax.set_ylabel(row_titles[i], fontsize=8)
            if i == 0 and col_titles is not None and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
