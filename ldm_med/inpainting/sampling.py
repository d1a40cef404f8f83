"""Latent sampling of the slice-inpainting residual over a whole volume, window by window.

Memory stays bounded for any volume: the autoencoder runs on batches of slices, and the denoiser on
overlapping latent windows (``monai.inferers.sliding_window_inference`` with Gaussian blending) at every
sampler step, so windows agree with each other as sampling proceeds (no seams between slabs or tiles).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ldm_med.inpainting.latent import conditioning, slice_weight
from ldm_med.progress import Progress


@dataclass(frozen=True)
class SamplingOptions:
    """Sampler, steps, number of samples and seed, and how the volume is cut into windows.

    ``roi`` is the latent window ``(slices, h, w)``; ``window_batch`` windows go through the denoiser
    at once and ``slice_batch`` slices through the autoencoder. ``spread_decoder``: where only the
    samples' spread is wanted, decode them with the model's distilled decoder if it has one.
    """

    sampler: str = "dpm++2m"
    steps: int = 2
    samples: int = 1
    seed: int = 0
    roi: tuple[int, int, int] = (16, 64, 64)
    overlap: float = 0.25
    window_batch: int = 4
    slice_batch: int = 32
    spread_decoder: bool = False


def _pad_hw(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Replicate-pad the last two dims of ``x`` up to a multiple; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def _in_batches(fn: Callable[[Tensor], Tensor], x: Tensor, size: int, device: torch.device,
                pixels: int) -> Tensor:
    """Apply ``fn`` to ``x (N, ...)`` on ``device`` in chunks of at most ``size`` slices of ``pixels``
    image pixels each (fewer on the CPU: ``nets.cpu.slice_batch``); result on the CPU."""
    from ldm_med.nets.cpu import slice_batch

    size = slice_batch(size, pixels, device)
    return torch.cat([fn(x[i:i + size].to(device)).float().cpu() for i in range(0, x.shape[0], size)])


def fitted_roi(roi: tuple[int, ...], size: tuple[int, ...], multiple: tuple[int, ...]) -> tuple[int, ...]:
    """The window, no larger than the latent (rounded up to the denoiser's multiple) on any axis.

    MONAI pads an image smaller than the window up to the window: a (16, 64, 64) window on the
    32x32 latent of a 128x128 scan ran the denoiser on 4x the voxels, three quarters of them padding.
    """
    return tuple(min(r, -(-s // m) * m) for r, s, m in zip(roi, size, multiple))


def _multiple(model) -> tuple[int, ...]:
    from ldm_med.nets.unet import required_multiple

    cfg = getattr(getattr(model.denoiser, "net", None), "cfg", None)  # test networks have none
    return required_multiple(cfg) if cfg is not None else (1, 1, 1)


def tiled_denoiser(model, cond: Tensor, roi: tuple[int, int, int], overlap: float, window_batch: int,
                   device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """``denoise(x_t, t) -> x0_hat`` over the full latent volume, evaluated window by window.

    Args:
        cond: ``(1, Cc, Z, h, w)`` conditioning for the whole volume.
    """
    from monai.inferers import sliding_window_inference

    from ldm_med.utils import autocast_context

    roi = fitted_roi(roi, cond.shape[2:], _multiple(model))
    n_latent = None

    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        nonlocal n_latent
        n_latent = x_t.shape[1]
        inputs = torch.cat([x_t, cond.expand(x_t.shape[0], *cond.shape[1:])], dim=1)

        def predictor(window: Tensor) -> Tensor:
            tb = t.reshape(-1)[:1].expand(window.shape[0]).to(window.device)
            with autocast_context(device):
                return model.denoiser(window[:, :n_latent], tb, cond=window[:, n_latent:]).float()

        return sliding_window_inference(inputs, roi, window_batch, predictor, overlap=overlap,
                                        mode="gaussian", padding_mode="replicate")

    return denoise


def spread_decoder(model, opts: SamplingOptions):
    """What decodes samples whose spread alone is used: the model's distilled decoder, if it has one
    and ``opts.spread_decoder``, else its autoencoder."""
    distilled = model.distilled_decoder() if opts.spread_decoder else None
    return model.ae if distilled is None else distilled


@torch.inference_mode()
def sample_corrections(model, x_c: np.ndarray, missing: np.ndarray, opts: SamplingOptions,
                       device: torch.device, progress: Progress | None = None,
                       decode: np.ndarray | None = None, spread_only: bool = False) -> np.ndarray:
    """Posterior samples of ``D(z_c + s_r r) - D(z_c)`` on the missing slices.

    Args:
        model: an ``InpaintingModel``.
        x_c: ``(Z, A, B)`` normalised volume, missing slices filled by the anchor interpolation.
        missing: ``(Z,)`` bool.
        decode: ``(Z,)`` bool, the missing slices to decode (default all): the calibration needs
            only the hidden acquired ones.
        spread_only: the caller needs the samples' deviations from each other only, not their mean:
            ``D(z_c)``, the same for every sample, is neither decoded nor subtracted (a ninth less
            decoding at 8 samples), and with ``opts.spread_decoder`` the model's distilled decoder
            (``model.distilled_decoder()``, a third of the cost) decodes them where it has one.

    Returns:
        ``(samples, n_decoded, A, B)`` float32 corrections in normalised units.
    """
    from ldm_med.diffusion.samplers import sample

    ae, ls, rs = model.ae, model.latent_scale, model.residual_scale
    report = progress or (lambda *_: None)
    slices, (h, w) = _pad_hw(torch.from_numpy(x_c)[:, None], ae.downsample)  # (Z, 1, H', W')
    report("encode", 0, 1)
    pixels = slices.shape[-2] * slices.shape[-1]
    encode = lambda s: ae.encode(s)[0] * ls
    z_c = _in_batches(encode, slices, opts.slice_batch, device, pixels)  # (Z, Cz, h', w')
    report("encode", 1, 1)
    z_c = z_c.transpose(0, 1)[None].to(device)  # (1, Cz, Z, h', w')
    miss = torch.as_tensor(missing, device=device)[None]  # (1, Z)
    cond = conditioning(z_c, miss)
    keep_known_zero = slice_weight(miss, z_c)  # residual is exactly 0 on acquired slices

    generator = torch.Generator(device=device).manual_seed(opts.seed)
    denoise = tiled_denoiser(model, cond, opts.roi, opts.overlap, opts.window_batch, device)
    report("sample", 0, opts.steps)
    residual = sample(opts.sampler, denoise, (opts.samples, *z_c.shape[1:]), model.sde, opts.steps,
                      generator=generator, device=device,
                      callback=lambda info: report("sample", info.step + 1, info.total),
                      project=lambda x0, t: x0 * keep_known_zero)

    wanted = miss[0] if decode is None else miss[0] & torch.as_tensor(decode, device=device)
    z_miss = z_c[0][:, wanted].transpose(0, 1)  # (M, Cz, h', w')
    decoder = spread_decoder(model, opts) if spread_only else ae
    dec = lambda z: decoder.decode(z / ls)
    base = 0.0 if spread_only else _in_batches(dec, z_miss, opts.slice_batch, device, pixels)
    out = []
    for n in range(opts.samples):
        report("decode", n, opts.samples)
        r_miss = residual[n][:, wanted].transpose(0, 1)
        out.append(_in_batches(dec, z_miss + rs * r_miss, opts.slice_batch, device, pixels) - base)
    report("decode", opts.samples, opts.samples)
    return torch.stack(out)[:, :, 0, :h, :w].numpy()
