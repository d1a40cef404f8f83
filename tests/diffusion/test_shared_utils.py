"""ldm_med.utils: broadcasting, device choice, autocast, seeded noise."""

from __future__ import annotations

import contextlib

import pytest
import torch

from ldm_med.errors import InputError
from ldm_med.utils import append_dims, autocast_context, rand, randn, resolve_device


def test_append_dims():
    assert append_dims(torch.ones(3), 5).shape == (3, 1, 1, 1, 1)
    assert append_dims(torch.tensor(2.0), 4).shape == (1, 1, 1, 1)
    assert append_dims(torch.ones(3, 2), 2).shape == (3, 2)
    with pytest.raises(ValueError):
        append_dims(torch.ones(3, 2), 1)


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert auto.type == expected
    else:
        assert auto.type in ("mps", "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cpu:1", "tpu"])
def test_resolve_device_rejects_unknown(bad):
    with pytest.raises(InputError, match="unknown device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_explicit_cuda_without_cuda(caplog):
    with pytest.warns(RuntimeWarning, match="FALLING BACK TO CPU"):
        assert resolve_device("cuda") == torch.device("cpu")
    assert "FALLING BACK TO CPU" in caplog.text
    with pytest.raises(InputError, match="not available"):
        resolve_device("cuda:0")


def test_cuda_index_out_of_range():
    with pytest.raises(InputError, match="cuda:99"):
        resolve_device("cuda:99")


def test_autocast_context():
    assert isinstance(autocast_context(torch.device("cpu"), "bf16"), contextlib.nullcontext)
    assert isinstance(autocast_context("cpu"), contextlib.nullcontext)
    with pytest.raises(InputError, match="precision"):
        autocast_context("cpu", "int8")
    if torch.cuda.is_available():
        with autocast_context(torch.device("cuda"), "fp16"):
            y = torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")
        assert y.dtype == torch.float16


def test_seeded_noise_matches_torch():
    a = randn((3, 4), generator=torch.Generator().manual_seed(0))
    b = torch.randn((3, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    u = rand((5,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert u.dtype == torch.float64 and torch.all((u >= 0) & (u < 1))
