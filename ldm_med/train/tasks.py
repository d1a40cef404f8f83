"""What each kind of run trains: networks, optimizers, data, validation, sample grids and export.

A task gives the generic loop (``loop.py``) these pieces:

* ``train_step(step, generator) -> metrics``: draws the step's batch and calls a step function;
* ``validate(batches) -> metrics`` with ``val_loss`` (EMA weights, fixed held-out batches and noise);
* ``sample_grid(path, batches)``: a PNG of what the model currently does;
* ``export(out) -> (network, extra)``: the EMA network and the facts saved with it;
* ``state_dict`` / ``load_state_dict`` for ``--resume``; ``trainables`` for the learning-rate schedule.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ldm_med.config import AutoencoderRun, DiffusionRun
from ldm_med.errors import InputError
from ldm_med.train.data import LATENT_SCALE, RESIDUAL_SCALE, SAMPLES, Batch, TrainingData
from ldm_med.train.distributed import DistContext, broadcast_object, wrap
from ldm_med.train.ema import EMA
from ldm_med.train.logging import save_grid
from ldm_med.train.steps import (
    Precision,
    Trainable,
    adamw,
    autoencoder_step,
    diffusion_step,
    generation_inputs,
    inpainting_inputs,
)


def _trainable(module: nn.Module, ctx: DistContext, precision: Precision, lr: float, betas,
               weight_decay: float, grad_clip: float, ema: EMA | None) -> Trainable:
    optimizer = adamw(module, lr, betas, weight_decay)
    return Trainable(module, wrap(module, ctx), optimizer, precision.grad_scaler(), grad_clip, ema, lr)


def _seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


class AutoencoderTask:
    """KL autoencoder on 2D slices, with a PatchGAN discriminator after ``loss.adv_warmup`` steps."""

    kind = "autoencoder"
    metric_names = ("l1", "kl", "adv", "d_loss", "grad_norm", "val_psnr")

    def __init__(self, cfg: AutoencoderRun, ctx: DistContext) -> None:
        from ldm_med.nets import build_autoencoder, build_discriminator

        self.cfg, self.ctx, dev = cfg, ctx, ctx.device
        self.precision = Precision.resolve(cfg.train.precision, dev)
        opt = cfg.optim
        torch.manual_seed(cfg.train.seed)  # same initial weights on every rank (DDP also broadcasts them)
        ae = build_autoencoder(cfg.model).to(dev)
        self.gen = _trainable(ae, ctx, self.precision, opt.lr, opt.betas, opt.weight_decay, opt.grad_clip,
                              EMA(ae, cfg.ema.decay, cfg.ema.warmup))
        self.disc: Trainable | None = None
        if cfg.loss.adv_weight > 0:
            d = cfg.discriminator
            disc = build_discriminator(cfg.model.spatial_dims, d.channels, d.num_layers,
                                       cfg.model.in_channels).to(dev)
            self.disc = _trainable(disc, ctx, self.precision, d.lr, d.betas, 0.0, opt.grad_clip, None)
        self.data = TrainingData(cfg.data, slabs=False, seed=cfg.train.seed, rank=ctx.rank,
                                 world_size=ctx.world_size)
        self.latent_scale: float | None = None

    @property
    def trainables(self) -> list[Trainable]:
        return [t for t in (self.gen, self.disc) if t is not None]

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        x = self.data.batch(step).x.to(self.ctx.device)
        adversarial = self.disc is not None and step >= self.cfg.loss.adv_warmup
        return autoencoder_step(self.gen, x, self.precision, kl_weight=self.cfg.loss.kl_weight,
                                disc=self.disc if adversarial else None, adv_weight=self.cfg.loss.adv_weight)

    @torch.no_grad()
    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        ema = self.gen.ema.model
        return ema.decode(ema.encode(x)[0])  # posterior mean: deterministic

    @torch.no_grad()
    def validate(self, batches: list[Batch]) -> dict[str, float]:
        """Mean L1 of the EMA autoencoder (latent = posterior mean) and PSNR (normalised range 2)."""
        l1 = sq = 0.0
        for b in batches:
            x = b.x.to(self.ctx.device)
            err = self._reconstruct(x).float() - x
            l1, sq = l1 + float(err.abs().mean()), sq + float(err.square().mean())
        n = len(batches)
        return {"val_loss": l1 / n, "val_psnr": 10 * math.log10(4.0 / max(sq / n, 1e-12))}

    @torch.no_grad()
    def sample_grid(self, path: Path, batches: list[Batch]) -> Path:
        x = (batches[0] if batches else self.data.batch(0, SAMPLES)).x[:8].to(self.ctx.device)
        recon = self._reconstruct(x).float().cpu().numpy()[:, 0]
        x = x.cpu().numpy()[:, 0]
        return save_grid(path, [list(x), list(recon), list(recon - x)], ["input", "reconstruction", "error"],
                         title=f"{path.stem}: EMA autoencoder (posterior mean)")

    @torch.no_grad()
    def estimate_latent_scale(self) -> float:
        """``1 / std(mu)`` of the EMA encoder over ``latent_scale_batches`` training batches."""
        ema = self.gen.ema.model
        total = total_sq = count = 0.0
        for i in range(max(1, self.cfg.latent_scale_batches)):
            x = self.data.batch(i, LATENT_SCALE).x.to(self.ctx.device)
            mu = ema.encode(x)[0].double()
            total, total_sq = total + float(mu.sum()), total_sq + float(mu.square().sum())
            count += mu.numel()
        std = math.sqrt(max(total_sq / count - (total / count) ** 2, 1e-12))
        return 1.0 / std

    def export(self, out: Path) -> tuple[nn.Module, dict[str, Any]]:
        self.latent_scale = self.estimate_latent_scale()
        extra = {"latent_scale": self.latent_scale, "downsample": self.gen.module.downsample}
        return self.gen.ema.model, extra

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.state_dict(), **({"disc": self.disc.state_dict()} if self.disc else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.load_state_dict(state["gen"])
        if self.disc is not None and "disc" in state:
            self.disc.load_state_dict(state["disc"])

    def describe(self) -> str:
        from ldm_med.nets import parameter_count

        return (f"autoencoder {parameter_count(self.gen.module) / 1e6:.2f} M parameters, "
                f"{self.cfg.model.latent_channels} latent channels, downsample {self.cfg.model.downsample}")


class DiffusionTask:
    """Latent denoiser over a frozen autoencoder: ``slice-inpainting`` residuals or ``generation``."""

    kind = "denoiser"
    metric_names = ("grad_norm",)

    def __init__(self, cfg: DiffusionRun, ctx: DistContext) -> None:
        from ldm_med.diffusion.precond import Denoiser
        from ldm_med.diffusion.sde import VPSDE
        from ldm_med.nets import build_denoiser

        self.cfg, self.ctx, dev = cfg, ctx, ctx.device
        self._load_autoencoder()
        self.inpainting = cfg.task == "slice-inpainting"
        if self.inpainting:
            from ldm_med.inpainting.latent import ANCHOR

            if cfg.interpolation != ANCHOR:
                warnings.warn(f"interpolation: {cfg.interpolation} differs from the anchor ldm-med "
                              f"reconstruct uses ({ANCHOR}); the model will see other inputs at inference",
                              RuntimeWarning, stacklevel=2)
        self.class_names = cfg.class_names()
        if self.class_names and cfg.model.num_classes == 0:
            cfg.model.num_classes = len(self.class_names)  # resolved config records it
        if cfg.model.num_classes != len(self.class_names):
            raise InputError(f"model.num_classes is {cfg.model.num_classes} but the sources name "
                             f"{len(self.class_names)} classes {self.class_names} (labels.enabled: "
                             f"{cfg.labels.enabled})")
        self.precision = Precision.resolve(cfg.train.precision, dev)
        self.sde = VPSDE.from_dict(cfg.sde)
        torch.manual_seed(cfg.train.seed)
        net = build_denoiser(cfg.model).to(dev)
        opt = cfg.optim
        self.den = _trainable(net, ctx, self.precision, opt.lr, opt.betas, opt.weight_decay, opt.grad_clip,
                              EMA(net, cfg.ema.decay, cfg.ema.warmup))
        self.precond = Denoiser(self.den.forward, self.sde, cfg.prediction)
        self.ema_precond = Denoiser(self.den.ema.model, self.sde, cfg.prediction)
        self.data = TrainingData(cfg.data, slabs=True, masks=self.inpainting, labels=self.class_names,
                                 seed=cfg.train.seed, rank=ctx.rank, world_size=ctx.world_size)
        if self.inpainting and cfg.residual_scale is None:
            value = self.estimate_residual_scale() if ctx.is_main else None
            cfg.residual_scale = float(broadcast_object(value, ctx))  # resolved config records it
        self._val_cache: list[tuple] | None = None

    def _load_autoencoder(self) -> None:
        """The frozen autoencoder (a model file or run folder), its sha256 and latent_scale."""
        from ldm_med.checkpoint import MODEL_FILE, load_model, sha256_file

        cfg = self.cfg
        if cfg.autoencoder is None:
            raise InputError("diffusion training needs an autoencoder: set `autoencoder:` in the recipe "
                             "or pass --autoencoder PATH")
        if Path(cfg.autoencoder).is_dir():  # a run folder: its model file (the resolved config says so)
            cfg.autoencoder = str(Path(cfg.autoencoder) / MODEL_FILE)
        ae = load_model(cfg.autoencoder, self.ctx.device)
        if ae.kind != "autoencoder" or "latent_scale" not in ae.extra:
            raise InputError(f"{cfg.autoencoder}: not a trained autoencoder file (kind {ae.kind})")
        self.ae_path, self.ae_sha256 = Path(cfg.autoencoder), sha256_file(cfg.autoencoder)
        self.ae = ae.model.requires_grad_(False)
        self.latent_scale = float(ae.extra["latent_scale"])
        ae_cfg = self.ae.cfg
        if cfg.model.in_channels != ae_cfg.latent_channels:
            raise InputError(f"model.in_channels {cfg.model.in_channels} differs from the autoencoder's "
                             f"{ae_cfg.latent_channels} latent channels ({cfg.autoencoder})")
        f = self.ae.downsample
        if any(c % f for c in cfg.data.crop[1:]):
            raise InputError(f"data.crop H, W {list(cfg.data.crop[1:])} must be multiples of the "
                             f"autoencoder's downsampling factor {f}")

    @property
    def trainables(self) -> list[Trainable]:
        return [self.den]

    def _inputs(self, batch: Batch, generator: torch.Generator | None, label_dropout: float):
        """``(target, cond, labels, exclude)`` of a pixel batch."""
        batch = batch.to(self.ctx.device)
        if self.inpainting:
            target, cond, exclude = inpainting_inputs(self.ae, batch.x, batch.missing, self.latent_scale,
                                                      self.cfg.residual_scale, self.cfg.interpolation)
            return target, cond, None, exclude
        target, labels = generation_inputs(self.ae, batch.x, batch.labels, self.latent_scale,
                                           num_classes=self.cfg.model.num_classes,
                                           label_dropout=label_dropout, generator=generator)
        return target, None, labels, None

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        batch = self.data.batch(step)
        target, cond, labels, exclude = self._inputs(batch, generator, self.cfg.labels.dropout)
        return diffusion_step(self.den, self.precond, target, self.precision, cond=cond, labels=labels,
                              exclude=exclude, generator=generator, weighting=self.cfg.loss.weighting,
                              gamma=self.cfg.loss.gamma)

    @torch.no_grad()
    def validate(self, batches: list[Batch]) -> dict[str, float]:
        """Diffusion loss of the EMA denoiser on the held-out batches, with fixed times and noise."""
        from ldm_med.diffusion.losses import diffusion_loss

        if self._val_cache is None:  # the frozen autoencoder makes the inputs constant: encode once
            self._val_cache = [self._inputs(b, None, 0.0) for b in batches]
        total = 0.0
        for i, (target, cond, labels, exclude) in enumerate(self._val_cache):
            with self.precision.autocast():
                loss = diffusion_loss(self.ema_precond, target, cond=cond, labels=labels, mask=exclude,
                                      generator=_seeded_generator(i, self.ctx.device),
                                      weighting=self.cfg.loss.weighting, gamma=self.cfg.loss.gamma)
            total += float(loss)
        return {"val_loss": total / max(1, len(self._val_cache))}

    @torch.no_grad()
    def estimate_residual_scale(self) -> float:
        from ldm_med.inpainting.latent import estimate_residual_scale

        batches = [self.data.batch(i, RESIDUAL_SCALE).to(self.ctx.device)
                   for i in range(max(1, self.cfg.residual_scale_batches))]
        return estimate_residual_scale(self.ae, [(b.x, b.missing) for b in batches], self.latent_scale,
                                       self.cfg.interpolation)

    def sample_grid(self, path: Path, batches: list[Batch]) -> Path:
        batch = batches[0] if batches else self.data.batch(0, SAMPLES)
        if self.inpainting:
            return self._inpainting_grid(path, batch)
        return self._generation_grid(path, batch)

    def _inpainting_grid(self, path: Path, batch: Batch) -> Path:
        """Truth / interpolation anchor / model on one slab: a through-plane cut and a few missing slices."""
        from ldm_med.inpainting.interpolate import fill_missing
        from ldm_med.inpainting.models import InpaintingModel
        from ldm_med.inpainting.sampling import SamplingOptions, sample_corrections

        truth, missing = batch.x[0, 0].numpy(), batch.missing[0].numpy()
        anchor = fill_missing(truth, missing, axis=0, method=self.cfg.interpolation)
        model = InpaintingModel(self.ae, self.ema_precond, self.sde, self.latent_scale,
                                self.cfg.residual_scale, self.ae_path)
        f = self.ae.downsample
        roi = (truth.shape[0], truth.shape[1] // f, truth.shape[2] // f)  # the whole slab, one window
        opts = SamplingOptions(sampler=self.cfg.sampler.name, steps=self.cfg.sampler.steps, samples=1,
                               roi=roi, window_batch=1)
        result = anchor.copy()
        if missing.any():
            result[missing] += sample_corrections(model, anchor, missing, opts, self.ctx.device)[0]
        cut = truth.shape[1] // 2
        gaps = np.flatnonzero(missing)
        picks = np.linspace(0, len(gaps) - 1, min(3, len(gaps))).round().astype(int)  # spread out
        shown = sorted({int(gaps[i]) for i in picks})
        rows = [[vol[:, cut, :]] + [vol[k] for k in shown] for vol in (truth, anchor, result)]
        cols = [f"through-plane (row {cut})"] + [f"slice {k} (missing)" for k in shown]
        return save_grid(path, rows, ["truth", self.cfg.interpolation, "model"], cols,
                         title=f"{path.stem}: missing slices {np.flatnonzero(missing).tolist()}")

    @torch.no_grad()
    def _generation_grid(self, path: Path, batch: Batch) -> Path:
        from ldm_med.diffusion.samplers import sample

        dev, n = self.ctx.device, 4
        d, h, w = self.cfg.data.crop
        f = self.ae.downsample
        names = self.class_names
        labels = torch.arange(n, device=dev) % len(names) if names else None
        denoise = (lambda x, t: self.ema_precond(x, t, labels=labels))  # noqa: E731
        shape = (n, self.cfg.model.in_channels, d, h // f, w // f)
        z = sample(self.cfg.sampler.name, denoise, shape, self.sde, self.cfg.sampler.steps,
                   generator=_seeded_generator(0, dev), device=dev)
        vols = self.ae.decode_volume(z / self.latent_scale).float().cpu().numpy()[:, 0]  # (n, D, H, W)
        real = batch.x[:n, 0].numpy()
        rows = [[v[d // 2] for v in vols], [v[:, h // 2, :] for v in vols],
                [v[d // 2] for v in real], [v[:, h // 2, :] for v in real]]
        cols = [names[int(k)] for k in labels] if names else None
        titles = ["sample slice", "sample through-plane", "data slice", "data through-plane"]
        return save_grid(path, rows, titles, cols, title=f"{path.stem}: EMA denoiser samples")

    def export(self, out: Path) -> tuple[nn.Module, dict[str, Any]]:
        from ldm_med.checkpoint import autoencoder_reference

        extra: dict[str, Any] = {"task": self.cfg.task, "sde": self.sde.to_dict(),
                                 "prediction": self.cfg.prediction, "latent_scale": self.latent_scale,
                                 "autoencoder": autoencoder_reference(self.ae_path, out, self.ae_sha256)}
        if self.inpainting:
            extra.update(residual_scale=self.cfg.residual_scale, interpolation=self.cfg.interpolation)
        if self.class_names:
            extra.update(label_names=self.class_names, null_label=len(self.class_names))
        return self.den.ema.model, extra

    def state_dict(self) -> dict[str, Any]:
        return {"den": self.den.state_dict(), "autoencoder_sha256": self.ae_sha256}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("autoencoder_sha256") != self.ae_sha256:
            raise InputError(f"{self.ae_path} is not the autoencoder this run was trained with (sha256 "
                             "differs); resume with the original autoencoder file")
        self.den.load_state_dict(state["den"])

    def describe(self) -> str:
        from ldm_med.nets import parameter_count

        size = parameter_count(self.den.module) / 1e6
        return (f"{self.cfg.task} denoiser ({self.cfg.model.arch}) {size:.2f} M parameters; "
                f"latent_scale {self.latent_scale:.4g}"
                + (f", residual_scale {self.cfg.residual_scale:.4g}" if self.inpainting else ""))


def build_task(cfg: AutoencoderRun | DiffusionRun, ctx: DistContext) -> AutoencoderTask | DiffusionTask:
    return AutoencoderTask(cfg, ctx) if isinstance(cfg, AutoencoderRun) else DiffusionTask(cfg, ctx)


__all__ = ["AutoencoderTask", "DiffusionTask", "build_task"]
