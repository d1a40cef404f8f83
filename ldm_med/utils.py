"""Small helpers shared across the package: broadcasting, devices, mixed precision, seeded noise."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from ldm_med.errors import InputError

log = logging.getLogger(__name__)

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so ``v`` broadcasts against an ``ndim``-dim tensor.

    ``(B,) -> (B, 1, ..., 1)``; a 0-d tensor becomes ``(1, ..., 1)``.
    """
    v = torch.as_tensor(v)
    extra = ndim - v.ndim
    if extra < 0:
        raise ValueError(f"append_dims: tensor has {v.ndim} dims, more than the requested {ndim}")
    return v.reshape(*v.shape, *(1,) * extra)


def precise_dtype(device: torch.device | str) -> torch.dtype:
    """float64 for time/coefficient arithmetic, except on MPS, which has no float64."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _fall_back_to_cpu(asked: str, why: str) -> torch.device:
    msg = f"device {asked!r} requested but {why}; FALLING BACK TO CPU (this will be slow)"
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    log.warning(msg)
    return torch.device("cpu")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn a user's device choice into a ``torch.device``.

    * ``"auto"``: CUDA if available, else MPS, else CPU (silently: the user did not ask for a GPU).
    * ``"cuda"`` / ``"mps"`` when unavailable: a loud warning (``warnings.warn`` and the log), then
      CPU.
    * ``"cuda:N"``: an explicit index must exist, else ``InputError``.
    * ``"cpu"``: CPU.
    """
    text = str(spec).strip().lower()
    match = _DEVICE_RE.match(text)
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise InputError(f"unknown device {spec!r}: use 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        return (
            torch.device("mps")
            if _mps_available()
            else _fall_back_to_cpu(text, "MPS is not available")
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index is None:
        if count == 0:
            return _fall_back_to_cpu(text, "CUDA is not available")
        return torch.device("cuda", 0)
    if int(index) >= count:
        raise InputError(
            f"device {text!r} is not available: this machine has {count} CUDA device(s)"
            + (f" (cuda:0 .. cuda:{count - 1})" if count else "")
            + "; use 'auto' or 'cpu'"
        )
    return torch.device("cuda", int(index))


_AUTOCAST_DTYPES = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
_NO_AUTOCAST = {"fp32", "float32", "none", "off"}


def autocast_context(device: torch.device | str, dtype: str = "auto"):
    """Mixed precision for network calls: fp16/bf16 autocast on CUDA, a no-op elsewhere.

    CPU autocast is never used (bf16 on CPUs without native support is many times slower than fp32).
    ``dtype``: ``"auto"`` (bf16 where the GPU supports it, else fp16), ``"bf16"``, ``"fp16"``, or
    ``"fp32"``/``"none"`` to disable. Training under fp16 needs a ``GradScaler``; bf16 does not.
    """
    key = str(dtype).lower()
    if key not in _AUTOCAST_DTYPES and key not in _NO_AUTOCAST and key != "auto":
        raise InputError(f"unknown precision {dtype!r}: use one of auto, bf16, fp16, fp32")
    if torch.device(device).type != "cuda" or key in _NO_AUTOCAST:
        return contextlib.nullcontext()
    if key == "auto":
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        amp = _AUTOCAST_DTYPES[key]
    return torch.autocast("cuda", dtype=amp)


def randn(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise drawn from ``generator`` (wherever it lives), returned on ``device``.

    ``torch.randn`` refuses a generator on another device than the output; this draws on the
    generator's device and moves the result, so a CPU generator gives the same numbers whatever the
    target device.
    """
    device = torch.device(device) if device is not None else None
    gen_device = generator.device if generator is not None else device
    noise = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype)
    return noise if device is None else noise.to(device)


def rand(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Uniform ``[0, 1)`` numbers drawn from ``generator``; see ``randn``."""
    device = torch.device(device) if device is not None else None
    gen_device = generator.device if generator is not None else device
    u = torch.rand(tuple(shape), generator=generator, device=gen_device, dtype=dtype)
    return u if device is None else u.to(device)


def lr_factor(step: int, total: int, warmup: int, schedule: str, final_fraction: float) -> float:
    """Learning-rate multiplier at 0-based ``step``: linear warm-up, then constant or cosine decay."""
    factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule == "cosine":
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
        factor *= final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor
