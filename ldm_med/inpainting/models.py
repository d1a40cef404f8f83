"""The models a reconstruction needs, loaded once per (checkpoint, device) and cached."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_DENOISER = MODELS_DIR / "denoiser.safetensors"
DEFAULT_AUTOENCODER = MODELS_DIR / "autoencoder.safetensors"  # the denoiser's latent space
# Decodes the posterior samples for the uncertainty map with --fast-uncertainty: distilled from that
# autoencoder's decoder at a third of its cost (configs/spread_decoder.yaml; docs/performance.md); used
# only with that autoencoder.
DEFAULT_SPREAD_DECODER = MODELS_DIR / "spread_decoder.safetensors"
# CT (Hounsfield units) gets a refiner trained on CT alone; everything else the general one (CT and MR)
DEFAULT_REFINERS = {"CT": MODELS_DIR / "ct_refiner.safetensors",
                    "science": MODELS_DIR / "science_refiner.safetensors",
                    "other": MODELS_DIR / "refiner.safetensors"}
SCIENCE_MODALITIES = ("EM", "ASTRO")  # density maps (MRC/MAP) and astronomical cubes (FITS)
# Where the check's hidden slices (gaps twice the real ones) mispredict the real gaps: spectral cubes,
# two to five times smoother along the wavelength axis than on the sky. There the blend is also chosen
# on in-plane rows at the real gap geometry (blend.py, "second view"); on CT, MR and density maps that
# view cost up to 2 dB at x2 (docs/method.md, "A second view for the check").
SECOND_VIEW_MODALITIES = ("ASTRO",)
# No fine-tuning where the shipped refiner is already this many dB ahead of the best interpolation on the
# check (AdaptOptions.skip_margin). CT: on the 18 CT phantom cells of bench/adapt_gate.py (3 volumes x 6
# gap patterns) fine-tuning never gained (0 steps kept, +0.00 dB everywhere) and cost 15-100 s a cell; the
# shipped CT refiner was trained on that anatomy. Where it is behind an interpolation on a scan (a CT unlike
# the phantoms) the fine-tuning still runs. Elsewhere no margin separates: MR phantoms gained +0.07-0.20 dB
# at margins of 1.6-2.1 dB, above CT cells that gained nothing (docs/performance.md).
SKIP_FINE_TUNING_ABOVE_DB = {"CT": 0.0}


@dataclass
class InpaintingModel:
    """A slice-aligned autoencoder and the residual denoiser trained on its latents."""

    ae: torch.nn.Module
    denoiser: torch.nn.Module  # ldm_med.diffusion.precond.Denoiser: (x_t, t, cond) -> x0_hat
    sde: object
    latent_scale: float
    residual_scale: float
    path: Path
    autoencoder_sha256: str | None = None  # pairs the autoencoder with its distilled decoder
    spread_decoder: torch.nn.Module | None = None  # a distilled decoder given explicitly

    def distilled_decoder(self) -> torch.nn.Module | None:
        """The decoder distilled from this model's autoencoder: ``spread_decoder`` if given, else the
        shipped one when it was distilled from this autoencoder (loaded on first use), else None."""
        if self.spread_decoder is not None or not self.autoencoder_sha256:
            return self.spread_decoder
        return spread_decoder_for(self.autoencoder_sha256, str(next(self.ae.parameters()).device))


def load_inpainting_model(path: str | Path | None = None,
                          device: torch.device | str = "cpu") -> InpaintingModel:
    """Load a slice-inpainting denoiser checkpoint and the autoencoder it records (default: shipped)."""
    path = Path(path) if path else DEFAULT_DENOISER
    return _load(str(path.resolve()), str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> InpaintingModel:
    from ldm_med.checkpoint import load_inpainting_pair
    from ldm_med.diffusion.precond import Denoiser
    from ldm_med.diffusion.sde import VPSDE
    from ldm_med.errors import InputError
    from ldm_med.inpainting.latent import ANCHOR

    ae, den = load_inpainting_pair(path)
    extra = den.extra
    if extra.get("interpolation", ANCHOR) != ANCHOR:
        raise InputError(f"{path}: trained to correct {extra['interpolation']} interpolation; "
                         f"this version of ldm-med anchors on {ANCHOR}")
    sde = VPSDE.from_dict(extra["sde"])
    precond = Denoiser(den.model, sde, prediction=extra.get("prediction", "v"))
    return InpaintingModel(
        ae=ae.model.to(device).eval(), denoiser=precond.to(device).eval(), sde=sde,
        latent_scale=float(ae.extra["latent_scale"]), residual_scale=float(extra["residual_scale"]),
        path=Path(path), autoencoder_sha256=extra.get("autoencoder", {}).get("sha256"),
    )


@functools.lru_cache(maxsize=4)
def spread_decoder_for(autoencoder_sha256: str | None, device: str,
                       path: Path = DEFAULT_SPREAD_DECODER) -> torch.nn.Module | None:
    """The shipped spread decoder when it was distilled from the autoencoder with this sha256, else None
    (another autoencoder: the samples are decoded by its own decoder)."""
    from ldm_med.checkpoint import load_model

    if autoencoder_sha256 is None or not path.is_file():
        return None
    loaded = load_model(path, device)
    return loaded.model if loaded.extra.get("autoencoder_sha256") == autoencoder_sha256 else None


def default_refiner(modality: str) -> Path:
    """The shipped refiner for ``modality``: the CT one for ``"CT"``, the scientific one for density maps
    and astronomical cubes (``SCIENCE_MODALITIES``), the general one (MR and the rest) otherwise."""
    modality = modality.upper()
    return DEFAULT_REFINERS["CT" if modality == "CT" else "science" if modality in SCIENCE_MODALITIES
                            else "other"]


def load_refiner(path: str | Path | None = None, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A fresh copy of a slice-gap refiner (default: the shipped general one), free to fine-tune in place."""
    import copy

    path = Path(path) if path else DEFAULT_REFINERS["other"]
    return copy.deepcopy(_load_refiner(str(path.resolve()), str(torch.device(device))))


@functools.lru_cache(maxsize=4)
def _load_refiner(path: str, device: str) -> torch.nn.Module:
    from ldm_med.checkpoint import load_model
    from ldm_med.errors import InputError
    from ldm_med.nets.cpu import use_onednn_convs

    loaded = load_model(path, device)
    if loaded.kind != "refiner":
        raise InputError(f"{path}: a {loaded.kind} checkpoint, not a slice-gap refiner")
    return use_onednn_convs(loaded.model) if torch.device(device).type == "cpu" else loaded.model
