"""Exponential moving average of a network's weights: the weights that get exported."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """A frozen float32 copy of ``model`` that follows its weights.

    After each optimizer step, ``update(model)`` sets ``ema = d * ema + (1 - d) * weights`` with
    ``d = decay``, or with warm-up ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    averages are not dominated by the random initialisation. Buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)
        self.decay, self.warmup = float(decay), bool(warmup)
        self.num_updates = 0

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        src = dict(model.named_parameters())
        ema = [p for _, p in self.model.named_parameters()]
        new = [src[name].detach().float() for name, _ in self.model.named_parameters()]
        torch._foreach_lerp_(ema, new, 1.0 - d)
        src_buffers = dict(model.named_buffers())
        for name, buf in self.model.named_buffers():
            buf.copy_(src_buffers[name])
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
