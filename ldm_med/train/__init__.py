"""Training: YAML recipes -> autoencoder / latent denoiser runs with checkpoints, logs and resume.

    from ldm_med.config import load_config
    from ldm_med.train import train

    train(load_config("configs/tiny_autoencoder.yaml"), "runs/tiny_ae", device="cpu")

Command line: ``ldm-med train autoencoder|diffusion|export`` (see ``docs/training.md``); under torchrun:
``torchrun --nproc-per-node N -m ldm_med.train autoencoder --config FILE``.
"""
from __future__ import annotations

from ldm_med.train.loop import TrainingDiverged, TrainResult, train

__all__ = ["TrainResult", "TrainingDiverged", "train"]
