"""End to end with the model shipped in ldm_med/models (the same files `ldm-med reconstruct` uses)."""
from __future__ import annotations

import numpy as np
import pytest

from ldm_med import ReconstructOptions, reconstruct
from ldm_med.cli import main
from ldm_med.data import astro_field, molecular_density
from ldm_med.data.phantoms import ct_body, mr_head
from ldm_med.inpainting.models import (
    DEFAULT_DENOISER,
    DEFAULT_REFINERS,
    default_refiner,
    load_inpainting_model,
    load_refiner,
)
from ldm_med.io import load_volume, save_nifti


@pytest.fixture(scope="module")
def volume():
    return mr_head(shape=(36, 32, 14), spacing=(1.0, 1.0, 2.0), seed=4242)


def test_default_model_ships_with_the_package():
    assert DEFAULT_DENOISER.exists()
    model = load_inpainting_model()
    assert model.ae.downsample == 4 and model.latent_scale > 0 and model.residual_scale > 0


def test_default_refiners_ship_with_the_package():
    assert all(path.exists() for path in DEFAULT_REFINERS.values())
    a, b = load_refiner(), load_refiner()
    assert a is not b  # fresh copies: fine-tuning one never changes the cached original
    assert sum(p.numel() for p in a.parameters()) < 200_000
    ct, other = load_refiner(default_refiner("CT")), load_refiner(default_refiner("MR"))  # not CT: general
    assert any((p - q).abs().max() > 0 for p, q in zip(ct.parameters(), other.parameters()))


def test_the_refiner_is_chosen_by_modality():
    missing = np.zeros(14, bool)
    missing[[3, 6, 9]] = True
    ct = ct_body(shape=(32, 32, 14), seed=4242)
    used = {}
    for name, vol in (("ct", ct), ("mr", mr_head(shape=(32, 32, 14), seed=4242))):
        out = reconstruct(vol, missing, ReconstructOptions(refine="pretrained", device="cpu")).volume
        used[name] = out.metadata["reconstruction"]["refiner"]
    for name, vol in (("astro", astro_field((32, 32, 14), seed=4242)),
                      ("molecule", molecular_density((32, 32, 14), seed=4242))):
        out = reconstruct(vol, missing, ReconstructOptions(refine="pretrained", device="cpu")).volume
        used[name] = out.metadata["reconstruction"]["refiner"]
    assert used == {"ct": DEFAULT_REFINERS["CT"].name, "mr": DEFAULT_REFINERS["other"].name,
                    "astro": DEFAULT_REFINERS["science"].name, "molecule": DEFAULT_REFINERS["science"].name}
    chosen = ReconstructOptions(refine="pretrained", device="cpu", refiner=str(DEFAULT_REFINERS["other"]))
    assert reconstruct(ct, missing, chosen).volume.metadata["reconstruction"]["refiner"] == used["mr"]


def test_default_pipeline_refines_and_its_samples_only_add_uncertainty(volume):
    missing = np.zeros(volume.n_slices, bool)
    missing[[2, 3, 6, 9, 10, 11]] = True
    one = reconstruct(volume, missing, ReconstructOptions(adapt_steps=20, seed=3, device="cpu"))
    np.testing.assert_array_equal(one.volume.data[..., ~missing], volume.data[..., ~missing])
    linear = reconstruct(volume, missing, ReconstructOptions(method="linear")).volume.data
    assert np.abs(one.volume.data[..., missing] - linear[..., missing]).max() > 1e-3
    assert one.uncertainty is None
    info = one.volume.metadata["reconstruction"]
    assert sum(info["blend"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(info["blend"]) <= {"pretrained", "fine-tuned", info["anchor"]}
    # the fine-tuned refiner is checked, and kept only when it gained on the check
    tuned = info["adapt_steps_used"] > 0
    assert set(info["check_rmse"]) == {"pretrained", "linear", "cubic", "bspline", "lanczos", "blend",
                                       *(["fine-tuned"] if tuned else [])}
    assert tuned or "fine-tuned" not in info["blend"]
    again = reconstruct(volume, missing, ReconstructOptions(adapt_steps=20, seed=3, device="cpu"))
    np.testing.assert_array_equal(again.volume.data, one.volume.data)  # reproducible per seed
    several = reconstruct(volume, missing, ReconstructOptions(adapt_steps=20, seed=3, samples=3, steps=2,
                                                              device="cpu"))
    np.testing.assert_allclose(several.volume.data, one.volume.data, atol=1e-3)  # samples centred on it
    assert several.uncertainty[..., missing].max() > 0 and (several.uncertainty[..., ~missing] == 0).all()


def test_reconstruct_with_the_diffusion_model_alone(volume):
    missing = np.zeros(volume.n_slices, bool)
    missing[[2, 3, 6, 9, 10, 11]] = True
    opts = ReconstructOptions(refine="off", steps=3, samples=2, seed=1, device="cpu")
    result = reconstruct(volume, missing, opts)
    out = result.volume
    assert out.shape == volume.shape
    np.testing.assert_array_equal(out.affine, volume.affine)
    np.testing.assert_array_equal(out.data[..., ~missing], volume.data[..., ~missing])  # bit-exact
    linear = reconstruct(volume, missing, ReconstructOptions(method="linear")).volume.data
    assert np.abs(out.data[..., missing] - linear[..., missing]).max() > 1e-3  # the model did something
    assert np.isfinite(out.data).all()
    assert result.uncertainty.shape == volume.shape
    assert (result.uncertainty[..., ~missing] == 0).all() and result.uncertainty[..., missing].max() > 0
    again = reconstruct(volume, missing, opts)
    np.testing.assert_array_equal(again.volume.data, out.data)  # reproducible per seed
    other = reconstruct(volume, missing,
                        ReconstructOptions(refine="off", steps=3, samples=2, seed=2, device="cpu"))
    assert not np.array_equal(other.volume.data, out.data)


def test_cli_reconstruct_writes_volume_and_uncertainty(tmp_path, volume):
    src = tmp_path / "in.nii.gz"
    save_nifti(volume, src)
    out, unc = tmp_path / "out.nii.gz", tmp_path / "std.nii.gz"
    code = main(["reconstruct", str(src), "-o", str(out), "--missing", "keep-every:3", "--steps", "2",
                 "--samples", "2", "--uncertainty", str(unc), "-q"])
    assert code == 0
    a, b, u = load_volume(src), load_volume(out), load_volume(unc)
    np.testing.assert_allclose(b.affine, a.affine)
    np.testing.assert_array_equal(b.data[..., ::3], a.data[..., ::3])
    assert (u.data[..., ::3] == 0).all() and u.data.max() > 0
