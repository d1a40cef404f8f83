"""``generate``: synthetic images and volumes from a class- and attribute-conditional latent diffusion model.

Each sample: Gaussian noise seeded with ``seed + i`` -> guided latent sampling (class label, requested
attributes, the others drawn from the class's training distribution, classifier-free guidance; with
``steer``, the class's attribute pulled toward its requested or drawn value by its measure's gradient on
the last steps, ``ldm_med.generation.steer``) -> the autoencoder's decoder, corrected by its mean
round-trip error over intensity on that class, plus noise with the spectrum of the remaining error
(``decoder_noise``: the grain a decoder's mean leaves out, ``ldm_med.generation.grain``) -> the class's
intensity stretch back to physical units -> a :class:`Volume` with the class's voxel size, marked
synthetic in its metadata together with every setting, the attributes drawn, the model and the attribute
measured on the result. With ``candidates`` and a requested attribute, up to that many candidates are
drawn per sample, stopping at the first whose measured attribute is within ``CANDIDATE_TOLERANCE`` of
the request, and the closest is kept (its provenance lists every one drawn).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ldm_med.errors import InputError
from ldm_med.generation.model import GenerationModel, load_generation_model
from ldm_med.options import DEFAULT_GUIDANCE, GenerateOptions
from ldm_med.progress import Progress, no_progress
from ldm_med.volume import Volume

CT_RANGE = (-1024.0, 3071.0)  # what CT scanners store
CANDIDATE_TOLERANCE = 0.2  # a candidate this close to the request (normalised units: a tenth of the
# attribute's declared range) ends the search; the rest are not drawn


@dataclass
class Generation:
    """The samples of one ``generate`` call, in order (sample ``i`` has seed ``options.seed + i``)."""

    volumes: list[Volume]
    options: GenerateOptions
    seconds: float
    natural_format: str
    notes: list[str] = field(default_factory=list)


def generate(options: GenerateOptions, progress: Progress | None = None) -> Generation:
    """Draw ``options.n`` samples (see the module docstring). ``progress("generate", done, total)`` counts
    sampler steps; raising ``ldm_med.Cancelled`` from it stops the work."""
    from ldm_med.utils import resolve_device

    progress = progress or no_progress
    start = time.perf_counter()
    device = resolve_device(options.device)
    model = load_generation_model(options.checkpoint, options.dims, device)
    label, size = check_request(model, options)
    attrs, notes = attribute_vector(model, options)
    info = model.classes[options.preset]
    options = sampling_settings(options, info)
    reranked = reranked_attribute(model, options, attrs)
    per_sample = options.candidates if reranked else 1
    total = options.n * per_sample * options.steps
    done = [0]

    def report(n: int) -> None:
        done[0] = n
        progress("generate", n, total)

    report(0)
    drawer, volumes = Sample(model, options, info, label, size, device, notes), []
    for i in range(options.n):
        vec, drawn = drawn_attributes(model, options, attrs, i)
        # the drawn ones alone: guided with the class, not by the requested attributes' own scale
        only_drawn = torch.where(torch.isfinite(attrs), torch.full_like(vec, float("nan")), vec)
        seeds = candidate_seeds(options.seed + i, per_sample)
        steered = steered_attribute(model, options, vec)
        candidates, misses = [], []
        for c, seed in enumerate(seeds):
            def step(s, j=i * per_sample + c):
                report(j * options.steps + min(s.step + 1, options.steps))

            candidates.append(drawer.draw(i, seed, vec, only_drawn, drawn, steered, step))
            if reranked:
                misses.append(_miss(candidates[-1], model, attrs, reranked))
                if misses[-1] <= CANDIDATE_TOLERANCE:
                    break  # close enough: the remaining candidates are not drawn
        volumes.append(_closest(candidates, seeds[:len(candidates)], misses, reranked))
    if done[0] < total:
        report(total)
    return Generation(volumes, options, time.perf_counter() - start, info["natural_format"], notes)


@dataclass
class Sample:
    """What drawing one sample of a request needs; ``draw`` makes one candidate."""

    model: GenerationModel
    options: GenerateOptions
    info: dict
    label: int
    size: tuple[int, ...]
    device: torch.device
    notes: list[str]

    def draw(self, i: int, seed: int, vec: torch.Tensor, only_drawn: torch.Tensor, drawn: dict,
             steered: str | None, step) -> Volume:
        """Sample ``i``'s candidate of sampler seed ``seed``: sampled (steered toward ``steered``),
        decoded, bias-corrected, grained and in physical units."""
        model, options, info = self.model, self.options, self.info
        edits: list = []
        project = _steer(model, options, info, steered, vec, edits) if steered else None
        with _autocast(self.device):
            x = _sample(model, options, self.label, vec, only_drawn, self.size, seed, self.device, step,
                        project)
        rng = np.random.default_rng([seed, 1])  # the grain's seed, apart from the sampler's
        noise = _grain(x, info, rng) if options.decoder_noise else 0.0
        volume = _as_volume(_debias(x, info) + noise, model, options, info, i, self.notes, drawn)
        if steered:
            volume.metadata["provenance"]["steering"] = _steering_record(steered, options, edits)
        return volume


def sampling_settings(options: GenerateOptions, info: dict) -> GenerateOptions:
    """``options`` with the guidance scales and ``draw_attributes`` filled in: where not given, the
    class's own setting recorded in the model (``sampling``: ``guidance``, ``attr_guidance`` and
    ``draw_attributes``, chosen by a measurement named in its ``why``), else ``DEFAULT_GUIDANCE`` and
    drawing. An explicit ``guidance`` takes no recorded attribute guidance (its scale was measured with
    the recorded class guidance)."""
    recorded = info.get("sampling", {})
    if options.candidates is None:
        options = replace(options, candidates=int(recorded.get("candidates", 1)))
    if options.steer is None:
        options = replace(options, steer=float(recorded.get("steer", 0.0)))
    if options.draw_attributes is None:
        options = replace(options, draw_attributes=bool(recorded.get("draw_attributes", True)))
    if options.guidance is not None:
        return options
    attr = options.attr_guidance if options.attr_guidance is not None else recorded.get("attr_guidance")
    return replace(options, guidance=float(recorded.get("guidance", DEFAULT_GUIDANCE)),
                   attr_guidance=None if attr is None else float(attr))


def reranked_attribute(model: GenerationModel, options: GenerateOptions,
                       requested: torch.Tensor) -> str | None:
    """The requested attribute the candidates are chosen by: the class's measured one (presets), when
    it was requested and more than one candidate is asked for; else None."""
    return _conditioned_attribute(model, options, requested) if (options.candidates or 1) >= 2 else None


def steered_attribute(model: GenerationModel, options: GenerateOptions, vec: torch.Tensor) -> str | None:
    """The attribute a sample is steered toward (``ldm_med.generation.steer``): the class's measured one,
    when the sample is conditioned on a value of it (``vec``: requested or drawn), it has a differentiable
    measure and ``options.steer`` > 0."""
    from ldm_med.generation.steer import steerable

    name = _conditioned_attribute(model, options, vec) if options.steer else None
    return name if name and steerable(name) else None


def _conditioned_attribute(model: GenerationModel, options: GenerateOptions, vec: torch.Tensor) -> str | None:
    """The class's measured attribute (presets) when ``vec`` gives it a value; else None."""
    preset = _measuring_preset(model.classes[options.preset])
    if preset is None:
        return None
    name, names = preset.attribute.name, list(model.attributes)
    return name if name in names and torch.isfinite(vec[0, names.index(name)]) else None


def _steer(model: GenerationModel, options: GenerateOptions, info: dict, name: str, vec: torch.Tensor,
           edits: list):
    from ldm_med.generation.steer import attribute_steer

    target = _physical(model.attributes[name], float(vec[0, list(model.attributes).index(name)]))
    return attribute_steer(model.decode, info, name, target, options.steer, log=edits)


def _steering_record(name: str, options: GenerateOptions, edits: list) -> dict:
    from ldm_med.generation.steer import T_MAX, T_MIN

    return {"attribute": name, "strength": options.steer, "times": [T_MIN, T_MAX],
            "measured_before_each_edit": [value for _, value in edits]}


def candidate_seeds(seed: int, k: int) -> list[int]:
    """Sampler seeds of a sample's ``k`` candidates: its own seed first, so one candidate is the sample
    without reranking; the others derived from it (``SeedSequence``), apart from every other sample's."""
    return [seed] + [int(np.random.SeedSequence([seed, 3, c]).generate_state(1)[0]) for c in range(1, k)]


def _closest(candidates: list[Volume], seeds: list[int], misses: list[float], name: str | None) -> Volume:
    """The candidate whose measured attribute ``name`` is closest to the request (``misses``: each one's
    ``_miss``), its provenance saying so; the only candidate when nothing is reranked."""
    if not name:
        return candidates[0]
    best = int(np.argmin(misses))
    candidates[best].metadata["provenance"]["reranking"] = {"attribute": name, "kept": best, "seeds": seeds,
                                                            "miss": [round(m, 4) for m in misses],
                                                            "tolerance": CANDIDATE_TOLERANCE}
    return candidates[best]


def _measuring_preset(info: dict):
    """The preset whose attribute measure applies to a class (``info``: its model entry), or None for
    classes trained on folders."""
    if not info.get("preset"):
        return None
    from ldm_med.data.presets import get_preset

    return get_preset(info["preset"])


def _miss(volume: Volume, model: GenerationModel, requested: torch.Tensor, name: str) -> float:
    """How far the attribute measured on ``volume`` is from the request, in the model's normalised units."""
    measured = volume.metadata["provenance"]["measured"][name]
    k = list(model.attributes).index(name)
    return abs(_normalised(model.attributes[name], measured) - float(requested[0, k]))


def _grain(x: np.ndarray, info: dict, rng: np.random.Generator) -> np.ndarray | float:
    """The class's decoder grain for the decoded ``x``: noise with its measured spectrum, modulated by
    its envelope over intensity where the model records one; for models made before spectra were
    recorded, white noise of its robust round-trip std."""
    if info.get("grain"):
        from ldm_med.generation.grain import grain, modulate

        noise = grain(x.shape, info["grain"], rng)
        return modulate(noise, x, info["grain_envelope"]) if info.get("grain_envelope") else noise
    if info.get("residual_std", 0.0) > 0:
        return np.float32(info["residual_std"]) * rng.standard_normal(x.shape, dtype=np.float32)
    return 0.0


def _debias(x: np.ndarray, info: dict) -> np.ndarray:
    """The decoded ``x`` corrected by the class's decoder bias over intensity, where the model records
    one (``ldm_med.generation.grain.decoder_bias``)."""
    if info.get("decoder_bias"):
        from ldm_med.generation.grain import debias

        return debias(x, info["decoder_bias"])
    return x


def _sample(model, options, label, attrs, drawn, size, seed, device, callback, project=None):
    from ldm_med.generation.sampling import sample_one

    return sample_one(model, label=label, attrs=attrs, guidance=options.guidance, sampler=options.sampler,
                      steps=options.steps, size=size, seed=seed, device=device, callback=callback,
                      attr_guidance=options.attr_guidance, drawn=drawn, project=project)


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (the denoiser is small; the decoder stays numerically safe in bf16);
    plain float32 on CPU, where bf16 is many times slower."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    import contextlib

    return contextlib.nullcontext()


def check_request(model: GenerationModel, options: GenerateOptions) -> tuple[int, tuple[int, ...]]:
    """The class index and the sample size, or an ``InputError`` saying what the model cannot do."""
    where = model.path.name
    if model.dims != options.dims:
        raise InputError(f"{where}: a {model.dims}D model, but --dims {options.dims} was asked")
    if options.preset not in model.label_names:
        raise InputError(f"{where}: no class {options.preset!r}; it has {', '.join(model.label_names)}")
    size = tuple(options.size) if options.size else model.size
    mult = model.size_multiple()
    if any(s % m or s < m for s, m in zip(size, mult)):
        raise InputError(f"{where}: cannot produce size {list(size)}: each size must be a positive multiple "
                         f"of {list(mult)} (trained at {list(model.size)})")
    from ldm_med.io import limits

    limits.check_memory(limits.generation_bytes(size, model.ae.downsample), where,
                        f"a sample of size {list(size)}")
    return model.label_names.index(options.preset), size


def class_attributes(model: GenerationModel, name: str) -> list[str]:
    """The attributes class ``name`` was trained with (a preset's own; every attribute for folders)."""
    preset = _measuring_preset(model.classes[name])
    return list(model.attributes) if preset is None else [preset.attribute.name]


def attribute_range(model: GenerationModel, cls: str, name: str) -> tuple[float, float]:
    """The values of attribute ``name`` class ``cls`` can be asked for: the range its training samples
    cover where the model records it (``attribute_ranges``), else the attribute's declared range."""
    spec = model.attributes[name]
    lo, hi = model.classes[cls].get("attribute_ranges", {}).get(name, (spec["low"], spec["high"]))
    return float(lo), float(hi)


def attribute_vector(model: GenerationModel, options: GenerateOptions) -> tuple[torch.Tensor, list[str]]:
    """``(1, K)`` normalised requested attributes (NaN where not requested), and the clamping notes."""
    allowed = class_attributes(model, options.preset)
    vec = torch.full((1, len(model.attributes)), float("nan"))
    notes = []
    for name, value in options.attrs:
        if name not in allowed:
            raise InputError(f"unknown attribute {name!r} for {options.preset}; it has "
                             f"{', '.join(allowed) or 'none'}")
        spec = model.attributes[name]
        low, high = attribute_range(model, options.preset, name)
        if not low <= value <= high:
            clamped = min(max(value, low), high)
            note = (f"{name}={value:g} is outside the trained range of {options.preset} [{low:g}, {high:g}] "
                    f"{spec['unit']}; clamped to {clamped:g}")
            warnings.warn(note, UserWarning, stacklevel=3)
            notes.append(note)
            value = clamped
        vec[0, list(model.attributes).index(name)] = _normalised(spec, value)
    return vec, notes


def _normalised(spec: dict, value: float) -> float:
    """An attribute value as the model is conditioned on it: its declared range mapped to [-1, 1]."""
    lo, hi = float(spec["low"]), float(spec["high"])
    return 2.0 * (value - lo) / (hi - lo) - 1.0


def _physical(spec: dict, normalised: float) -> float:
    """The inverse of ``_normalised``: a conditioning value in the attribute's unit."""
    lo, hi = float(spec["low"]), float(spec["high"])
    return lo + (normalised + 1.0) / 2.0 * (hi - lo)


def drawn_attributes(model: GenerationModel, options: GenerateOptions, requested: torch.Tensor,
                     i: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Sample ``i``'s attribute vector and the values drawn for it (physical units).

    With ``options.draw_attributes``, each attribute of the class that was not requested is drawn from
    the distribution of the class's training samples (``attribute_quantiles``, recorded at export): the
    quantile function inverted at a uniform value seeded by the sample's seed. Conditioning on attributes
    drawn as the data have them samples the class as its data vary (``p(x | c) = E_a p(x | c, a)``); left
    unconditioned, guidance drew every 3D CT body at about one size (``docs/generation.md``). Models
    without a recorded distribution, and ``draw_attributes=False``, leave them unconditioned (NaN).
    """
    quantiles = model.classes[options.preset].get("attribute_quantiles", {})
    if not options.draw_attributes or not quantiles:
        return requested, {}
    vec, drawn = requested.clone(), {}
    rng = np.random.default_rng([options.seed + i, 2])  # apart from the sampler's and the grain's seeds
    names = list(model.attributes)
    for name in class_attributes(model, options.preset):
        k = names.index(name)
        if name not in quantiles or torch.isfinite(vec[0, k]):
            continue
        q = np.asarray(quantiles[name], dtype=np.float64)
        drawn[name] = float(np.interp(rng.uniform(), np.linspace(0.0, 1.0, q.size), q))
        vec[0, k] = _normalised(model.attributes[name], drawn[name])
    return vec, drawn


def _as_volume(x: np.ndarray, model: GenerationModel, options: GenerateOptions, info: dict, i: int,
               notes: list[str], drawn: dict[str, float]) -> Volume:
    from ldm_med.data.presets import Stretch

    data = Stretch.from_dict(info["stretch"]).inverse(x)
    if info["modality"] == "CT":
        data = np.clip(np.rint(data), *CT_RANGE).astype(np.float32)
    spacing = list(info["spacing"])
    if data.ndim == 2:
        data, spacing = data[:, :, None], [*spacing, 1.0]
    else:
        data = np.ascontiguousarray(np.moveaxis(data, 0, 2))  # (D, H, W) -> (X, Y, Z), slices along z
    meta = {"modality": info["modality"], "synthetic": True, "spatial_unit": info["spatial_unit"],
            "description": f"SYNTHETIC {options.preset} sample generated by ldm-med (not acquired data)",
            "provenance": {"generator": "ldm-med generate", **options.settings(), "sample": i,
                           "sample_seed": options.seed + i, "attrs_drawn": drawn, "model": model.path.name,
                           "model_sha256": model.sha256, "notes": notes}}
    p = _measuring_preset(info)
    if p is not None:
        meta["provenance"]["measured"] = {p.attribute.name: round(p.measure(data[:, :, 0] if options.dims == 2
                                                                            else data), 3)}
    return Volume(data, np.diag([*spacing, 1.0]), slice_axis=2, metadata=meta)
