"""``ReconstructOptions``: how to reconstruct, validated in one place. Neither importing this module nor
making options loads torch, so the command line and the napari widgets can offer the choices (and
check them) without paying for it."""
from __future__ import annotations

from dataclasses import dataclass

from ldm_med.errors import InputError

INTERPOLATIONS = ("linear", "cubic", "bspline", "lanczos")  # ldm_med.inpainting.interpolate
METHODS = ("ldm", *INTERPOLATIONS)
REFINE_MODES = ("adapt", "pretrained", "off")
MODALITIES = ("CT", "MR", "EM", "ASTRO")  # what a volume can say it holds (EM: density maps; ASTRO: cubes)
# the names of ldm_med.diffusion.samplers.SAMPLERS, here so that choosing one needs no torch (a test
# keeps the two equal)
MIN_ADAPT_STEPS, VOXELS_PER_STEP = 75, 400  # the fine-tuning budget grows with the work (adapt_budget)
SAMPLER_NAMES = ("dpm++2m", "dpm++2m-sde", "ddim", "heun", "euler-maruyama", "pc")


@dataclass(frozen=True)
class ReconstructOptions:
    """How to reconstruct. Every field is checked when the options are made (``InputError``).

    Attributes:
        method: ``"ldm"`` (the models) or a plain interpolation: ``"linear"``, ``"cubic"`` (spline),
            ``"bspline"`` (cubic B-spline) or ``"lanczos"`` (Lanczos-3 windowed sinc).
        refine: the slice-gap refiner: ``"adapt"`` fine-tunes it on the scan for at most
            ``adapt_steps`` steps (``adapt_budget`` says how many a job gets), ``"pretrained"``
            uses it as shipped, ``"off"`` leaves the estimate to the diffusion model.
        skip_margin: with ``"adapt"``, no fine-tuning when the check on hidden acquired slices puts the
            shipped refiner more than this many dB ahead of the best plain interpolation; ``None``: the
            modality's default (``inpainting.models.SKIP_FINE_TUNING_ABOVE_DB``: 0 for CT, else never
            skipped), ``math.inf``: always fine-tune.
        refiner: refiner checkpoint (default: the shipped one for the volume's modality).
        sampler, steps: the latent-diffusion sampler (one of ``SAMPLER_NAMES``) and its steps.
        samples: latent-diffusion samples. With the refiner on, the samples only give the
            uncertainty map, so the diffusion model runs only for ``samples > 1``.
        seed: seeds the fine-tuning and the sampler noise.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        checkpoint: latent-diffusion denoiser checkpoint (default: shipped).
        roi: the latent window ``(slices, h, w)`` the denoiser sees; ``overlap`` between windows.
        window_batch, slice_batch: windows per denoiser call, slices per autoencoder call.
        spread_decoder: decode the posterior samples for the uncertainty map with the shipped decoder
            distilled from the autoencoder's (a third of its cost; used only with the autoencoder it
            was distilled from) instead of the autoencoder's own. Off by default: on the uncertainty
            benchmark it moved one volume's coverage just above the 0.95 bound (docs/performance.md).
    """

    method: str = "ldm"
    refine: str = "adapt"
    adapt_steps: int = 300
    skip_margin: float | None = None
    refiner: str | None = None
    sampler: str = "dpm++2m"
    steps: int = 2
    samples: int = 1
    seed: int = 0
    device: str = "auto"
    checkpoint: str | None = None
    roi: tuple[int, int, int] = (16, 64, 64)
    overlap: float = 0.25
    window_batch: int = 4
    slice_batch: int = 32
    spread_decoder: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.refine not in REFINE_MODES:
            raise InputError(f"unknown refine mode {self.refine!r}; valid: {', '.join(REFINE_MODES)}")
        for name, low in (("steps", 1), ("samples", 1), ("adapt_steps", 0), ("window_batch", 1),
                          ("slice_batch", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                flag = "--" + name.replace("_", "-")  # the command line's name for it
                raise InputError(f"{name} ({flag}) must be an integer >= {low}, got {value!r}")
        if self.skip_margin is not None and not self.skip_margin >= 0.0:
            raise InputError(f"skip_margin must be >= 0 dB, got {self.skip_margin!r}")
        if not 0.0 <= self.overlap < 1.0:
            raise InputError(f"overlap must be in [0, 1), got {self.overlap!r}")
        if len(self.roi) != 3 or min(self.roi) < 1:
            raise InputError(f"roi must be three positive sizes (slices, h, w), got {self.roi!r}")
        if self.sampler not in SAMPLER_NAMES:
            raise InputError(f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLER_NAMES)}")

    def adapt_budget(self, n_missing_voxels: int) -> int:
        """Fine-tuning steps for a job: one per ``VOXELS_PER_STEP`` missing voxels, at least
        ``MIN_ADAPT_STEPS``, at most ``adapt_steps``; 0 unless ``refine="adapt"``. The fine-tuning
        stops earlier when the check stops improving (``AdaptOptions.stop_every``).

        Measured by ``bench/adapt_trajectory.py`` (docs/performance.md): with three missing slices
        and an early stop after two stalled checks, capping at 75 steps kept the mean gain within
        0.01 dB of larger caps over the benchmark kinds; 50 lost 0.05 dB.
        """
        if self.refine != "adapt":
            return 0
        return min(self.adapt_steps, max(MIN_ADAPT_STEPS, n_missing_voxels // VOXELS_PER_STEP))

    @property
    def uses_diffusion(self) -> bool:
        """Whether the latent diffusion model runs: alone (``refine="off"``) or for several samples."""
        return self.method == "ldm" and (self.refine == "off" or self.samples > 1)


DEFAULT_GUIDANCE = 2.0  # classifier-free guidance where the model records no setting for the class
PRESET_NAMES = ("medical-ct", "medical-mr", "molecular", "astronomical")  # ldm_med.data.presets.PRESETS
FORMATS = ("nifti", "mrc", "fits", "tiff", "png")


@dataclass(frozen=True)
class GenerateOptions:
    """How to generate synthetic volumes (``ldm-med generate``, the napari widget, ``ldm_med.generate``).

    Attributes:
        preset: a class of the model: one of ``PRESET_NAMES`` for the shipped models, or a class name
            (a training subfolder) of a ``checkpoint``.
        dims: 2 (images) or 3 (volumes): picks the shipped model.
        size: ``(H, W)`` or ``(D, H, W)``; default the model's training size.
        n: number of samples; sample ``i`` uses seed ``seed + i``.
        guidance: classifier-free guidance scale (0: unconditional, 1: conditional, > 1: stronger);
            ``None``: the setting the model records for the class (its ``sampling`` entry, measured),
            else ``DEFAULT_GUIDANCE``.
        attr_guidance: guidance of the requested attributes apart from the class, against the
            class-only prediction (a third branch per step); ``None``: the model's setting for the class
            when ``guidance`` is ``None`` too, else the same as ``guidance``.
        attrs: ``(name, value)`` pairs in the attribute's unit; values outside the trained range are
            clamped to it, with a warning.
        draw_attributes: draw each attribute not in ``attrs`` per sample from the distribution of the
            class's training samples (recorded in the model), so samples vary as the data do; False
            leaves them unconditioned; ``None``: the model's setting for the class (its ``sampling``
            entry, measured), else True.
        sampler, steps: the diffusion sampler and its number of steps.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        checkpoint: a generation model file; default the shipped model for ``dims``.
        decoder_noise: add noise with the spectrum of the autoencoder's round-trip error on the class
            (recorded in the model), so samples have the data's grain, not the decoder's smooth mean.
        candidates: when an attribute is requested, draw up to this many candidates per sample,
            stopping at the first whose measured attribute is within a tenth of the attribute's range of
            the request, and keep the closest (the class's own measure: rejection by the attribute's
            definition; each candidate costs a whole sample); ``None``: the model's setting for the
            class, else 1. Classes without a measure draw one.
        steer: when a sample is conditioned on a value (requested or drawn) of an attribute with a
            differentiable measure (the molecular radius of gyration), pull the sampler's late estimates
            toward it by the measure's gradient through the decoder, this share of the way per step
            (``ldm_med.generation.steer``; 0: off); ``None``: the model's setting for the class, else 0.
    """

    preset: str
    dims: int = 2
    size: tuple[int, ...] | None = None
    n: int = 1
    guidance: float | None = None
    attr_guidance: float | None = None
    attrs: tuple[tuple[str, float], ...] = ()
    draw_attributes: bool | None = None
    seed: int = 0
    sampler: str = "dpm++2m"
    steps: int = 20
    device: str = "auto"
    checkpoint: str | None = None
    decoder_noise: bool = True
    candidates: int | None = None
    steer: float | None = None

    def __post_init__(self) -> None:
        if self.checkpoint is None and self.preset not in PRESET_NAMES:
            raise InputError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESET_NAMES)}")
        if self.dims not in (2, 3):
            raise InputError(f"--dims must be 2 or 3, got {self.dims}")
        if self.size is not None and (len(self.size) != self.dims or min(self.size) < 1):
            raise InputError(f"--size needs {self.dims} positive sizes for a {self.dims}D sample, "
                             f"got {list(self.size)}")
        if self.n < 1:
            raise InputError(f"--n must be >= 1, got {self.n}")
        if self.guidance is not None and not 0.0 <= self.guidance <= 20.0:
            raise InputError(f"--guidance must be in [0, 20], got {self.guidance}")
        if self.attr_guidance is not None and not 0.0 <= self.attr_guidance <= 20.0:
            raise InputError(f"--attr-guidance must be in [0, 20], got {self.attr_guidance}")
        if self.sampler not in SAMPLER_NAMES:
            raise InputError(f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLER_NAMES)}")
        if self.steps < 1:
            raise InputError(f"--steps must be >= 1, got {self.steps}")
        if self.candidates is not None and not 1 <= self.candidates <= 16:
            raise InputError(f"--candidates must be in [1, 16], got {self.candidates}")
        if self.steer is not None and not 0.0 <= self.steer <= 2.0:
            raise InputError(f"--steer must be in [0, 2], got {self.steer}")
        names = [name for name, _ in self.attrs]
        if len(set(names)) != len(names):
            raise InputError(f"an attribute is given twice: {names}")

    def settings(self) -> dict:
        """Every setting, JSON-ready (written into each generated file)."""
        return {"preset": self.preset, "dims": self.dims,
                "size": None if self.size is None else list(self.size), "n": self.n,
                "guidance": self.guidance, "attr_guidance": self.attr_guidance, "attrs": dict(self.attrs),
                "draw_attributes": self.draw_attributes, "seed": self.seed,
                "sampler": self.sampler, "steps": self.steps, "checkpoint": self.checkpoint,
                "decoder_noise": self.decoder_noise, "candidates": self.candidates,
                "steer": self.steer}


def parse_attribute(spec: str) -> tuple[str, float]:
    """``NAME=VALUE`` -> ``(name, value)``."""
    name, sep, value = spec.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise InputError(f"--attr {spec!r}: expected NAME=VALUE with a number, "
                         "e.g. n_sources=40") from None
