"""Latent denoiser tasks over a frozen autoencoder: ``slice-inpainting`` residuals and ``generation``.

Both take a resolved recipe (``resolve.py``: autoencoder file, class count and residual scale settled)
and only read it. They share the network, the EMA, validation, export and resume
(``_LatentDenoiserTask``); they differ in what a pixel batch becomes (``inputs``) and in the sample grid.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ldm_med.config import DiffusionRun
from ldm_med.errors import InputError
from ldm_med.train.data import SAMPLES, Batch, TrainingData
from ldm_med.train.distributed import DistContext
from ldm_med.train.ema import EMA
from ldm_med.train.logging import save_grid
from ldm_med.train.steps import (
    Precision,
    Trainable,
    diffusion_step,
    generation_inputs,
    inpainting_inputs,
)
from ldm_med.train.tasks import make_trainable, seeded_generator


def load_frozen_autoencoder(cfg: DiffusionRun, device: torch.device) -> tuple[nn.Module, float]:
    """The recipe's autoencoder (frozen) and its ``latent_scale``, checked against the denoiser."""
    from ldm_med.checkpoint import load_model

    ae = load_model(cfg.autoencoder, device)
    if ae.kind != "autoencoder" or "latent_scale" not in ae.extra:
        raise InputError(f"{cfg.autoencoder}: not a trained autoencoder file (kind {ae.kind})")
    model = ae.model.requires_grad_(False)
    if cfg.model.in_channels != model.cfg.latent_channels:
        raise InputError(f"model.in_channels {cfg.model.in_channels} differs from the autoencoder's "
                         f"{model.cfg.latent_channels} latent channels ({cfg.autoencoder})")
    f = model.downsample
    if any(c % f for c in cfg.data.crop[1:]):
        raise InputError(f"data.crop H, W {list(cfg.data.crop[1:])} must be multiples of the "
                         f"autoencoder's downsampling factor {f}")
    return model, float(ae.extra["latent_scale"])


class _LatentDenoiserTask:
    """What both denoiser tasks share; subclasses define ``inputs`` and ``sample_grid``."""

    kind = "denoiser"
    metric_names = ("grad_norm",)
    masks = False  # whether training batches carry slice masks

    def __init__(self, cfg: DiffusionRun, ctx: DistContext) -> None:
        from ldm_med.checkpoint import sha256_file
        from ldm_med.diffusion.precond import Denoiser
        from ldm_med.diffusion.sde import VPSDE
        from ldm_med.nets import build_denoiser

        self.cfg, self.ctx, dev = cfg, ctx, ctx.device
        self.ae, self.latent_scale = load_frozen_autoencoder(cfg, dev)
        self.ae_path, self.ae_sha256 = Path(cfg.autoencoder), sha256_file(cfg.autoencoder)
        self.class_names = cfg.class_names()
        self.precision = Precision.resolve(cfg.train.precision, dev)
        self.sde = VPSDE.from_dict(cfg.sde)
        torch.manual_seed(cfg.train.seed)
        net = build_denoiser(cfg.model).to(dev)
        opt = cfg.optim
        self.den = make_trainable(net, ctx, self.precision, opt.lr, opt.betas, opt.weight_decay,
                                  opt.grad_clip, EMA(net, cfg.ema.decay, cfg.ema.warmup))
        self.precond = Denoiser(self.den.forward, self.sde, cfg.prediction)
        self.ema_precond = Denoiser(self.den.ema.model, self.sde, cfg.prediction)
        self.data = self.build_data()
        self._val_cache: list[tuple] | None = None

    def build_data(self):
        cfg, ctx = self.cfg, self.ctx
        return TrainingData(cfg.data, slabs=True, masks=self.masks, labels=self.class_names,
                            seed=cfg.train.seed, rank=ctx.rank, world_size=ctx.world_size)

    @property
    def trainables(self) -> list[Trainable]:
        return [self.den]

    def inputs(self, batch: Batch, generator: torch.Generator | None, label_dropout: float) -> tuple:
        """``(target, cond, labels, exclude)`` of a pixel batch."""
        raise NotImplementedError

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        target, cond, labels, exclude = self.inputs(self.data.batch(step), generator,
                                                    self.cfg.labels.dropout)
        return diffusion_step(self.den, self.precond, target, self.precision, cond=cond, labels=labels,
                              exclude=exclude, generator=generator, weighting=self.cfg.loss.weighting,
                              gamma=self.cfg.loss.gamma)

    @torch.no_grad()
    def validate(self, batches: list[Batch]) -> dict[str, float]:
        """Diffusion loss of the EMA denoiser on the held-out batches, with fixed times and noise."""
        from ldm_med.diffusion.losses import diffusion_loss

        if self._val_cache is None:  # the frozen autoencoder makes the inputs constant: encode once
            self._val_cache = [self.inputs(b, None, 0.0) for b in batches]
        total = 0.0
        for i, (target, cond, labels, exclude) in enumerate(self._val_cache):
            with self.precision.autocast():
                loss = diffusion_loss(self.ema_precond, target, cond=cond, labels=labels, mask=exclude,
                                      generator=seeded_generator(i, self.ctx.device),
                                      weighting=self.cfg.loss.weighting, gamma=self.cfg.loss.gamma)
            total += float(loss)
        return {"val_loss": total / max(1, len(self._val_cache))}

    def export_extra(self) -> dict[str, Any]:
        """Task-specific facts saved with the model."""
        return {}

    def export(self, out: Path) -> tuple[nn.Module, dict[str, Any]]:
        from ldm_med.checkpoint import autoencoder_reference

        extra: dict[str, Any] = {"task": self.cfg.task, "sde": self.sde.to_dict(),
                                 "prediction": self.cfg.prediction, "latent_scale": self.latent_scale,
                                 "autoencoder": autoencoder_reference(self.ae_path, out, self.ae_sha256),
                                 **self.export_extra()}
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
                f"latent_scale {self.latent_scale:.4g}")


class InpaintingTask(_LatentDenoiserTask):
    """The residual ``(z - z_c) / s_r`` on missing slices, conditioned on ``[z_c, mask]``."""

    masks = True

    def __init__(self, cfg: DiffusionRun, ctx: DistContext) -> None:
        from ldm_med.inpainting.latent import ANCHOR

        if cfg.residual_scale is None:
            raise InputError("residual_scale is not resolved: build the task from resolve(cfg, ctx)")
        if cfg.interpolation != ANCHOR:
            warnings.warn(f"interpolation: {cfg.interpolation} differs from the anchor ldm-med "
                          f"reconstruct uses ({ANCHOR}); the model will see other inputs at inference",
                          RuntimeWarning, stacklevel=2)
        super().__init__(cfg, ctx)

    def inputs(self, batch: Batch, generator: torch.Generator | None, label_dropout: float) -> tuple:
        batch = batch.to(self.ctx.device)
        target, cond, exclude = inpainting_inputs(self.ae, batch.x, batch.missing, self.latent_scale,
                                                  self.cfg.residual_scale, self.cfg.interpolation)
        return target, cond, None, exclude

    def sample_grid(self, path: Path, batches: list[Batch]) -> Path:
        """Truth / interpolation / model on one slab: a through-plane cut and a few missing slices."""
        from ldm_med.inpainting.interpolate import fill_missing
        from ldm_med.inpainting.models import InpaintingModel
        from ldm_med.inpainting.sampling import SamplingOptions, sample_corrections

        batch = batches[0] if batches else self.data.batch(0, SAMPLES)
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

    def export_extra(self) -> dict[str, Any]:
        return {"residual_scale": self.cfg.residual_scale, "interpolation": self.cfg.interpolation}

    def describe(self) -> str:
        return super().describe() + f", residual_scale {self.cfg.residual_scale:.4g}"


class GenerationTask(_LatentDenoiserTask):
    """Whole latent images or slabs, with class labels, attributes (presets and folders) and their
    dropout for classifier-free guidance. From generator/real/paths sources it trains on 3D crops with
    labels only; from presets and folders on whole 2D or 3D samples (:mod:`ldm_med.train.gendata`)."""

    def build_data(self):
        cfg, ctx = self.cfg, self.ctx
        if not cfg.data.sources[0].whole_samples:
            return super().build_data()
        from ldm_med.train.gendata import GenerationData

        return GenerationData(cfg.data, labels=self.class_names, attributes=cfg.attributes,
                              seed=cfg.train.seed, rank=ctx.rank, world_size=ctx.world_size)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, keys: tuple[str, ...] | None = None) -> torch.Tensor:
        """Scaled latents of a pixel batch: ``(B, 1, H, W)`` images or ``(B, 1, D, H, W)`` slabs. Whole
        samples are encoded once (the autoencoder is frozen and its mean latent deterministic) and
        cached by name: on CPU the encoder otherwise costs as much as the denoiser's step."""
        def run(v: torch.Tensor) -> torch.Tensor:
            return (self.ae.encode(v)[0] if v.ndim == 4 else self.ae.encode_volume(v)) * self.latent_scale

        if keys is None:
            return run(x)
        cache = self.__dict__.setdefault("_latents", {})
        todo = [i for i, k in enumerate(keys) if k not in cache]
        if todo:
            for i, z in zip(todo, run(x[todo])):
                cache[keys[i]] = z
        return torch.stack([cache[k] for k in keys])

    def inputs(self, batch: Batch, generator: torch.Generator | None, label_dropout: float) -> tuple:
        from ldm_med.generation.conditioning import attribute_channels, drop_conditioning

        batch = batch.to(self.ctx.device)
        if batch.attrs is None and batch.x.ndim == 5 and not self.cfg.attributes:
            target, labels = generation_inputs(self.ae, batch.x, batch.labels, self.latent_scale,
                                               num_classes=self.cfg.model.num_classes,
                                               label_dropout=label_dropout, generator=generator)
            return target, None, labels, None
        z = self.encode(batch.x, batch.keys)
        labels, attrs = batch.labels, batch.attrs
        if label_dropout > 0:
            labels, attrs = drop_conditioning(labels, attrs, self.cfg.model.num_classes, label_dropout,
                                              label_dropout, generator)
        cond = attribute_channels(attrs, tuple(z.shape[2:]), len(self.cfg.attributes))
        return z, cond, (labels if self.cfg.model.num_classes else None), None

    @torch.no_grad()
    def sample_grid(self, path: Path, batches: list[Batch]) -> Path:
        from ldm_med.diffusion.samplers import sample
        from ldm_med.generation.conditioning import attribute_channels

        batch = batches[0] if batches else self.data.batch(0, SAMPLES)
        dev, n = self.ctx.device, 4
        crop = tuple(self.cfg.data.crop)
        f = self.ae.downsample
        names = self.class_names
        labels = torch.arange(n, device=dev) % len(names) if names else None
        lat = (*crop[:-2], crop[-2] // f, crop[-1] // f)
        k = len(self.cfg.attributes)
        cond = attribute_channels(torch.full((n, k), float("nan"), device=dev), lat, k)
        denoise = (lambda x, t: self.ema_precond(x, t, cond=cond, labels=labels))  # noqa: E731
        z = sample(self.cfg.sampler.name, denoise, (n, self.cfg.model.in_channels, *lat), self.sde,
                   self.cfg.sampler.steps, generator=seeded_generator(0, dev), device=dev)
        z = z / self.latent_scale
        vols = (self.ae.decode(z) if len(crop) == 2 else self.ae.decode_volume(z)).float().cpu().numpy()[:, 0]
        real = batch.x[:n, 0].numpy()
        cols = [names[int(c)] for c in labels] if names else None
        if len(crop) == 2:
            return save_grid(path, [list(vols), list(real)], ["sample", "data"], cols,
                             title=f"{path.stem}: EMA denoiser samples")
        d, h = crop[0], crop[1]
        rows = [[v[d // 2] for v in vols], [v[:, h // 2, :] for v in vols],
                [v[d // 2] for v in real], [v[:, h // 2, :] for v in real]]
        titles = ["sample slice", "sample through-plane", "data slice", "data through-plane"]
        return save_grid(path, rows, titles, cols, title=f"{path.stem}: EMA denoiser samples")

    def export_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"spatial_dims": len(self.cfg.data.crop), "size": list(self.cfg.data.crop)}
        if self.class_names:
            extra.update(label_names=self.class_names, null_label=len(self.class_names))
        if self.cfg.data.sources[0].whole_samples:
            import dataclasses

            from ldm_med.train.gendata import class_infos, preset_attribute_records

            infos = class_infos(self.cfg.data.sources, len(self.cfg.data.crop))
            noise = self.residual_grain()
            infos = {k: dataclasses.replace(v, **noise[k].as_class_info()) if k in noise else v
                     for k, v in infos.items()}
            classes = {k: v.to_dict() for k, v in infos.items()}
            for name, records in preset_attribute_records(self.cfg.data.sources, self.cfg.data.crop).items():
                classes[name].update(records)
            extra.update(attributes=self.cfg.attributes, classes=classes)
        return extra

    def residual_grain(self) -> dict[str, Any]:
        """Per class, the ``Grain`` of ``x - decode(encode(x))`` over training samples
        (``ldm_med.generation.grain``): what the autoencoder smooths away or shifts, which generation
        puts back."""
        from ldm_med.generation.grain import measure_grain

        store = self.data.train
        per_class = 24 if len(self.cfg.data.crop) == 2 else 6
        out: dict[str, Any] = {}
        for k, name in enumerate(self.class_names):
            picks = [i for i, c in enumerate(store.label_index) if c == k][:per_class]
            if picks:
                out[name] = measure_grain(self.ae, np.stack([store[i][0] for i in picks]))
        return out
