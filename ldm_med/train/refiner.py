"""Pretraining of the slice-gap refiner (``kind: refiner`` recipes).

The refiner learns the through-plane gap problem where the truth is known: on the through-plane planes
of fully sampled training volumes, with random gap masks (``masks.sample_training_mask``). It is small
(tens of thousands of weights) and trains in minutes on a CPU, so the run is one pass without
checkpoints or ``--resume``; reconstruction then fine-tunes it on each scan (``ldm_med.inpainting.refine``).

A run folder holds ``config.yaml``, ``model.safetensors`` (``load_model`` / ``ldm-med train export``) and
``log.csv`` (step, loss averaged over ``train.log_every`` steps).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import torch
import yaml

from ldm_med.checkpoint import MODEL_FILE, save_model
from ldm_med.config import RefinerRun, to_dict
from ldm_med.inpainting.refine import AdaptOptions, fit, through_planes
from ldm_med.masks import sample_training_mask
from ldm_med.nets.refiner import SliceGapRefiner
from ldm_med.train.data import VolumeStore, expand_sources
from ldm_med.train.tasks import init_into, load_init
from ldm_med.utils import resolve_device


def training_planes(cfg: RefinerRun) -> list[torch.Tensor]:
    """Both through-plane stacks ``(N, A, L)`` of every training volume (normalised, slices first)."""
    store = VolumeStore(expand_sources(cfg.data.sources), cache=False)
    planes = []
    for i in range(len(store)):
        planes += [p.contiguous() for p in through_planes(torch.from_numpy(store[i])) if p.shape[-1] >= 3]
    return planes


def train_refiner(cfg: RefinerRun, out: str | Path, *, device: str = "auto", progress: bool = True) -> Path:
    """Pretrain a refiner; returns the path of the written ``model.safetensors``."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    torch.manual_seed(cfg.train.seed)
    dev = resolve_device(device)
    net = SliceGapRefiner(cfg.model.channels, cfg.model.depth)
    if cfg.train.init:
        init_into(net, load_init(cfg.train.init, "refiner"), cfg.train.init)
    net = net.to(dev)
    planes = training_planes(cfg)
    opts = AdaptOptions(steps=cfg.train.steps, batch_size=cfg.data.batch_size, crop=tuple(cfg.data.crop),
                        lr=cfg.optim.lr, seed=cfg.train.seed, schedule=cfg.optim.schedule,
                        final_lr_fraction=cfg.optim.final_lr_fraction)
    start = time.perf_counter()
    with tqdm(total=opts.steps, desc="refiner", disable=not progress, dynamic_ncols=True) as bar:
        losses = fit(net, planes, sample_training_mask, opts, dev,
                     progress=lambda _s, done, _t: bar.update(1) if done else None)
    seconds = time.perf_counter() - start
    every = max(1, cfg.train.log_every)
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss"])
        for s in range(0, len(losses), every):
            chunk = losses[s:s + every]
            writer.writerow([s + len(chunk), f"{sum(chunk) / len(chunk):.6g}"])
    tail = losses[-min(len(losses), 100):]
    extra = {"train_seconds": round(seconds, 1), "final_loss": sum(tail) / len(tail),
             "planes": sum(p.shape[0] for p in planes)}
    return save_model(out / MODEL_FILE, net, kind="refiner", config=to_dict(cfg), extra=extra)
