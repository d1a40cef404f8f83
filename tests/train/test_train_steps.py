"""The step functions learn: repeated on one fixed batch, each loss goes down."""
from __future__ import annotations

import math

import pytest
import torch

from ldm_med.diffusion.precond import Denoiser
from ldm_med.diffusion.sde import VPSDE
from ldm_med.nets import build_autoencoder, build_denoiser, build_discriminator
from ldm_med.train.data import TrainingData
from ldm_med.train.ema import EMA
from ldm_med.train.steps import (
    Precision,
    Trainable,
    adamw,
    autoencoder_step,
    diffusion_step,
    generation_inputs,
    inpainting_inputs,
)
from ldm_med.utils import lr_factor

CPU = Precision(torch.device("cpu"))


def _trainable(net, lr=2e-3, ema=None):
    return Trainable(net, net, adamw(net, lr, (0.9, 0.999), 0.0), None, 1.0, ema, lr)


def test_precision_is_float32_on_cpu_whatever_is_asked():
    for name in ("auto", "fp16", "bf16", "fp32"):
        p = Precision.resolve(name, torch.device("cpu"))
        assert p.dtype is None and p.grad_scaler() is None and p.name == "fp32"


def test_autoencoder_step_lowers_the_loss_on_a_fixed_batch(tiny):
    cfg = tiny("autoencoder")
    torch.manual_seed(0)
    ae = build_autoencoder(cfg.model)
    gen = _trainable(ae, ema=EMA(ae, 0.9))
    disc_net = build_discriminator(2, 8, 2)
    disc = _trainable(disc_net, lr=2e-4)
    x = TrainingData(cfg.data, slabs=False).batch(0).x
    first = autoencoder_step(gen, x, CPU, kl_weight=1e-6)
    assert set(first) >= {"loss", "l1", "kl", "adv", "grad_norm"} and first["adv"] == 0.0
    for _ in range(30):
        last = autoencoder_step(gen, x, CPU, kl_weight=1e-6)
    assert last["l1"] < 0.6 * first["l1"]
    assert gen.ema.num_updates == 31
    with_disc = autoencoder_step(gen, x, CPU, kl_weight=1e-6, disc=disc, adv_weight=0.05)
    assert with_disc["adv"] > 0 and math.isfinite(with_disc["d_loss"])
    assert all(p.requires_grad for p in disc_net.parameters())  # frozen only during the generator pass


@pytest.fixture
def tiny_ae(tiny):
    torch.manual_seed(0)
    return build_autoencoder(tiny("autoencoder").model).eval().requires_grad_(False)


def test_inpainting_step_lowers_the_loss_on_a_fixed_batch(tiny, tiny_ae):
    cfg = tiny("diffusion")
    batch = TrainingData(cfg.data, slabs=True, masks=True).batch(0)
    target, cond, exclude = inpainting_inputs(tiny_ae, batch.x, batch.missing, 1.0, 0.1)
    assert target.shape == (2, 2, 8, 8, 8) and cond.shape == (2, 3, 8, 8, 8)
    assert exclude.shape == (2, 1, 8, 1, 1)
    assert torch.all(target * exclude == 0)  # the residual is zero on acquired slices
    torch.manual_seed(0)
    den = _trainable(build_denoiser(cfg.model))
    precond = Denoiser(den.forward, VPSDE(), "v")

    def step():
        return diffusion_step(den, precond, target, CPU, cond=cond, exclude=exclude,
                              generator=torch.Generator().manual_seed(0))["loss"]

    first = step()
    for _ in range(25):
        last = step()
    assert last < 0.5 * first


def test_generation_step_with_labels_and_dropout(tiny, tiny_ae):
    cfg = tiny("diffusion", "task=generation", "model.cond_channels=0", "model.num_classes=2")
    batch = TrainingData(cfg.data, slabs=True).batch(0)
    labels = torch.tensor([0, 1])
    target, kept = generation_inputs(tiny_ae, batch.x, labels, 1.0, num_classes=2, label_dropout=0.0)
    assert target.shape == (2, 2, 8, 8, 8) and torch.equal(kept, labels)
    _, dropped = generation_inputs(tiny_ae, batch.x, labels, 1.0, num_classes=2, label_dropout=0.999,
                                   generator=torch.Generator().manual_seed(0))
    assert torch.equal(dropped, torch.tensor([2, 2]))  # the null label
    torch.manual_seed(0)
    den = _trainable(build_denoiser(cfg.model))
    precond = Denoiser(den.forward, VPSDE(), "v")

    def step():
        return diffusion_step(den, precond, target, CPU, labels=labels,
                              generator=torch.Generator().manual_seed(0))["loss"]

    first = step()
    for _ in range(25):
        last = step()
    assert last < 0.5 * first


def test_lr_schedule():
    assert lr_factor(0, 100, 10, "constant", 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "constant", 0.1) == 1.0 and lr_factor(99, 100, 0, "constant", 0.1) == 1.0
    assert lr_factor(10, 100, 10, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)


def test_ema_warmup_and_tracking():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.99, warmup=True)
    start = ema.model.weight.clone()
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)
    assert torch.allclose(ema.model.weight, 0.1 * start + 0.9)
    assert ema.num_updates == 1 and not ema.model.weight.requires_grad
    for _ in range(2000):
        ema.update(net)
    assert torch.allclose(ema.model.weight, net.weight, atol=1e-6)
    assert ema.current_decay() == 0.99
    state = ema.state_dict()
    other = EMA(torch.nn.Linear(2, 1), decay=0.99)
    other.load_state_dict(state)
    assert torch.equal(other.model.weight, ema.model.weight) and other.num_updates == ema.num_updates
