"""What each kind of run trains: the ``Task`` interface the generic loop (``loop.py``) drives, the
autoencoder task, and ``build_task``, which picks the task for a resolved recipe (``resolve.py``).
The latent denoiser tasks live in ``denoising.py``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ldm_med.config import AutoencoderRun, DiffusionRun
from ldm_med.train.data import LATENT_SCALE, SAMPLES, Batch, TrainingData
from ldm_med.train.distributed import DistContext, wrap
from ldm_med.train.ema import EMA
from ldm_med.train.logging import save_grid
from ldm_med.train.steps import Precision, Trainable, adamw, autoencoder_step


class Task(Protocol):
    """What the training loop needs from a kind of run. A task reads its recipe and never edits it."""

    kind: str  # the model file's kind ("autoencoder", "denoiser")
    metric_names: tuple[str, ...]  # the log's columns besides step, loss, lr, time and val_loss
    data: TrainingData
    precision: Precision

    @property
    def trainables(self) -> list[Trainable]:
        """The networks being trained, for the learning-rate schedule (the first one is exported)."""

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """Draw the step's batch, take one optimisation step; metrics include ``loss``."""

    def validate(self, batches: list[Batch]) -> dict[str, float]:
        """``val_loss`` (and more) of the EMA weights on fixed held-out batches and noise."""

    def sample_grid(self, path: Path, batches: list[Batch]) -> Path:
        """A PNG of what the model currently does."""

    def export(self, out: Path) -> tuple[nn.Module, dict[str, Any]]:
        """The EMA network and the facts saved with it."""

    def state_dict(self) -> dict[str, Any]:
        """Everything ``--resume`` needs besides the step."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def describe(self) -> str:
        """One line for the run's log."""


def make_trainable(module: nn.Module, ctx: DistContext, precision: Precision, lr: float, betas,
               weight_decay: float, grad_clip: float, ema: EMA | None) -> Trainable:
    optimizer = adamw(module, lr, betas, weight_decay)
    return Trainable(module, wrap(module, ctx), optimizer, precision.grad_scaler(), grad_clip, ema, lr)


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
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
        self.gen = make_trainable(ae, ctx, self.precision, opt.lr, opt.betas, opt.weight_decay, opt.grad_clip,
                              EMA(ae, cfg.ema.decay, cfg.ema.warmup))
        self.disc: Trainable | None = None
        if cfg.loss.adv_weight > 0:
            d = cfg.discriminator
            disc = build_discriminator(cfg.model.spatial_dims, d.channels, d.num_layers,
                                       cfg.model.in_channels).to(dev)
            self.disc = make_trainable(disc, ctx, self.precision, d.lr, d.betas, 0.0, opt.grad_clip, None)
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


def build_task(cfg: AutoencoderRun | DiffusionRun, ctx: DistContext) -> Task:
    """The task for a resolved recipe (``resolve.resolve``)."""
    if isinstance(cfg, AutoencoderRun):
        return AutoencoderTask(cfg, ctx)
    from ldm_med.train.denoising import GenerationTask, InpaintingTask

    return InpaintingTask(cfg, ctx) if cfg.task == "slice-inpainting" else GenerationTask(cfg, ctx)


def init_weights(task: Task, path: str | Path) -> None:
    """Start the exported network of ``task`` and its EMA from the model file ``path`` (``train.init``).

    Raises:
        InputError: naming the file, when it holds another kind of model, another network, or other
        class names than the run.
    """
    from ldm_med.errors import InputError

    loaded = load_init(path, task.kind)
    names = getattr(task, "class_names", None)
    if names and loaded.extra.get("label_names") not in (None, list(names)):
        raise InputError(f"{path}: train.init was trained on classes {loaded.extra['label_names']}, "
                         f"this run has {list(names)}")
    trainable = task.trainables[0]
    state = init_into(trainable.module, loaded, path)
    if trainable.ema is not None:
        trainable.ema.model.load_state_dict(state)


def load_init(path: str | Path, kind: str):
    """The model file ``path`` of ``train.init``; ``InputError`` when it holds another kind of model."""
    from ldm_med.checkpoint import load_model
    from ldm_med.errors import InputError

    loaded = load_model(path)
    if loaded.kind != kind:
        raise InputError(f"{path}: train.init holds an {loaded.kind}, this run trains a {kind}")
    return loaded


def init_into(module: torch.nn.Module, loaded, path: str | Path) -> dict:
    """Load the weights of ``loaded`` (from ``load_init``) into ``module``; returns them. ``InputError``
    when ``module`` is another network than the file's."""
    from ldm_med.errors import InputError

    state = loaded.model.state_dict()
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = " ".join(s.strip() for s in str(err).strip().splitlines()[:3])[:400]
        raise InputError(f"{path}: train.init is another network than the recipe's model: {first}") from None
    return state


__all__ = ["AutoencoderTask", "Task", "build_task", "init_into", "init_weights", "load_init",
           "make_trainable", "seeded_generator"]
