"""Training steps: one optimisation step of each network, as plain functions separate from the loop.

A step takes a batch already on the device and the per-step ``torch.Generator`` (diffusion times and
noise), runs forward/backward under the run's mixed precision, clips gradients, steps the optimizer and
updates the EMA. It returns float metrics. Calling a step function repeatedly on one batch is how the
tests check that a model learns.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ldm_med.train.ema import EMA


# -- precision -------------------------------------------------------------------------------------
@dataclass
class Precision:
    """Mixed precision of a run: autocast dtype (``None``: float32) and whether fp16 needs loss scaling.

    Autocast is used on CUDA only: on CPUs without native bf16 it is many times slower than float32.
    """

    device: torch.device
    dtype: torch.dtype | None = None

    @classmethod
    def resolve(cls, precision: str, device: torch.device) -> Precision:
        if device.type != "cuda" or precision == "fp32":
            return cls(device, None)
        if precision == "auto":
            return cls(device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return cls(device, {"fp16": torch.float16, "bf16": torch.bfloat16}[precision])

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None


# -- one optimised network -------------------------------------------------------------------------
@dataclass
class Trainable:
    """A network under optimisation.

    Attributes:
        module: the bare network (what is saved).
        forward: what the forward pass calls: ``module`` or its ``DistributedDataParallel`` wrapper.
        optimizer: its AdamW.
        scaler: fp16 loss scaler, or None.
        grad_clip: max gradient norm (0: no clipping).
        ema: moving average of ``module``'s weights, or None.
        base_lr: learning rate before the schedule's factor.
    """

    module: nn.Module
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None = None
    grad_clip: float = 1.0
    ema: EMA | None = None
    base_lr: float = 1e-4

    def set_lr_factor(self, factor: float) -> float:
        lr = self.base_lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self, loss: Tensor) -> float:
        """Backward, clip, optimizer step, EMA update; returns the gradient norm before clipping
        (``nan`` when not computed)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        norm = math.nan
        if self.grad_clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.module)
        return norm

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def adamw(module: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, betas=tuple(betas),
                             weight_decay=weight_decay)


# -- the steps -------------------------------------------------------------------------------------
def autoencoder_step(gen: Trainable, x: Tensor, precision: Precision, *, kl_weight: float,
                     disc: Trainable | None = None, adv_weight: float = 0.0) -> dict[str, float]:
    """One autoencoder step on slices ``x (B, 1, H, W)``; with ``disc`` also one discriminator step.

    Generator loss: ``L1 + kl_weight KL + adv_weight LSGAN`` (the adversarial term only with ``disc``).
    """
    from ldm_med.nets import autoencoder_losses, discriminator_loss

    adversarial = disc is not None and adv_weight > 0
    if adversarial:
        disc.module.requires_grad_(False)  # the generator's loss must not move the discriminator
    with precision.autocast():
        out = autoencoder_losses(gen.forward, x, disc.module if adversarial else None,
                                 adv_weight if adversarial else 0.0, kl_weight)
    grad_norm = gen.step(out["total"])
    metrics = {"loss": out["total"].item(), "l1": out["l1"].item(), "kl": out["kl"].item(),
               "adv": out["adv"].item(), "grad_norm": grad_norm}
    if adversarial:
        disc.module.requires_grad_(True)
        with precision.autocast():
            d_loss = discriminator_loss(disc.forward, x, out["recon"].detach())
        disc.step(d_loss)
        metrics["d_loss"] = d_loss.item()
    return metrics


def diffusion_step(den: Trainable, precond: nn.Module, target: Tensor, precision: Precision, *,
                   cond: Tensor | None = None, labels: Tensor | None = None, exclude: Tensor | None = None,
                   generator: torch.Generator | None = None, weighting: str = "min-snr",
                   gamma: float = 5.0) -> dict[str, float]:
    """One denoiser step on latents ``target (B, C, D, h, w)``.

    Args:
        precond: the ``Denoiser`` wrapping ``den.forward`` (so DDP sees the forward pass).
        cond, labels: conditioning channels ``(B, Cc, D, h, w)`` / class labels ``(B,)``.
        exclude: broadcastable to ``target``; 1 marks elements left out of the loss (acquired slices).
        generator: draws the diffusion times and noise.
    """
    from ldm_med.diffusion.losses import diffusion_loss

    with precision.autocast():
        loss = diffusion_loss(precond, target, cond=cond, labels=labels, generator=generator,
                              weighting=weighting, gamma=gamma, mask=exclude)
    grad_norm = den.step(loss)
    return {"loss": loss.item(), "grad_norm": grad_norm}


# -- diffusion examples from pixel batches ---------------------------------------------------------
@torch.no_grad()
def inpainting_inputs(ae: nn.Module, x: Tensor, missing: Tensor, latent_scale: float,
                      residual_scale: float, method: str = "linear") -> tuple[Tensor, Tensor, Tensor]:
    """``(target, cond, exclude)`` for slabs ``x (B, 1, D, H, W)`` and masks ``missing (B, D)``.

    ``exclude`` is ``(B, 1, D, 1, 1)``, 1 on acquired slices: only missing slices count in the loss.
    """
    from ldm_med.inpainting.latent import inpainting_example, slice_weight

    ex = inpainting_example(ae, x, missing, latent_scale, residual_scale, method)
    return ex.target, ex.cond, slice_weight(~missing, ex.target)


@torch.no_grad()
def generation_inputs(ae: nn.Module, x: Tensor, labels: Tensor, latent_scale: float, *,
                      num_classes: int = 0, label_dropout: float = 0.0,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
    """``(target, labels)``: scaled latents of whole slabs, and labels with a fraction ``label_dropout``
    replaced by the null label ``num_classes`` (classifier-free guidance); labels None without classes."""
    from ldm_med.utils import rand

    z = ae.encode_volume(x) * latent_scale
    if num_classes == 0:
        return z, None
    if label_dropout > 0:
        drop = rand((labels.shape[0],), generator=generator, device=labels.device) < label_dropout
        labels = torch.where(drop, torch.full_like(labels, num_classes), labels)
    return z, labels
