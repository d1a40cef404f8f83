"""``UNetDenoiser``: MONAI's ``DiffusionModelUNet`` behind the denoiser interface
``forward(x, t, cond=None, labels=None)``, plus helpers shared by every denoiser."""

from __future__ import annotations

import dataclasses

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import Tensor, nn

from ldm_med.errors import InputError
from ldm_med.nets.config import DenoiserConfig
from ldm_med.nets.cpu import use_onednn_convs


def required_multiple(cfg: DenoiserConfig) -> tuple[int, ...]:
    """Per spatial axis, the multiple that input sizes must be for the denoiser ``cfg``."""
    if cfg.arch == "dit":
        return tuple(cfg.patch_size)  # type: ignore[arg-type]
    return (2 ** (len(cfg.channels) - 1),) * cfg.spatial_dims


class DenoiserBase(nn.Module):
    """Input checks and channel/label handling shared by the U-Net and the DiT."""

    cfg: DenoiserConfig

    def prepare(
        self, x: Tensor, t: Tensor | float, cond: Tensor | None, labels: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Check shapes; return ``(x_in (B, in+cond, *spatial), t (B,), labels (B,) | None)``."""
        cfg = self.cfg
        if x.ndim != cfg.spatial_dims + 2 or x.shape[1] != cfg.in_channels:
            raise InputError(
                f"denoiser expects x of shape (B, {cfg.in_channels}, {cfg.spatial_dims} spatial "
                f"dims), got {tuple(x.shape)}"
            )
        mult = required_multiple(cfg)
        if any(s % m for s, m in zip(x.shape[2:], mult)):
            raise InputError(
                f"{cfg.arch} denoiser: spatial shape {tuple(x.shape[2:])} is not a multiple of "
                f"{mult} per axis; pad or crop the latent to a multiple"
            )
        b = x.shape[0]
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1).expand(b)
        if cfg.cond_channels:
            if cond is None or cond.shape != (b, cfg.cond_channels, *x.shape[2:]):
                got = None if cond is None else tuple(cond.shape)
                raise InputError(
                    f"denoiser expects cond of shape {(b, cfg.cond_channels, *x.shape[2:])}, "
                    f"got {got}"
                )
            x = torch.cat([x, cond.to(x.dtype)], dim=1)
        elif cond is not None:
            raise InputError("denoiser was built with cond_channels=0 but got cond")
        if cfg.num_classes:
            if labels is None:
                labels = torch.full((b,), cfg.num_classes, dtype=torch.long, device=x.device)
            elif labels.shape != (b,):
                raise InputError(f"labels must have shape ({b},), got {tuple(labels.shape)}")
        elif labels is not None:
            raise InputError("denoiser was built with num_classes=0 but got labels")
        return x, t, labels

    def input_conv(self) -> nn.Module:
        """The first layer, the only one that sees the input channels."""
        raise NotImplementedError


class UNetDenoiser(DenoiserBase):
    """MONAI ``DiffusionModelUNet`` (2D/3D) with ``cond`` concatenated to ``x`` on channels.

    Every spatial size must be a multiple of ``2 ** (len(channels) - 1)`` (``required_multiple``).
    """

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = DiffusionModelUNet(
            spatial_dims=cfg.spatial_dims,
            in_channels=cfg.in_channels + cfg.cond_channels,
            out_channels=cfg.out_channels,  # type: ignore[arg-type]
            num_res_blocks=cfg.num_res_blocks,
            channels=cfg.channels,
            attention_levels=cfg.attention_levels,
            norm_num_groups=cfg.norm_num_groups,
            num_head_channels=cfg.num_head_channels,
            num_class_embeds=cfg.num_classes + 1 if cfg.num_classes else None,
            use_flash_attention=True,  # torch's scaled_dot_product_attention
        )
        use_onednn_convs(self)

    def forward(
        self, x: Tensor, t: Tensor | float, cond: Tensor | None = None, labels: Tensor | None = None
    ) -> Tensor:
        """``x (B, in, *spatial)``, ``t (B,)`` ~[0, 1000], ``cond (B, cond, *spatial)``,
        ``labels (B,)`` -> ``(B, out, *spatial)``."""
        x, t, labels = self.prepare(x, t, cond, labels)
        return self.unet(x, t, class_labels=labels).contiguous()

    def input_conv(self) -> nn.Module:
        return self.unet.conv_in.conv


def expand_input_channels(model: DenoiserBase, extra: int) -> DenoiserBase:
    """Add ``extra`` zero-initialised conditioning input channels to a built denoiser (in place).

    The new channels are appended after the existing cond channels; with zero weights the model's
    output is unchanged whatever they hold, so fine-tuning starts from the pretrained function
    (Stable-Diffusion-inpainting style). ``model.cfg.cond_channels`` grows by ``extra``.
    """
    if extra < 1:
        raise InputError(f"expand_input_channels: extra must be >= 1, got {extra}")
    conv = model.input_conv()
    w = conv.weight
    new_w = torch.zeros(
        w.shape[0], w.shape[1] + extra, *w.shape[2:], dtype=w.dtype, device=w.device
    )
    new_w[:, : w.shape[1]] = w.detach()
    conv.weight = nn.Parameter(new_w, requires_grad=w.requires_grad)
    conv.in_channels += extra
    model.cfg = dataclasses.replace(model.cfg, cond_channels=model.cfg.cond_channels + extra)
    return model


def parameter_count(m: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in m.parameters())
