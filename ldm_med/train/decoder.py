"""Distilling a small slice decoder from an autoencoder's own (``kind: decoder`` recipes).

The uncertainty map needs every posterior sample decoded (``ldm_med.inpainting.sampling``), and only how
the samples differ from each other: ``D(z_c + d_i) - D(z_c + d_j)``. The autoencoder's decoder spends
most of a ``--samples 8`` reconstruction there. A decoder with a quarter of its channels learns the
teacher's *response to changes of the latent*: on latent slices ``z_c`` of linearly interpolated missing
slices and the residual ``d = z - z_c`` to the true slice's latent (what the diffusion model samples),

    loss = |S(z_c + a d) - S(z_c) - (T(z_c + a d) - T(z_c))|^2 / |T(z_c + a d) - T(z_c)|^2
           + 0.1 |S(z_c + a d) - T(z_c + a d)|^2 / var T(z_c + a d)

with ``a`` uniform in [0.25, 1.5] per slice (the samples spread around the truth's distance). The teacher
is frozen and never changes the latent space, so the shipped denoiser keeps working; the model file
records the teacher's sha256 and reconstruction uses the student only with that autoencoder.

A run folder holds ``config.yaml``, ``model.safetensors`` and ``log.csv`` (step, loss, relative error of
the differences). Like the refiner's, a run is one pass of minutes, without checkpoints.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from ldm_med.checkpoint import MODEL_FILE, load_model, save_model, sha256_file
from ldm_med.config import DecoderRun, Source, to_dict
from ldm_med.errors import InputError
from ldm_med.inpainting.interpolate import fill_missing
from ldm_med.masks import sample_training_mask
from ldm_med.nets.autoencoder import SliceDecoder, pad_to_multiple
from ldm_med.train.data import VolumeStore, expand_sources
from ldm_med.utils import lr_factor, resolve_device

MASKS_PER_VOLUME = 2  # random gap masks drawn per training volume
SCALES = (0.25, 1.5)  # the residual's factor a, uniform
OUTPUT_WEIGHT = 0.1  # weight of matching the teacher's output itself
LOCAL_FLOOR = 0.1  # the local weighting's floor, a share of the mean difference energy


def latent_pairs(teacher, latent_scale: float, sources: tuple[Source, ...], crop: int,
                 rng: np.random.Generator) -> list[tuple[Tensor, Tensor]]:
    """``(z_c, d)`` latent slices ``(Cz, h, w)``: the interpolated missing slices' latents and their
    residuals to the true slices' latents, under random training gap masks (slices smaller than the
    latent crop ``crop`` are left out)."""
    store = VolumeStore(expand_sources(sources), cache=False)
    pairs = []
    with torch.inference_mode():
        for i in range(len(store)):
            volume = store[i]
            if volume.shape[0] < 3:
                continue
            for _ in range(MASKS_PER_VOLUME):
                missing = sample_training_mask(volume.shape[0], rng)
                filled = fill_missing(volume, missing, axis=0, method="linear")
                z, z_c = (_encode(teacher, a[missing], latent_scale) for a in (volume, filled))
                if min(z.shape[-2:]) >= crop:
                    pairs += list(zip(z_c, z - z_c))
    return pairs


def _encode(teacher, slices: np.ndarray, latent_scale: float) -> Tensor:
    x, _ = pad_to_multiple(torch.from_numpy(np.ascontiguousarray(slices))[:, None], teacher.downsample)
    return torch.cat([teacher.encode(s)[0] for s in x.split(32)]) * latent_scale


def draw_batch(pairs, size: int, crop: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """``(z_c, z_c + a d)``, each ``(size, Cz, crop, crop)``, random pairs and crops."""
    base, moved = [], []
    for k in rng.integers(len(pairs), size=size):
        z_c, d = pairs[k]
        y, x = (int(rng.integers(n - crop + 1)) for n in z_c.shape[-2:])
        window = (slice(None), slice(y, y + crop), slice(x, x + crop))
        a = float(rng.uniform(*SCALES))
        base.append(z_c[window])
        moved.append(z_c[window] + a * d[window])
    return torch.stack(base), torch.stack(moved)


def distillation_loss(student_out: Tensor, teacher_out: Tensor) -> tuple[Tensor, float]:
    """``(loss, relative error of the differences)`` for outputs ``(2B, ...)``: base half, moved half.

    The differences' error is weighted by the inverse of the teacher's local difference energy (5x5
    mean, floored at a tenth of the batch mean): the map ranks voxels, so a small spread must be as
    right, relatively, as a large one.
    """
    s0, s1 = student_out.chunk(2)
    t0, t1 = teacher_out.chunk(2)
    dt, ds = t1 - t0, s1 - s0
    energy, err = (dt ** 2).detach(), (ds - dt) ** 2
    mean_energy = energy.mean().clamp_min(1e-12)
    weight = 1.0 / (F.avg_pool2d(energy, 5, stride=1, padding=2, count_include_pad=False)
                    + LOCAL_FLOOR * mean_energy)
    diff = (weight * err).mean() / (weight * energy).mean().clamp_min(1e-12)
    out = ((s1 - t1) ** 2).mean() / t1.var().clamp_min(1e-12)
    return diff + OUTPUT_WEIGHT * out, float(err.detach().mean() / mean_energy)


@torch.no_grad()
def relative_difference_error(student, teacher, pairs, latent_scale: float, device) -> float:
    """``sum |dS - dT|^2 / sum |dT|^2`` over whole validation slices (``a = 1``)."""
    num = den = 0.0
    for z_c, d in pairs:
        z = torch.stack([z_c, z_c + d]).to(device) / latent_scale
        t0, t1 = teacher.decode(z)
        s0, s1 = student.decode(z)
        num += float(((s1 - s0 - (t1 - t0)) ** 2).sum())
        den += float(((t1 - t0) ** 2).sum())
    return num / max(den, 1e-12)


def train_decoder(cfg: DecoderRun, out: str | Path, *, device: str = "auto", progress: bool = True) -> Path:
    """Distil a slice decoder; returns the path of the written ``model.safetensors``."""
    from tqdm import tqdm

    from ldm_med.inpainting.models import DEFAULT_AUTOENCODER

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    dev = resolve_device(device)
    teacher_path = Path(cfg.autoencoder) if cfg.autoencoder else DEFAULT_AUTOENCODER
    loaded = load_model(teacher_path, dev)
    if loaded.kind != "autoencoder":
        raise InputError(f"{loaded.path}: not an autoencoder (kind {loaded.kind})")
    teacher, scale = loaded.model, float(loaded.extra["latent_scale"])
    for name in ("latent_channels", "in_channels"):
        if getattr(cfg.model, name) != getattr(teacher.cfg, name):
            raise InputError(f"model.{name} must be the teacher's ({getattr(teacher.cfg, name)})")
    if cfg.model.downsample != teacher.downsample:
        raise InputError(f"model.channels must have {len(teacher.cfg.channels)} levels, as the teacher's "
                         f"(downsampling {teacher.downsample})")
    torch.manual_seed(cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    crop = cfg.data.crop[0] // teacher.downsample
    pairs = latent_pairs(teacher, scale, cfg.data.sources, crop, rng)
    if not pairs:
        raise InputError(f"decoder recipe: no training slice is as large as data.crop {list(cfg.data.crop)}")
    student = SliceDecoder(cfg.model).to(dev)
    optim = torch.optim.AdamW(student.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas,
                              weight_decay=cfg.optim.weight_decay)
    rows, window, start = [], [], time.perf_counter()
    for step in tqdm(range(cfg.train.steps), desc="decoder", disable=not progress, dynamic_ncols=True):
        factor = lr_factor(step, cfg.train.steps, cfg.optim.warmup_steps, cfg.optim.schedule,
                           cfg.optim.final_lr_fraction)
        for group in optim.param_groups:
            group["lr"] = cfg.optim.lr * factor
        z = torch.cat(draw_batch(pairs, cfg.data.batch_size, crop, rng)).to(dev) / scale
        with torch.no_grad():
            target = teacher.decode(z)
        loss, diff = distillation_loss(student.decode(z), target)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.optim.grad_clip)
        optim.step()
        window.append((float(loss.detach()), diff))
        if cfg.train.log_every and (step + 1) % cfg.train.log_every == 0 or step + 1 == cfg.train.steps:
            rows.append([step + 1, *(f"{v:.6g}" for v in np.mean(window, axis=0))])
            window = []
    student.eval()
    val_pairs = latent_pairs(teacher, scale, cfg.data.validation, crop, np.random.default_rng(1))
    val_error = relative_difference_error(student, teacher, val_pairs, scale, dev) if val_pairs else None
    extra = {"autoencoder_sha256": sha256_file(loaded.path), "latent_scale": scale,
             "train_seconds": round(time.perf_counter() - start, 1),
             "train_relative_difference_error": float(rows[-1][2]) if rows else None,
             "val_relative_difference_error": val_error}
    with open(out / "log.csv", "w", newline="") as f:
        csv.writer(f).writerows([["step", "loss", "relative_difference_error"], *rows])
    return save_model(out / MODEL_FILE, student, kind="decoder", config=to_dict(cfg), extra=extra)
