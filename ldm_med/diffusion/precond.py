"""Output parameterisation: turns a network's raw output into a denoised estimate ``x0_hat``.

The network never knows what it predicts; this wrapper does (like EDM's ``VPPrecond``). With
``x_t = alpha x0 + sigma eps`` and ``alpha^2 + sigma^2 = 1``:

============  =========================  ==============================
prediction    network target             x0_hat from output ``F``
============  =========================  ==============================
``eps``       ``eps``                    ``(x_t - sigma F) / alpha``
``v``         ``alpha eps - sigma x0``   ``alpha x_t - sigma F``
``x0``        ``x0``                     ``F``
============  =========================  ==============================

No input scaling is applied: VP marginals already have unit variance for unit-variance data.
The network is called as ``net(x_t, t * time_scale, cond=cond, labels=labels)``; ``cond`` (extra
input channels) is concatenated by the network itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ldm_med.diffusion.sde import DIVISOR_FLOOR, VPSDE
from ldm_med.errors import InputError
from ldm_med.utils import append_dims, precise_dtype

PREDICTIONS = ("eps", "v", "x0")


def batch_times(t: float | Tensor, x: Tensor) -> Tensor:
    """Times as a ``(B,)`` tensor on ``x``'s device; a scalar is repeated over the batch."""
    if not isinstance(t, Tensor) or not t.is_floating_point():
        t = torch.as_tensor(t, dtype=precise_dtype(x.device))
    t = t.to(x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"times must be a scalar or shape ({x.shape[0]},), got {tuple(t.shape)}")
    return t


class Denoiser(nn.Module):
    """``x0_hat = D(x_t, t)`` around a network predicting eps, v or x0.

    Args:
        net: called as ``net(x_in (B, C, *spatial), t_in (B,) float32, cond=..., labels=...)``;
            must return a tensor shaped like ``x_in``.
        sde: the ``VPSDE`` whose ``alpha``/``sigma`` define the parameterisation.
        prediction: ``"eps"``, ``"v"`` or ``"x0"``.
        time_scale: ``t_in = t * time_scale`` (1000 matches DDPM-style timestep embeddings).

    Only the network's inputs are cast to its parameter dtype; outputs and all coefficient
    arithmetic are float32 (coefficients computed in float64), so it works with half-precision nets
    and under autocast. The wrapped network's weights live under the ``net.`` prefix of this
    module's ``state_dict``.
    """

    def __init__(
        self, net: nn.Module, sde: VPSDE, prediction: str = "v", time_scale: float = 1000.0
    ):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise InputError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")
        self.net = net
        self.sde = sde
        self.prediction = prediction
        self.time_scale = float(time_scale)

    def _coefs(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        t = t.to(precise_dtype(x.device))
        a = append_dims(self.sde.alpha(t), x.ndim).float()
        s = append_dims(self.sde.sigma(t), x.ndim).float()
        return a, s

    def net_output(
        self,
        x_t: Tensor,
        t: float | Tensor,
        cond: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """The raw network output (float32), to compare with ``training_target``."""
        t = batch_times(t, x_t)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        t_in = (t.to(precise_dtype(x_t.device)) * self.time_scale).float()
        out = self.net(
            x_t.to(dtype), t_in, cond=None if cond is None else cond.to(dtype), labels=labels
        )
        if out.shape != x_t.shape:
            raise ValueError(
                f"network output shape {tuple(out.shape)} differs from its input's "
                f"{tuple(x_t.shape)}"
            )
        return out.float()

    def forward(
        self,
        x_t: Tensor,
        t: float | Tensor,
        cond: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Denoised estimate ``x0_hat (B, C, *spatial)``, float32.

        Args:
            x_t: ``(B, C, *spatial)`` noisy input at time ``t``.
            t: ``(B,)`` or scalar times in ``[0, 1]``.
            cond: optional ``(B, Cc, *spatial)`` conditioning channels.
            labels: optional ``(B,)`` class labels (LongTensor).
        """
        t = batch_times(t, x_t)
        out = self.net_output(x_t, t, cond=cond, labels=labels)
        x_t = x_t.float()
        if self.prediction == "x0":
            return out
        a, s = self._coefs(t, x_t)
        if self.prediction == "eps":
            return (x_t - s * out) / a.clamp(min=DIVISOR_FLOOR)
        return a * x_t - s * out

    def training_target(self, x0: Tensor, noise: Tensor, t: float | Tensor) -> Tensor:
        """Float32 target of the raw network output for ``x_t = marginal(x0, t, noise)``."""
        x0, noise = x0.float(), noise.float()
        if self.prediction == "x0":
            return x0
        if self.prediction == "eps":
            return noise
        a, s = self._coefs(batch_times(t, x0), x0)
        return a * noise - s * x0

    def eps_from_x0(self, x_t: Tensor, t: float | Tensor, x0: Tensor) -> Tensor:
        """Noise implied by a denoised estimate: ``(x_t - alpha x0) / sigma``.

        At t = 0 (sigma = 0) sigma is floored at ``DIVISOR_FLOOR``: finite, 0 when x0 = x_t.
        """
        x_t = x_t.float()
        a, s = self._coefs(batch_times(t, x_t), x_t)
        return (x_t - a * x0) / s.clamp(min=DIVISOR_FLOOR)

    def score(self, x_t: Tensor, t: float | Tensor, x0: Tensor) -> Tensor:
        """Score implied by a denoised estimate (Tweedie): ``(alpha x0 - x_t) / sigma^2``, with
        sigma floored at ``DIVISOR_FLOOR`` as in ``eps_from_x0``."""
        x_t = x_t.float()
        a, s = self._coefs(batch_times(t, x_t), x_t)
        return (a * x0 - x_t) / s.clamp(min=DIVISOR_FLOOR).square()


DenoiserFn = Callable[..., Tensor]


def guided(denoiser_fn: DenoiserFn, cond_scale: float, null_label: int) -> DenoiserFn:
    """Classifier-free guidance over class labels: ``x0 = x0_u + cond_scale (x0_c - x0_u)``.

    ``denoiser_fn(x_t, t, cond=None, labels=None) -> x0_hat`` (a ``Denoiser``). The conditional and
    unconditional (``labels = null_label``) estimates come from ONE call on a doubled batch;
    ``cond`` channels are shared by both halves. ``cond_scale`` 1 (purely conditional) and 0 (purely
    unconditional) need only a single-batch call.
    """
    cond_scale = float(cond_scale)

    def fn(
        x_t: Tensor, t: float | Tensor, cond: Tensor | None = None, labels: Tensor | None = None
    ) -> Tensor:
        if labels is None:
            raise ValueError("guided(): classifier-free guidance needs labels")
        if cond_scale == 1.0:
            return denoiser_fn(x_t, t, cond=cond, labels=labels)
        null = torch.full_like(labels, null_label)
        if cond_scale == 0.0:
            return denoiser_fn(x_t, t, cond=cond, labels=null)
        t = batch_times(t, x_t)
        both = denoiser_fn(
            torch.cat([x_t, x_t]),
            torch.cat([t, t]),
            cond=None if cond is None else torch.cat([cond, cond]),
            labels=torch.cat([labels, null]),
        )
        x0_c, x0_u = both.chunk(2)
        return x0_u + cond_scale * (x0_c - x0_u)

    return fn
