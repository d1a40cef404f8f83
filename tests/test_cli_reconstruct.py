"""``ldm-med reconstruct`` on bad input: one line on stderr, exit code 2, nothing written."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ldm_med.cli import main
from ldm_med.data.phantoms import ct_body
from ldm_med.io import load_volume, save_nifti

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.fixture(scope="module")
def small_nifti(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "ct.nii.gz"
    save_nifti(ct_body(shape=(32, 28, 12), spacing=(1.0, 1.0, 2.0), seed=5), path)
    return path


def _bad(tmp_path, capsys, argv) -> str:
    out = tmp_path / "out.nii.gz"
    code = main(["reconstruct", *argv, "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert not out.exists()
    assert len(err.splitlines()) == 1 and err.startswith("ldm-med reconstruct: error:")
    return err


def test_index_out_of_range(tmp_path, capsys, small_nifti):
    assert "99" in _bad(tmp_path, capsys, [str(small_nifti), "--missing", "3,99"])


def test_all_missing_and_single_acquired(tmp_path, capsys, small_nifti):
    assert "acquired" in _bad(tmp_path, capsys, [str(small_nifti), "--missing", "0-11", "--method", "cubic"])
    assert "acquired" in _bad(tmp_path, capsys, [str(small_nifti), "--missing", "1-11", "--method", "cubic"])


def test_4d_without_volume_index(tmp_path, capsys):
    assert "--volume-index" in _bad(tmp_path, capsys, [str(NIBABEL_DATA / "example4d.nii.gz")])


def test_nan_in_acquired_slice(tmp_path, capsys, small_nifti):
    vol = load_volume(small_nifti)
    vol.data[3, 3, 5] = np.nan
    path = tmp_path / "nan.nii.gz"
    save_nifti(vol, path)
    assert "NaN" in _bad(tmp_path, capsys, [str(path), "--missing", "2,3", "--method", "cubic"])


def test_2d_input(tmp_path, capsys):
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((1, 16, 8), np.float32), np.eye(4)), path)
    assert "2D" in _bad(tmp_path, capsys, [str(path), "--missing", "2,3", "--method", "cubic"])


def test_checkpoint_that_is_not_ldm_med(tmp_path, capsys, small_nifti):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"not a checkpoint at all")
    argv = [str(small_nifti), "--missing", "3", "--checkpoint", str(fake)]
    assert str(fake) in _bad(tmp_path, capsys, argv)


def test_refiner_that_is_a_denoiser(tmp_path, capsys, small_nifti):
    from ldm_med.inpainting.models import DEFAULT_DENOISER

    err = _bad(tmp_path, capsys, [str(small_nifti), "--missing", "3", "--refiner", str(DEFAULT_DENOISER)])
    assert "refiner" in err and str(DEFAULT_DENOISER.name) in err


def test_negative_adapt_steps(tmp_path, capsys, small_nifti):
    argv = [str(small_nifti), "--missing", "3", "--adapt-steps", "-1"]
    assert "--adapt-steps" in _bad(tmp_path, capsys, argv)


def test_uncertainty_needs_several_samples(tmp_path, capsys, small_nifti):
    assert "--samples" in _bad(tmp_path, capsys, [str(small_nifti), "--missing", "3",
                                                   "--uncertainty", str(tmp_path / "u.nii.gz")])


def test_cubic_writes_input_geometry_and_exact_acquired_slices(tmp_path, small_nifti):
    out = tmp_path / "cubic.nii.gz"
    assert main(["reconstruct", str(small_nifti), "-o", str(out), "--missing", "keep-every:3",
                 "--method", "cubic", "-q"]) == 0
    src, res = nib.load(small_nifti), nib.load(out)
    np.testing.assert_allclose(res.affine, src.affine)
    a, b = src.get_fdata(dtype=np.float32), res.get_fdata(dtype=np.float32)
    assert a.shape == b.shape
    np.testing.assert_array_equal(b[..., ::3], a[..., ::3])


def test_progress_in_a_log_is_plain_lines(tmp_path, capsys, small_nifti):
    out = tmp_path / "full.nii.gz"
    code = main(["reconstruct", str(small_nifti), "-o", str(out), "--missing", "keep-every:3",
                 "--adapt-steps", "20", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0 and out.exists()
    lines = captured.err.splitlines()
    assert "adapt: 20/20" in " ".join(lines) and "refine: " in " ".join(lines)
    assert all(ch.isprintable() for line in lines for ch in line)  # no \r, no escape codes
    assert "filled 8 of 12 slices" in captured.out
    code = main(["reconstruct", str(small_nifti), "-o", str(out), "--missing", "keep-every:3",
                 "--method", "linear", "-q", "--overwrite"])
    assert code == 0 and capsys.readouterr().err == ""


def test_save_samples_and_calibrated_uncertainty_round_trip(tmp_path, capsys, small_nifti):
    import json

    out, std, samples = (tmp_path / n for n in ("full.nii.gz", "std.nii.gz", "samples.nii.gz"))
    code = main(["reconstruct", str(small_nifti), "-o", str(out), "--missing", "keep-every:3",
                 "--refine", "pretrained", "--samples", "3", "--steps", "1", "--device", "cpu",
                 "--uncertainty", str(std), "--save-samples", str(samples), "-q"])
    printed = capsys.readouterr().out
    assert code == 0 and "calibrated on hidden acquired slices" in printed
    stack = nib.load(samples).get_fdata()
    source = load_volume(small_nifti).data
    assert stack.shape == (*source.shape, 3)
    acquired = np.ones(12, bool)
    acquired[np.flatnonzero(np.arange(12) % 3)] = False
    for k in range(3):  # acquired slices are the input's in every sample
        np.testing.assert_allclose(stack[..., acquired, k], source[..., acquired], atol=1e-3)
    img = nib.load(std)
    header = json.loads(img.header.extensions[0].get_content())["ldm_med"]
    calib = header["reconstruction"]["uncertainty"]
    assert calib["calibrated"] and calib["nominal_coverage"] == 0.9 and calib["scale"] > 0
    assert calib["decoder"] == "autoencoder"  # the distilled one only with --fast-uncertainty (below)
    assert b"90% interval" in img.header["descrip"].tobytes()
    np.testing.assert_allclose(stack.std(axis=-1), img.get_fdata(), atol=0.05 * img.get_fdata().max())


def test_fast_uncertainty_decodes_the_samples_with_the_distilled_decoder(tmp_path, capsys, small_nifti):
    import json

    out, std = tmp_path / "full.nii.gz", tmp_path / "std.nii.gz"
    args = ["reconstruct", str(small_nifti), "-o", str(out), "--missing", "keep-every:3", "--refine",
            "pretrained", "--samples", "3", "--steps", "2", "--device", "cpu", "--uncertainty", str(std),
            "-q"]
    assert main([*args, "--fast-uncertainty"]) == 0
    calib = json.loads(nib.load(std).header.extensions[0].get_content())["ldm_med"]["reconstruction"]
    assert calib["uncertainty"]["decoder"] == "distilled (spread_decoder)"
    fast_map, fast_result = nib.load(std).get_fdata(), nib.load(out).get_fdata()
    assert main([*args, "--overwrite"]) == 0
    np.testing.assert_array_equal(nib.load(out).get_fdata(), fast_result)  # the result is the refiner's
    own_map = nib.load(std).get_fdata()
    missing = np.arange(12) % 3 != 0
    assert fast_map[..., missing].min() > 0 and not np.array_equal(fast_map, own_map)
    # the two maps agree on where the result is unsure
    assert np.corrcoef(fast_map[..., missing].ravel(), own_map[..., missing].ravel())[0, 1] > 0.8


def test_samples_need_several_and_a_writable_path(tmp_path, capsys, small_nifti):
    assert "--samples 2 or more" in _bad(tmp_path, capsys, [str(small_nifti), "--save-samples",
                                                            str(tmp_path / "s.nii.gz")])
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _bad(tmp_path, capsys, [str(small_nifti), "--samples", "2",
                                  "--save-samples", str(blocker / "s.nii.gz")])
    assert "cannot write there" in err


def test_uncalibrated_map_is_said_so(tmp_path, capsys, small_nifti):
    out, std = tmp_path / "full.nii.gz", tmp_path / "std.nii.gz"
    code = main(["reconstruct", str(small_nifti), "-o", str(out), "--missing", "1-10",
                 "--refine", "off", "--samples", "2", "--steps", "1", "--device", "cpu",
                 "--uncertainty", str(std), "-q"])
    assert code == 0 and "warning: the uncertainty map is not calibrated" in capsys.readouterr().out
    assert b"UNCALIBRATED" in nib.load(std).header["descrip"].tobytes()


# -- output safety and resources -------------------------------------------------------------------
def test_existing_output_needs_overwrite(tmp_path, capsys, small_nifti):
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"keep me")
    argv = ["reconstruct", str(small_nifti), "-o", str(out), "--missing", "3", "--method", "linear", "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--overwrite" in err
    assert out.read_bytes() == b"keep me"
    assert main([*argv, "--overwrite"]) == 0
    assert load_volume(out).shape == (32, 28, 12)


def test_output_that_is_the_input_is_refused_even_with_overwrite(tmp_path, capsys, small_nifti):
    before = small_nifti.read_bytes()
    assert main(["reconstruct", str(small_nifti), "-o", str(small_nifti), "--missing", "3", "--overwrite",
                 "-q"]) == 2
    assert "overwrite the input" in capsys.readouterr().err
    assert small_nifti.read_bytes() == before


def test_memory_estimate_refuses_before_starting(tmp_path, capsys, small_nifti, monkeypatch):
    from ldm_med.io import limits

    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 16)  # 64 KiB free
    err = _bad(tmp_path, capsys, [str(small_nifti), "--missing", "3", "--method", "linear"])
    assert "memory is available" in err and str(small_nifti) in err


def test_threads_flag_sets_torch_threads(tmp_path, small_nifti, monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    out = tmp_path / "out.nii.gz"
    assert main(["reconstruct", str(small_nifti), "-o", str(out), "--missing", "3", "--method", "linear",
                 "--threads", "3", "-q"]) == 0
    assert seen == [3]


def test_bad_threads_is_input_error(tmp_path, capsys, small_nifti):
    err = _bad(tmp_path, capsys, [str(small_nifti), "--missing", "3", "--threads", "0"])
    assert "--threads 0" in err


def test_modality_flag_says_what_a_nifti_holds(tmp_path, capsys):
    from ldm_med.data import astro_field

    cube = tmp_path / "cube.nii.gz"
    nib.save(nib.Nifti1Image(astro_field((24, 24, 12), seed=3).data, np.eye(4)), cube)  # says nothing
    assert load_volume(cube).metadata["modality_guessed"]
    argv = ["reconstruct", str(cube), "--missing", "keep-every:2", "--adapt-steps", "0", "--overwrite"]
    assert main([*argv, "-o", str(tmp_path / "guessed.nii.gz")]) == 0
    assert "in-plane rows" not in capsys.readouterr().out
    assert main([*argv, "-o", str(tmp_path / "astro.nii.gz"), "--modality", "astro"]) == 0
    assert "in-plane rows at the real gaps" in capsys.readouterr().out  # spectral cubes: the second view
    with pytest.raises(SystemExit) as bad:
        main([*argv, "-o", str(tmp_path / "x.nii.gz"), "--modality", "PET"])
    assert bad.value.code == 2 and "--modality" in capsys.readouterr().err


def test_summary_says_when_and_why_the_fine_tuning_was_skipped(tmp_path, capsys):
    path = tmp_path / "ct.nii.gz"
    save_nifti(ct_body(shape=(48, 48, 16), spacing=(1.0, 1.0, 2.5), seed=4), path)
    argv = ["reconstruct", str(path), "--missing", "4,9", "--adapt-steps", "10", "--overwrite"]
    assert main([*argv, "-o", str(tmp_path / "a.nii.gz")]) == 0
    assert "not fine-tuned: the shipped refiner was" in capsys.readouterr().out  # CT, ahead on the check
    assert main([*argv, "-o", str(tmp_path / "b.nii.gz"), "--skip-margin", "inf"]) == 0
    out = capsys.readouterr().out
    assert "not fine-tuned" not in out and "fine-tuned 0 of 10 steps" in out
    with pytest.raises(SystemExit):  # argparse: not a number
        main([*argv, "-o", str(tmp_path / "c.nii.gz"), "--skip-margin", "lots"])
    assert main([*argv, "-o", str(tmp_path / "d.nii.gz"), "--skip-margin", "-1"]) == 2
    assert "skip_margin must be >= 0 dB" in capsys.readouterr().err
