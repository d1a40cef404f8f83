"""The slice-gap refiner's two jobs: learning the gap problem (``fit``) and filling gaps (``refine``).

The in-plane directions of a scan are fully sampled. Removing rows of an acquired slice with the scan's
own gap pattern, after resampling that row axis to the slice spacing, gives training pairs whose
geometry matches the through-plane planes where slices are missing (the SMORE idea, Zhao et al. 2020).
A small 2D refiner (``ldm_med.nets.refiner``), pretrained on through-plane planes of the training
volumes (``ldm_med.train.refiner``), is fine-tuned on those pairs (``adapt.py``), then applied to
every through-plane plane of both in-plane orientations; the two estimates are averaged.

    x_c (interpolated, normalised) --> planes (W, Z) and (H, Z) --> refiner --> average --> x_a

Everything here works on normalised ``(Z, H, W)`` arrays, slices first; acquired slices pass through
exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ldm_med.inpainting.adam import Adam
from ldm_med.inpainting.interpolate import fill_missing_batch
from ldm_med.progress import Progress
from ldm_med.utils import lr_factor

MaskFn = Callable[[int, np.random.Generator], np.ndarray]  # (length, rng) -> bool (length,), True = missing


@dataclass
class AdaptOptions:
    """Fine-tuning budget. ``steps=0`` applies the refiner as it is (pretrained only).

    ``blend``: blend the fine-tuned and the pretrained refiner and the scan's best plain interpolation
    by the check on hidden acquired slices (``blend.py``; ``False``: the fine-tuned refiner alone).
    ``check_stride``: the check uses every n-th through-plane plane. ``tune_layers``: fine-tune only
    the last n convolutions (0: all); the others stay as pretrained, and the backward pass stops there.

    Early stop (with ``blend``): every ``stop_every`` steps the check scores the fine-tuned refiner;
    the best state is kept, and the fine-tuning ends once ``stop_patience`` checks in a row gained
    nothing (less than ``stop_tol``, a share of RMSE) on the best. A fine-tuned refiner that gains less
    than ``keep_gain`` over the pretrained one's check is dropped: the check cannot tell that from its
    own jitter. ``stop_every=0``: always the whole budget (``bench/adapt_trajectory.py`` measured both).

    ``skip_margin``: no fine-tuning when the check before it puts the pretrained refiner more than this
    many dB ahead of the best plain interpolation (``bench/adapt_gate.py`` measured what that costs).

    ``inplane_view``: the final blend is chosen by the check and its second view at the real gap
    geometry (``blend.py``, ``matched.py``); the early stop uses the hidden slices alone: the
    fine-tuning trains on in-plane rows of the same slices, so that view is partly in-sample for it.
    """

    steps: int = 300
    batch_size: int = 16
    crop: tuple[int, int] = (48, 48)  # (A, L) plane crops
    lr: float = 5e-4
    seed: int = 0
    apply_batch: int = 16
    blend: bool = True
    check_stride: int = 4
    tune_layers: int = 0
    stop_every: int = 25
    stop_patience: int = 3
    stop_tol: float = 0.0
    keep_gain: float = 0.005
    schedule: str = "constant"  # pretraining: "cosine" decays the rate to lr * final_lr_fraction
    final_lr_fraction: float = 0.1
    inplane_view: bool = False
    skip_margin: float = math.inf


def through_planes(x: Tensor) -> tuple[Tensor, Tensor]:
    """The two stacks of through-plane planes of ``x (Z, H, W)``: ``(H, W, Z)`` and ``(W, H, Z)``.

    Plane ``[n]`` is ``(A, L)`` with ``L`` the slice axis, as the refiner expects.
    """
    return x.permute(1, 2, 0), x.permute(2, 1, 0)


def inplane_planes(x: np.ndarray, acquired: np.ndarray, spacing: Sequence[float]) -> list[Tensor]:
    """Training planes ``(N, A, L)`` from the acquired slices of ``x (Z, H, W)``.

    For each in-plane orientation the row axis ``L`` is used twice: at its own spacing, and resampled to
    the slice spacing ``spacing[0]`` (Gaussian anti-aliasing first when that is coarser), so the refiner
    sees gaps at the physical scale of the missing slices and at the pixel scale alike. Which of the two
    matches a scan better depends on its anatomy, and mixing them was more robust than either alone.
    """
    from scipy import ndimage

    dz, dh, dw = (float(s) for s in spacing)
    stack = np.ascontiguousarray(x[np.asarray(acquired, dtype=bool)], dtype=np.float32)  # (K, H, W)
    planes = []
    # (K, A, L) stacks whose row axis L is thinned: rows along H (A = W), then rows along W (A = H)
    for rows, d_row in ((stack.transpose(0, 2, 1), dh), (stack, dw)):
        planes.append(torch.from_numpy(np.ascontiguousarray(rows)))
        ratio = dz / d_row
        if abs(ratio - 1.0) > 0.15:
            if ratio > 1:
                rows = ndimage.gaussian_filter1d(rows, sigma=0.45 * ratio, axis=2)
            rows = ndimage.zoom(rows, (1, 1, 1 / ratio), order=1)
            if rows.shape[2] >= 4:
                planes.append(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)))
    return planes


def cyclic_pattern(missing: np.ndarray) -> MaskFn:
    """Windows of the scan's own gap pattern, at random offsets and directions."""
    missing = np.asarray(missing, dtype=bool)

    def draw(length: int, rng: np.random.Generator) -> np.ndarray:
        pattern = missing if rng.random() < 0.5 else missing[::-1]
        for _ in range(8):
            start = int(rng.integers(len(pattern)))
            window = np.resize(np.roll(pattern, -start), length)
            if (~window).sum() >= 2:
                return window
        return np.resize(pattern, length) & (np.arange(length) % 2 == 1)  # fallback: every other row

    return draw


def mixed_patterns(masks: Sequence[np.ndarray]) -> MaskFn:
    """Cyclic windows of one of ``masks``, chosen at random per draw."""
    draws = [cyclic_pattern(m) for m in masks]
    return lambda length, rng: draws[int(rng.integers(len(draws)))](length, rng)


def gap_batch(planes: list[Tensor], mask_fn: MaskFn, rng: np.random.Generator, batch: int,
              crop: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """A training batch from one randomly chosen plane stack.

    Returns ``(target, x_lin, missing)``: ``(B, 1, a, l)``, ``(B, 1, a, l)`` and ``(B, 1, 1, l)`` float.
    """
    stack = planes[int(rng.integers(len(planes)))]
    n, A, L = stack.shape
    a, ln = min(crop[0], A), min(crop[1], L)
    crops, masks = [], []
    for _ in range(batch):
        i, a0, l0 = int(rng.integers(n)), int(rng.integers(A - a + 1)), int(rng.integers(L - ln + 1))
        patch = stack[i, a0:a0 + a, l0:l0 + ln]
        if rng.random() < 0.5:
            patch = patch.flip(0)
        crops.append(patch)
        masks.append(torch.from_numpy(mask_fn(ln, rng).copy()))
    target = torch.stack(crops)[:, None]  # (B, 1, a, l)
    missing = torch.stack(masks)  # (B, l) bool
    x_lin = fill_missing_batch(target.transpose(2, 3), missing, "linear").transpose(2, 3)
    return target, x_lin, missing.float()[:, None, None, :]


def fit(net: torch.nn.Module, planes: list[Tensor], mask_fn: MaskFn, opts: AdaptOptions,
        device: torch.device | str = "cpu", progress: Progress | None = None,
        stop: Callable[[int], bool] | None = None, every: int = 25) -> list[float]:
    """Train ``net`` on gap batches drawn from ``planes`` (MSE on missing rows); returns the losses.

    ``stop(steps_done)`` is asked every ``every`` steps (``net`` in eval mode meanwhile); True ends the
    training there. The steps taken are those of an uninterrupted run."""
    rng = np.random.default_rng(opts.seed)
    torch.manual_seed(opts.seed)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    frozen = convs[:-opts.tune_layers] if 0 < opts.tune_layers < len(convs) else []
    for conv in frozen:
        conv.requires_grad_(False)
    try:
        return _fit(net, planes, mask_fn, opts, device, progress, stop, every, rng)
    finally:
        for conv in frozen:
            conv.requires_grad_(True)


def _fit(net, planes, mask_fn, opts, device, progress, stop, every, rng) -> list[float]:
    net.train()
    optim = Adam(net.parameters(), lr=opts.lr)  # torch.optim's would import torch._dynamo (1 s)
    losses = []
    if progress:
        progress("adapt", 0, opts.steps)
    for step in range(opts.steps):
        optim.lr = opts.lr * lr_factor(step, opts.steps, 0, opts.schedule, opts.final_lr_fraction)
        target, x_lin, m = (t.to(device) for t in gap_batch(planes, mask_fn, rng, opts.batch_size, opts.crop))
        err = (net(x_lin, m) - target).square() * m
        loss = err.sum() / (m.expand_as(err).sum().clamp(min=1.0))
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.detach())  # read once at the end: no host sync per step on a GPU
        if progress:
            progress("adapt", step + 1, opts.steps)
        if stop is not None and (step + 1) % every == 0 and step + 1 < opts.steps:
            net.eval()
            if stop(step + 1):
                break
            net.train()
    net.eval()
    return torch.stack(losses).tolist() if losses else []


@torch.inference_mode()
def refine_planes(net: torch.nn.Module, planes: Tensor, missing: np.ndarray,
                  device: torch.device | str = "cpu", batch: int = 16,
                  on_batch: Callable[[], None] | None = None) -> Tensor:
    """``net`` applied to a stack of through-plane planes ``(N, A, L)`` (CPU tensor in, CPU tensor out);
    ``on_batch()`` after each batch of planes (progress, and a chance to cancel)."""
    m = torch.from_numpy(np.asarray(missing, dtype=bool)).float()[None, None, None, :].to(device)
    out = torch.empty(planes.shape, dtype=torch.float32)
    for s in range(0, planes.shape[0], batch):
        chunk = planes[s:s + batch, None].to(device)
        out[s:s + batch] = net(chunk, m.expand(chunk.shape[0], 1, 1, -1))[:, 0].float().cpu()
        if on_batch:
            on_batch()
    return out


def plane_batches(shape: Sequence[int], batch: int = 16) -> int:
    """How many ``on_batch`` calls ``refine`` makes on a ``(Z, H, W)`` volume."""
    return sum(-(-n // batch) for n in shape[1:3])


def refine(net: torch.nn.Module, x_c: np.ndarray, missing: np.ndarray, device: torch.device | str = "cpu",
           batch: int = 16, on_batch: Callable[[], None] | None = None) -> np.ndarray:
    """Apply ``net`` to the through-plane planes of ``x_c (Z, H, W)``; mean of the two orientations.

    Acquired slices are returned unchanged.
    """
    missing = np.asarray(missing, dtype=bool)
    x = torch.from_numpy(np.ascontiguousarray(x_c, dtype=np.float32))
    out = torch.zeros_like(x)
    for view, target in zip(through_planes(x), through_planes(out)):
        target += refine_planes(net, view, missing, device, batch, on_batch) / 2
    result = out.numpy()
    result[~missing] = x_c[~missing]
    return result
