"""A generation model file: the class-/attribute-conditional latent denoiser and its autoencoder.

``ldm-med train diffusion`` with ``task: generation`` on presets or folders writes what generation needs
into the model file's ``extra``: the spatial dims and training size, the class names (one per preset) and
the null label, the attributes (name, unit, range) and, per class, the intensity stretch back to physical
units, the voxel size, the modality and the natural file format.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ldm_med.errors import InputError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_GENERATORS = {2: MODELS_DIR / "generator_2d.safetensors", 3: MODELS_DIR / "generator_3d.safetensors"}


@dataclass
class GenerationModel:
    ae: torch.nn.Module
    denoiser: torch.nn.Module     # ldm_med.diffusion.precond.Denoiser: (x_t, t, cond, labels) -> x0_hat
    sde: Any
    latent_scale: float
    dims: int
    size: tuple[int, ...]
    label_names: list[str]
    attributes: dict[str, dict]   # name -> {unit, low, high, description}, in conditioning order
    classes: dict[str, dict]      # name -> {stretch, spacing, modality, natural_format, spatial_unit, preset}
    arch: str
    path: Path
    sha256: str

    @property
    def null_label(self) -> int:
        return len(self.label_names)

    @property
    def latent_channels(self) -> int:
        return int(self.ae.cfg.latent_channels)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Sampled latents ``(B, C, [D,] h, w)`` -> decoded ``(B, 1, [D,] H, W)`` in the model's range."""
        z = z / self.latent_scale
        return self.ae.decode(z) if self.dims == 2 else self.ae.decode_volume(z)

    def size_multiple(self) -> tuple[int, ...]:
        """Per image axis, the multiple a requested size must be (autoencoder x denoiser downsampling)."""
        from ldm_med.nets.unet import required_multiple

        den = required_multiple(self.denoiser.net.cfg)
        f = self.ae.downsample
        if self.dims == 2:
            return (f * den[0], f * den[1])
        return (den[0], f * den[1], f * den[2])  # (D, H, W): the 2D autoencoder keeps D


def default_generator(dims: int) -> Path:
    if dims not in DEFAULT_GENERATORS:
        raise InputError(f"dims must be 2 or 3, got {dims}")
    return DEFAULT_GENERATORS[dims]


def load_generation_model(path: str | Path | None, dims: int = 2,
                          device: torch.device | str = "cpu") -> GenerationModel:
    """A generation model file (default: the shipped one for ``dims``), cached per (file, device)."""
    path = Path(path) if path else default_generator(dims)
    if not path.exists():
        raise InputError(f"{path}: generation model not found")
    return _load(str(path.resolve()), str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> GenerationModel:
    from ldm_med.checkpoint import find_autoencoder, load_model, sha256_file
    from ldm_med.diffusion.precond import Denoiser
    from ldm_med.diffusion.sde import VPSDE

    den = load_model(path)
    extra = den.extra
    if den.kind != "denoiser" or extra.get("task") != "generation" or "classes" not in extra:
        raise InputError(f"{path}: not a generation model trained on presets or folders (kind {den.kind}, "
                         f"task {extra.get('task')})")
    ae = load_model(find_autoencoder(den))
    sde = VPSDE.from_dict(extra["sde"])
    precond = Denoiser(den.model, sde, prediction=extra.get("prediction", "v"))
    return GenerationModel(
        ae=ae.model.to(device).eval(), denoiser=precond.to(device).eval(), sde=sde,
        latent_scale=float(extra["latent_scale"]), dims=int(extra["spatial_dims"]),
        size=tuple(int(s) for s in extra["size"]), label_names=list(extra.get("label_names", [])),
        attributes=dict(extra.get("attributes", {})), classes=dict(extra["classes"]),
        arch=str(den.config["model"].get("arch", "unet")), path=Path(path), sha256=sha256_file(path))


def rewrite_classes(path: str | Path, edit, out: str | Path | None = None, half: bool = True) -> Path:
    """Write the generation model ``path`` again (to ``out``, default in place) with its per-class
    metadata changed by ``edit(classes)`` (``{name: info}``, edited in place); weights unchanged. The
    export tools (``ldm_med.train.regrain``, ``ldm_med.train.recommend``) go through here."""
    from ldm_med.checkpoint import load_model, save_model

    src = load_model(path)
    extra = dict(src.extra)
    extra["classes"] = {k: dict(v) for k, v in extra.get("classes", {}).items()}
    edit(extra["classes"])
    return save_model(out or path, src.model, kind=src.kind, config=src.config, extra=extra, half=half)

