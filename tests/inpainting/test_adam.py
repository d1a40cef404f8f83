"""The fine-tuning's own Adam against torch.optim.Adam: the same weights, bit for bit, on the CPU."""
from __future__ import annotations

import copy

import torch

from ldm_med.inpainting.adam import Adam
from ldm_med.nets.refiner import SliceGapRefiner


def _train(net, optim, steps=12):
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(4, 1, 12, 10, generator=gen)
        m = (torch.rand(4, 1, 1, 10, generator=gen) < 0.3).float()
        loss = (net(x, m) - x.flip(2)).square().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    return net.state_dict()


def test_same_weights_as_torch_adam_bit_for_bit():
    torch.manual_seed(0)
    a = SliceGapRefiner(channels=8, depth=3)
    b, before = copy.deepcopy(a), copy.deepcopy(a.state_dict())
    ours = _train(a, Adam(a.parameters(), lr=5e-3))
    ref = _train(b, torch.optim.Adam(b.parameters(), lr=5e-3))
    assert all(not torch.equal(v, before[k]) for k, v in ours.items())  # every tensor trained
    for key, value in ours.items():
        assert torch.equal(value, ref[key]), key
