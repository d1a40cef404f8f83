"""Procedural generators: determinism, shapes, value ranges and real through-plane structure."""
from __future__ import annotations

import time

import numpy as np
import pytest

from ldm_med.data import GENERATORS, astro_field, ct_body, molecular_density, mr_head
from ldm_med.volume import Volume

SMALL = {"ct": (48, 48, 16), "mr": (48, 48, 16), "molecule": (24, 24, 24), "astro": (40, 40, 8)}


def _curvature(data: np.ndarray, axis: int = 2) -> float:
    """RMS of the second difference along ``axis``: zero when slices change linearly."""
    d = np.moveaxis(data.astype(np.float64), axis, 0)
    return float(np.sqrt(np.mean((d[1:-1] - 0.5 * (d[:-2] + d[2:])) ** 2)))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_deterministic_per_seed_and_different_across_seeds(name):
    gen = GENERATORS[name]
    shape = SMALL[name]
    a, b, c = gen(shape=shape, seed=5), gen(shape=shape, seed=5), gen(shape=shape, seed=6)
    assert isinstance(a, Volume)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.affine, b.affine)
    assert a.metadata == b.metadata
    assert not np.array_equal(a.data, c.data)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_shape_dtype_metadata(name):
    vol = GENERATORS[name](shape=SMALL[name], seed=0)
    assert vol.shape == SMALL[name]
    assert vol.data.dtype == np.float32
    assert np.isfinite(vol.data).all()
    assert vol.slice_axis == 2 and vol.acquired.all()
    assert vol.metadata["generator"] in {"ct_body", "mr_head", "molecular_density", "astro_field"}
    assert vol.metadata["modality"] in {"CT", "MR", "EM", "ASTRO"}


@pytest.mark.parametrize("gen, spacing", [(ct_body, (0.8, 0.9, 2.5)), (mr_head, (1.0, 1.0, 2.0)),
                                         (molecular_density, (1.5, 1.5, 1.5))])
def test_affine_carries_the_spacing(gen, spacing):
    vol = gen(shape=(32, 32, 12), spacing=spacing, seed=0)
    assert np.allclose(vol.spacing, spacing)


def test_phantom_geometry_is_scanner_like():
    vol = ct_body((32, 40, 10), (1.0, 1.0, 2.5), seed=0)
    assert vol.orientation() == "LPS"  # like a DICOM series converted to NIfTI
    centre = vol.world(np.array([(32 - 1) / 2, (40 - 1) / 2, (10 - 1) / 2]))
    assert np.allclose(centre, 0.0)


@pytest.fixture(scope="module")
def ct():
    return ct_body(seed=0)


@pytest.fixture(scope="module")
def mr():
    return mr_head(seed=0)


def test_ct_is_in_hounsfield_units(ct):
    d = ct.data
    assert d.min() >= -1024 and d.max() <= 3071
    assert np.array_equal(d, np.rint(d)), "CT values are integers, as scanners store them"
    frac = lambda lo, hi: np.mean((d >= lo) & (d <= hi))  # noqa: E731
    assert frac(-1024, -960) > 0.15, "air around the body"
    assert frac(-920, -750) > 0.01, "aerated lung"
    assert frac(-140, -60) > 0.05, "fat"
    assert frac(10, 80) > 0.1, "soft tissue and organs"
    assert frac(400, 1300) > 0.001, "cortical bone"


def test_ct_seeds_vary_contrast_phase():
    phases = {ct_body((32, 32, 8), seed=s).metadata["contrast_enhanced"] for s in range(8)}
    assert phases == {True, False}


def test_mr_is_non_negative_t1(mr):
    d = mr.data
    assert d.min() >= 0
    assert np.array_equal(d, np.rint(d))
    head = d[d > 60]
    assert np.percentile(head, 50) > 300  # white and grey matter dominate the head
    assert np.mean(d < 40) > 0.2  # background air


@pytest.mark.parametrize("fixture", ["ct", "mr"])
def test_structure_changes_non_linearly_along_slices(fixture, request):
    vol = request.getfixturevalue(fixture)
    noise_only = 10.0 * np.sqrt(1.5) * 1.5  # what the noise alone would give, with margin
    assert _curvature(vol.data) > 3 * noise_only
    # and it is through-plane structure, not a stack of copies: slices differ from their neighbours
    assert np.mean(np.abs(np.diff(vol.data, axis=2))) > 20


def test_small_and_odd_shapes():
    assert ct_body((20, 24, 3), seed=1).shape == (20, 24, 3)
    assert mr_head((17, 23, 5), (2.0, 2.0, 4.0), seed=1).shape == (17, 23, 5)
    with pytest.raises(ValueError):
        ct_body((32, 32), seed=0)
    with pytest.raises(ValueError):
        mr_head((32, 32, 8), (1.0, 0.0, 1.0))


def test_generation_is_fast(ct):
    for gen in (ct_body, mr_head):
        gen(seed=1)  # warm up
        start = time.perf_counter()
        gen(seed=2)
        # about 0.3-0.5 s on a 2-core CPU; the bound is loose so that a loaded CI machine passes
        assert time.perf_counter() - start < 5.0


def test_astro_image_and_cube():
    img = astro_field((64, 48), seed=3)
    assert isinstance(img, np.ndarray) and img.shape == (64, 48) and img.dtype == np.float32
    assert np.array_equal(img, astro_field((64, 48), seed=3))
    assert np.median(img) > 80  # sky background about 100 counts
    cube = astro_field((48, 48, 12), seed=3)
    assert isinstance(cube, Volume) and cube.shape == (48, 48, 12)
    corr = np.corrcoef(cube.data[..., 2].ravel(), cube.data[..., 9].ravel())[0, 1]
    assert 0.2 < corr < 0.999  # the same sky, but channels differ
    assert _curvature(cube.data) > 0


def test_molecule_density():
    vol = molecular_density(seed=1)
    assert vol.shape == (64, 64, 64)
    assert vol.metadata["spatial_unit"] == "angstrom"
    d = vol.data
    centre = d[16:48, 16:48, 16:48]
    assert centre.mean() > 3 * abs(d[:8].mean())  # the molecule sits in the middle of the box
    few = molecular_density((32, 32, 32), seed=1, n_atoms=50)
    assert few.metadata["n_atoms"] == 50
    sharp = molecular_density((32, 32, 32), seed=1, resolution=2.0)
    blurry = molecular_density((32, 32, 32), seed=1, resolution=6.0)
    assert _curvature(sharp.data) > _curvature(blurry.data)
