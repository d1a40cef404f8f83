"""The training loop, the same for every task: seeds, learning-rate schedule, logging, validation, sample
grids, checkpoints, resume, and the replica check under DDP.

A run folder holds::

    config.yaml          the resolved recipe
    state.safetensors    everything --resume needs (weights, EMA, optimizers, grad scalers, step)
    model.safetensors    the EMA network with its config and facts (load_model, ldm-med train export)
    log.csv, loss.png    scalars (step, loss, lr, time, val_loss, ...) and their curve
    samples/step_N.png   sample grids;  tb/  TensorBoard events (when tensorboard is installed)
    summary.json         written at the end: steps, time, last metrics, per-rank weight digests

Determinism: step ``s`` seeds the global torch RNG and the step's ``torch.Generator`` from
``(seed, s, rank)`` and draws its batch from ``(seed, s, rank)`` too (``data.py``), so a run resumed from
its checkpoint at step ``k`` takes exactly the steps ``k, k+1, ...`` the uninterrupted run takes.
Ctrl-C and SIGTERM end a single-process run at a step boundary with a checkpoint (``stopping.py``).
"""
from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ldm_med.checkpoint import MODEL_FILE, STATE_FILE, load_state, save_model, save_state
from ldm_med.config import AutoencoderRun, DiffusionRun, to_dict
from ldm_med.errors import InputError
from ldm_med.train.distributed import (
    DistContext,
    barrier,
    gather_object,
    init_distributed,
    shutdown,
    weights_digest,
)
from ldm_med.train.logging import RunLog
from ldm_med.train.resolve import resolve
from ldm_med.train.stopping import StopRequests
from ldm_med.train.tasks import build_task, init_weights
from ldm_med.utils import lr_factor


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last checkpoint is kept."""


@dataclass
class TrainResult:
    """Where a run ended."""

    out: Path
    step: int
    model_path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of training step ``step`` on ``rank`` (global RNG and the step's generator)."""
    return int(np.random.SeedSequence([seed, 7919, step, rank]).generate_state(1)[0])


def train(cfg: AutoencoderRun | DiffusionRun, out: str | Path, *, device: str = "auto", resume: bool = False,
          stop_at: int | None = None, progress: bool = True) -> TrainResult:
    """Train (or continue) a run; under ``torchrun`` each process calls this.

    Args:
        cfg: the recipe (for ``resume``: normally the one embedded in the run's state, see the CLI).
        out: the run folder.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (one process) or ``auto``/``cuda``/``cpu`` (torchrun).
        resume: continue from ``out/state.safetensors``.
        stop_at: stop (with a checkpoint) after this step, as if interrupted; the learning-rate schedule
            still follows ``cfg.train.steps``.
        progress: show a progress bar (rank 0).
    """
    ctx = init_distributed(device)
    result = _run(cfg, Path(out), ctx, resume, stop_at, progress)
    shutdown(ctx)
    return result


def _say(ctx: DistContext, message: str) -> None:
    if ctx.is_main:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stdout)


def _start(cfg, out: Path, ctx: DistContext, resume: bool):
    """Resolve the recipe and build the task, restored from ``out`` when resuming.

    Returns ``(resolved recipe, task, first step, seconds so far)``.
    """
    state_path = out / STATE_FILE
    saved = None
    if resume:
        if not state_path.is_file():
            raise InputError(f"{out}: nothing to resume (no {STATE_FILE}); start the run without --resume")
        saved, _, _ = load_state(state_path)
    elif state_path.exists():
        raise InputError(f"{out} already holds a run ({STATE_FILE}); pass --resume to continue it, "
                         "or choose another --out")
    cfg = resolve(cfg, ctx)
    task = build_task(cfg, ctx)
    if saved is None:
        if cfg.train.init:
            init_weights(task, cfg.train.init)
        return cfg, task, 0, 0.0
    task.load_state_dict(saved["task"])
    return cfg, task, int(saved["step"]), float(saved.get("elapsed", 0.0))


def _train_step(task, cfg, step: int, ctx: DistContext) -> tuple[dict[str, float], float]:
    """Seed, set the learning rate, take the step; ``(metrics, lr)``."""
    seed = step_seed(cfg.train.seed, step, ctx.rank)
    torch.manual_seed(seed)
    generator = torch.Generator(device=ctx.device).manual_seed(seed)
    o = cfg.optim
    factor = lr_factor(step, cfg.train.steps, o.warmup_steps, o.schedule, o.final_lr_fraction)
    lr = [trainable.set_lr_factor(factor) for trainable in task.trainables][0]
    metrics = task.train_step(step, generator)
    if not math.isfinite(metrics["loss"]):
        raise TrainingDiverged(f"loss is {metrics['loss']} at step {step + 1}; the last checkpoint is kept: "
                               "lower optim.lr, raise optim.warmup_steps or use train.precision: fp32")
    return metrics, lr


def _mean(window: dict[str, list[float]]) -> dict[str, float]:
    return {k: float(np.nanmean(v)) if not all(math.isnan(x) for x in v) else math.nan
            for k, v in window.items()}


def _run(cfg, out: Path, ctx: DistContext, resume: bool, stop_at: int | None, progress: bool) -> TrainResult:
    from tqdm import tqdm

    cfg, task, start, elapsed0 = _start(cfg, out, ctx, resume)
    cfg_dict = to_dict(cfg)
    t = cfg.train
    end = t.steps if stop_at is None else min(stop_at, t.steps)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
    _say(ctx, f"ldm-med train {cfg.kind}: {task.describe()}")
    _say(ctx, f"  data: {task.data.n_train_total} training volumes ({len(task.data.train)} on this rank), "
              f"{len(task.data.val)} held out; device {ctx.device}, {ctx.world_size} process(es), "
              f"precision {task.precision.name}; run folder {out}")
    if cfg.train.init and not resume:
        _say(ctx, f"  weights and EMA start from {cfg.train.init}")
    if start >= end:
        _say(ctx, f"  already at step {start} of {end}: nothing to do")
        return TrainResult(out, start, out / MODEL_FILE)

    log = RunLog(out, task.metric_names, resume_step=start if resume else None, enabled=ctx.is_main)
    val_batches = task.data.validation_batches() if ctx.is_main else []
    bar = tqdm(total=end, initial=start, disable=not (ctx.is_main and progress), desc=f"train {cfg.kind}",
               unit="step", dynamic_ncols=True)
    window: dict[str, list[float]] = defaultdict(list)
    row: dict[str, float] = {}
    extra: dict[str, Any] = {}
    t0 = time.perf_counter()
    with StopRequests(enabled=ctx.world_size == 1) as stops:
        try:
            for step in range(start, end):
                metrics, lr = _train_step(task, cfg, step, ctx)
                for key, value in metrics.items():
                    window[key].append(value)
                done = step + 1
                last, validate = done == end, bool(val_batches) and (done == end or _every(done, t.val_every))
                if last or validate or _every(done, t.log_every):
                    row = _mean(window)
                    window.clear()
                    if validate:
                        row.update(task.validate(val_batches))
                    row.update(lr=lr, time=elapsed0 + time.perf_counter() - t0)
                    log.write(done, row)
                    bar.set_postfix({k: f"{row[k]:.4g}" for k in ("loss", "val_loss") if k in row},
                                    refresh=False)
                if ctx.is_main and t.sample_every and (last or _every(done, t.sample_every)):
                    task.sample_grid(out / "samples" / f"step_{done:06d}.png", val_batches)
                    log.plot()
                stopping = stops.requested is not None and not last
                if last or stopping or _every(done, t.ckpt_every):
                    extra = _save(task, cfg_dict, out, done, elapsed0 + time.perf_counter() - t0, ctx)
                bar.update(1)
                if stopping:
                    _say(ctx, _stopped_line(stops.requested, done, end, cfg.kind, out))
                    stops.stop()
        finally:
            bar.close()
            log.close()
    log.plot()
    result = TrainResult(out, end, out / MODEL_FILE, row, extra)
    _finish(cfg, task, result, elapsed0 + time.perf_counter() - t0, ctx)
    return result


def _finish(cfg, task, result: TrainResult, seconds: float, ctx: DistContext) -> None:
    """Gather every rank's weight digests; rank 0 writes ``summary.json`` and the closing line."""
    trained = task.trainables[0]
    mine = {"model": weights_digest(trained.module), "ema": weights_digest(trained.ema.model)}
    digests = gather_object(mine, ctx)
    if not ctx.is_main:
        return
    _write_summary(result.out, cfg, task, result, digests, seconds, ctx)
    if len({d["model"] for d in digests}) > 1:
        _say(ctx, "WARNING: the ranks ended with different weights (see summary.json)")
    _say(ctx, f"  step {result.step}: loss {result.metrics.get('loss', math.nan):.4g}"
              + (f", val_loss {result.metrics['val_loss']:.4g}" if "val_loss" in result.metrics else "")
              + f"; model: {result.model_path}")


def _stopped_line(signum: int, done: int, end: int, kind: str, out: Path) -> str:
    return (f"  stopped by {signal.Signals(signum).name} after step {done} of {end}; checkpoint written: "
            f"continue with `ldm-med train {kind} --out {out} --resume`")


def _every(done: int, every: int) -> bool:
    return every > 0 and done % every == 0


def _save(task, cfg_dict: dict[str, Any], out: Path, done: int, elapsed: float, ctx: DistContext) -> dict:
    """Rank 0 writes the training state and the EMA model file; every rank waits."""
    extra: dict[str, Any] = {}
    if ctx.is_main:
        save_state(out / STATE_FILE, {"step": done, "elapsed": elapsed, "world_size": ctx.world_size,
                                      "task": task.state_dict()}, config=cfg_dict)
        model, extra = task.export(out)
        extra["step"] = done
        save_model(out / MODEL_FILE, model, kind=task.kind, config=cfg_dict, extra=extra)
    barrier(ctx)
    return extra


def _write_summary(out: Path, cfg, task, result: TrainResult, digests: list[dict[str, str]], seconds: float,
                   ctx: DistContext) -> None:
    summary = {
        "kind": cfg.kind, "task": getattr(cfg, "task", None), "steps": result.step,
        "seconds": round(seconds, 2),
        "world_size": ctx.world_size, "device": str(ctx.device), "precision": task.precision.name,
        "last": {k: v for k, v in result.metrics.items() if math.isfinite(v)},
        "extra": result.extra, "model": MODEL_FILE, "replica_digests": digests,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
