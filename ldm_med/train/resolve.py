"""Resolve a recipe before anything is built: ``resolve(cfg, ctx) -> resolved cfg``.

What a recipe leaves open is settled here, once, into a new config that the run folder records and the
tasks only read (the recipe passed in is never changed):

* ``autoencoder``: a run folder becomes the model file inside it;
* ``model.num_classes``: 0 becomes the number of classes the sources name (``task: generation``);
* ``labels.names``, ``attributes`` and ``model.cond_channels`` of generation from whole samples (presets,
  folders): the class names in order, each attribute's range, and two conditioning channels per attribute;
* ``residual_scale``: null becomes the standard deviation of the latent residual on missing slices,
  measured on rank 0 with the frozen autoencoder and broadcast to every rank.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ldm_med.config import AutoencoderRun, DiffusionRun, RefinerRun
from ldm_med.errors import InputError
from ldm_med.train.distributed import DistContext, broadcast_object


def resolve(cfg: AutoencoderRun | DiffusionRun | RefinerRun, ctx: DistContext):
    """The recipe with every open value settled (a new object; ``cfg`` is left as it is)."""
    if not isinstance(cfg, DiffusionRun):
        return cfg
    cfg = dataclasses.replace(cfg, autoencoder=autoencoder_file(cfg.autoencoder))
    if cfg.task == "generation" and cfg.data.sources[0].whole_samples:
        cfg = resolve_whole_samples(cfg)
    names = cfg.class_names()
    if names and cfg.model.num_classes == 0:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=len(names)))
    if cfg.model.num_classes != len(names):
        raise InputError(f"model.num_classes is {cfg.model.num_classes} but the sources name "
                         f"{len(names)} classes {names} (labels.enabled: {cfg.labels.enabled})")
    if cfg.task == "slice-inpainting" and cfg.residual_scale is None:
        value = estimate_residual_scale(cfg, ctx) if ctx.is_main else None
        cfg = dataclasses.replace(cfg, residual_scale=float(broadcast_object(value, ctx)))
    return cfg


def resolve_whole_samples(cfg: DiffusionRun) -> DiffusionRun:
    """Class names, attribute ranges and conditioning channels of a generation run on presets/folders."""
    from ldm_med.train.gendata import attribute_specs, class_infos, folder_files

    names: list[str] = []
    for src in cfg.data.sources:
        found = [src.class_name] if src.preset is not None else list(folder_files(src.folder))
        names += [n for n in found if n not in names]
    class_infos(cfg.data.sources, len(cfg.data.crop))  # refuses empty or mixed-dimension folders now
    attributes = cfg.attributes or attribute_specs(cfg.data.sources, cfg.data.crop)
    labels = dataclasses.replace(cfg.labels, names=tuple(names)) if cfg.labels.enabled else cfg.labels
    model = dataclasses.replace(cfg.model, cond_channels=2 * len(attributes))
    return dataclasses.replace(cfg, labels=labels, attributes=attributes, model=model)


def autoencoder_file(path: str | None) -> str:
    """The autoencoder model file a recipe names (a run folder means the model file inside it)."""
    from ldm_med.checkpoint import MODEL_FILE

    if path is None:
        raise InputError("diffusion training needs an autoencoder: set `autoencoder:` in the recipe "
                         "or pass --autoencoder PATH")
    return str(Path(path) / MODEL_FILE) if Path(path).is_dir() else str(path)


def estimate_residual_scale(cfg: DiffusionRun, ctx: DistContext) -> float:
    """``std(z - z_c)`` over missing slices of ``residual_scale_batches`` training batches."""
    import torch

    from ldm_med.inpainting.latent import estimate_residual_scale as measure
    from ldm_med.train.data import RESIDUAL_SCALE, TrainingData
    from ldm_med.train.denoising import load_frozen_autoencoder

    ae, latent_scale = load_frozen_autoencoder(cfg, ctx.device)
    data = TrainingData(cfg.data, slabs=True, masks=True, seed=cfg.train.seed, rank=ctx.rank,
                        world_size=ctx.world_size)
    batches = [data.batch(i, RESIDUAL_SCALE).to(ctx.device)
               for i in range(max(1, cfg.residual_scale_batches))]
    with torch.no_grad():
        return measure(ae, [(b.x, b.missing) for b in batches], latent_scale, cfg.interpolation)
