"""MRC, FITS, TIFF and PNG (and NIfTI through the same door): round trips, the synthetic mark and the
provenance, same bytes for the same volume, the fields' own validators, the CLI, and bad files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ldm_med.cli import main
from ldm_med.errors import InputError
from ldm_med.io import load_volume, save_nifti, save_volume_as
from ldm_med.volume import Volume

ROOT = Path(__file__).resolve().parents[2]
STACKS = [".mrc", ".map", ".mrcs", ".fits", ".fit", ".fts", ".fits.gz", ".tif", ".tiff", ".nii.gz"]
ALL = STACKS + [".png"]
PROVENANCE = {"seed": 7, "settings": {"steps": 4, "sampler": "ddim", "note": "x" * 150}, "model": "tiny"}


def _affine(spacing=(0.7, 0.8, 1.3), origin=(10.5, -3.25, 2.0)) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


def _volume(kind: str = "float", shape=(5, 6, 7), **kw) -> Volume:
    rng = np.random.default_rng(0)
    data = rng.normal(size=shape) if kind == "float" else rng.integers(-30, 300, size=shape)
    if kind == "uint8":
        data = rng.integers(0, 256, size=shape)
    acquired = np.ones(shape[kw.get("slice_axis", 2)], bool)
    acquired[1] = False
    return Volume(data.astype(np.float32), _affine(), acquired=acquired,
                  metadata={"modality": "MR"}, **kw)


def _image(kind: str = "uint8") -> Volume:
    rng = np.random.default_rng(1)
    data = {"uint8": rng.integers(0, 256, (6, 4, 1)), "uint16": rng.integers(0, 65536, (6, 4, 1)),
            "float": rng.normal(size=(6, 4, 1))}[kind]
    return Volume(data.astype(np.float32), _affine((0.5, 0.25, 2.0), (0, 0, 0)), metadata={"modality": "MR"})


@pytest.mark.parametrize("kind", ["float", "int"])
@pytest.mark.parametrize("suffix", STACKS)
def test_round_trip(tmp_path, suffix, kind):
    vol = _volume(kind)
    path = save_volume_as(vol, tmp_path / f"v{suffix}")
    back = load_volume(path)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.affine, vol.affine, rtol=1e-6, atol=1e-6)
    assert back.slice_axis == 2 and back.missing.tolist() == [1]
    assert back.metadata["modality"] == "MR" and back.metadata["synthetic"] is False


@pytest.mark.parametrize("suffix", [".mrc", ".fits", ".tif"])
def test_round_trip_other_slice_axis_and_orientation(tmp_path, suffix):
    vol = _volume(slice_axis=0)
    vol.affine[:3, :3] = vol.affine[:3, :3] @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]])  # rotated
    back = load_volume(save_volume_as(vol, tmp_path / f"v{suffix}"))
    assert back.slice_axis == 0 and back.missing.tolist() == [1]
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)


@pytest.mark.parametrize("kind", ["uint8", "uint16", "float"])
def test_png_round_trip(tmp_path, kind):
    vol = _image(kind)
    back = load_volume(save_volume_as(vol, tmp_path / "i.png"))
    assert back.shape == (6, 4, 1)
    if kind == "float":  # scaled to 16 bit: back within half a step
        step = (vol.data.max() - vol.data.min()) / 65535
        assert np.abs(back.data - vol.data).max() <= step * 0.51 + 1e-6
    else:
        np.testing.assert_array_equal(back.data, vol.data)
        assert back.metadata["dtype"] == kind
    np.testing.assert_allclose(back.affine, vol.affine)


def test_png_pixel_size_from_phys_alone(tmp_path):
    """A PNG written by another program: pHYs gives the pixel size, DICOM's convention the signs."""
    from PIL import Image

    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(tmp_path / "p.png", dpi=(254, 127))
    vol = load_volume(tmp_path / "p.png")
    assert vol.shape == (4, 3, 1) and vol.data[1, 0, 0] == 1 and vol.data[0, 1, 0] == 4
    np.testing.assert_allclose(vol.spacing[:2], (0.1, 0.2), rtol=1e-3)
    assert vol.orientation()[:2] == "LP" and vol.metadata["spatial_unit"] == "mm"


def test_png_refuses_a_stack_and_colour(tmp_path):
    from PIL import Image

    with pytest.raises(InputError, match="PNG holds one 2D image"):
        save_volume_as(_volume(), tmp_path / "v.png")
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="colour PNG"):
        load_volume(tmp_path / "rgb.png")


def _native_mark(path: Path) -> str:
    """The synthetic mark as the format's own tools see it."""
    name = path.name
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return nib.load(str(path)).header["descrip"].item().decode()
    if name.endswith((".fits", ".fit", ".fts", ".fits.gz")):
        from astropy.io import fits

        header = fits.getheader(path)
        assert header["ORIGIN"] == "ldm-med" and "DATE" not in header
        return "SYNTHETIC" if header["SYNTHETI"] is True else ""
    if name.endswith((".mrc", ".map", ".mrcs")):
        import mrcfile

        with mrcfile.open(path) as mrc:
            return bytes(mrc.header.label[0]).decode()
    if name.endswith((".tif", ".tiff")):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            assert "DateTime" not in tif.pages[0].tags
            return tif.pages[0].description
    from PIL import Image

    with Image.open(path) as im:
        assert "tIME" not in path.read_bytes().decode("latin-1")
        return im.info["Description"]


@pytest.mark.parametrize("suffix", ALL)
def test_synthetic_mark_and_provenance(tmp_path, suffix):
    vol = _image() if suffix == ".png" else _volume()
    path = save_volume_as(vol, tmp_path / f"s{suffix}", synthetic=True, provenance=PROVENANCE)
    assert "SYNTHETIC" in _native_mark(path).upper()
    back = load_volume(path)
    assert back.metadata["synthetic"] is True and back.metadata["provenance"] == PROVENANCE
    again = save_volume_as(back, tmp_path / f"again{suffix}")  # a synthetic volume stays marked
    assert load_volume(again).metadata["synthetic"] is True
    assert load_volume(again).metadata["provenance"] == PROVENANCE


@pytest.mark.parametrize("suffix", ALL)
def test_same_volume_same_bytes(tmp_path, suffix):
    vol = _image("float") if suffix == ".png" else _volume()
    first = save_volume_as(vol, tmp_path / f"a{suffix}", synthetic=True, provenance=PROVENANCE)
    second = save_volume_as(vol, tmp_path / "sub" / f"b{suffix}", synthetic=True, provenance=PROVENANCE)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a{suffix}", "sub"]  # no temporary left


def test_plain_nifti_is_what_save_nifti_writes(tmp_path):
    import ldm_med

    vol = _volume()
    save_nifti(vol, tmp_path / "a.nii.gz")
    ldm_med.save_volume(vol, tmp_path / "b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


def test_fmt_overrides_the_suffix_and_bad_outputs_name_the_path(tmp_path):
    path = save_volume_as(_volume(), tmp_path / "map.dat", fmt="mrc")
    import mrcfile

    with mrcfile.open(path) as mrc:
        assert mrc.data.shape == (7, 6, 5)
    with pytest.raises(InputError, match="unknown output format"):
        save_volume_as(_volume(), tmp_path / "v.xyz")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(InputError, match=r"file/v\.fits: cannot write there"):
        save_volume_as(_volume(), tmp_path / "file" / "v.fits")
    with pytest.raises(InputError, match="not JSON-serialisable"):
        save_volume_as(_volume(), tmp_path / "v.tif", provenance={"bad": object()})
    assert not (tmp_path / "v.tif").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot write there"):
            save_volume_as(_volume(), folder / "v.mrc")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("suffix", [".mrc", ".mrcs"])
@pytest.mark.parametrize("kind", ["float", "int"])
def test_mrcfile_validate_passes(tmp_path, suffix, kind):
    from ldm_med.io.mrc import validate_mrc

    path = save_volume_as(_volume(kind), tmp_path / f"v{suffix}", synthetic=True, provenance=PROVENANCE)
    ok, report = validate_mrc(path)
    assert ok, report


def _fitsverify() -> str | None:
    found = shutil.which("fitsverify")
    if found is None and not os.environ.get("CI"):
        pytest.skip("fitsverify is not installed (Debian package fitsverify); required when CI is set")
    assert found is not None, "fitsverify is missing: .ci/run installs the Debian package fitsverify"
    return found


@pytest.mark.parametrize("case", ["cube-float", "cube-int", "image", "gz", "rotated"])
def test_fitsverify_no_errors_no_warnings(tmp_path, case):
    exe = _fitsverify()
    vol = _image("uint16") if case == "image" else _volume("int" if case == "cube-int" else "float")
    if case == "rotated":
        vol.affine[:3, :3] = vol.affine[:3, :3] @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]])
    path = save_volume_as(vol, tmp_path / ("v.fits.gz" if case == "gz" else "v.fits"), synthetic=True,
                          provenance=PROVENANCE)
    done = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    assert "0 warning(s) and 0 error(s)" in done.stdout, done.stdout
    assert done.returncode == 0


def test_foreign_files(tmp_path):
    """Files other programs write: the header alone gives geometry and slice axis."""
    import mrcfile
    import tifffile
    from astropy.io import fits

    with mrcfile.new(tmp_path / "m.map") as mrc:
        mrc.set_data(np.zeros((4, 3, 2), np.float32))
        mrc.voxel_size = (1.5, 2.0, 2.5)
        mrc.header.origin = (3.0, 4.0, 5.0)
    vol = load_volume(tmp_path / "m.map")
    assert vol.shape == (2, 3, 4) and vol.slice_axis == 2 and vol.metadata["modality"] == "EM"
    np.testing.assert_allclose(vol.affine, _affine((1.5, 2.0, 2.5), (3, 4, 5)))

    hdu = fits.PrimaryHDU(np.zeros((1, 3, 4, 5), np.float32))  # (STOKES, FREQ, DEC, RA) in numpy order
    for key, value in {"CTYPE1": "RA---TAN", "CDELT1": -0.01, "CRPIX1": 3.0, "CRVAL1": 150.0,
                       "CTYPE2": "DEC--TAN", "CDELT2": 0.01, "CRPIX2": 2.0, "CRVAL2": 2.0,
                       "CTYPE3": "FREQ", "CDELT3": 1e6, "CRPIX3": 1.0, "CRVAL3": 1.4e9, "CUNIT3": "Hz",
                       "CTYPE4": "STOKES"}.items():
        hdu.header[key] = value
    hdu.writeto(tmp_path / "cube.fits")
    vol = load_volume(tmp_path / "cube.fits")
    assert vol.shape == (5, 4, 3) and vol.slice_axis == 2
    np.testing.assert_allclose(vol.world([2, 1, 0]), [150.0, 2.0, 1.4e9])
    out = save_volume_as(vol, tmp_path / "copy.fits")
    header = fits.getheader(out)
    assert (header["CTYPE1"], header["CRPIX1"], header["CRVAL3"]) == ("RA---TAN", 3.0, 1.4e9)

    tifffile.imwrite(tmp_path / "plain.tif", np.arange(24, dtype=np.uint16).reshape(2, 3, 4),
                     photometric="minisblack")
    vol = load_volume(tmp_path / "plain.tif")
    assert vol.shape == (4, 3, 2) and vol.data[1, 0, 0] == 1 and vol.data[0, 0, 1] == 12


def test_cli_info_and_convert_every_format(tmp_path, capsys):
    src = ROOT / "sample_data" / "molecule.nii.gz"
    previous = src
    for suffix in [".mrc", ".fits", ".tif", ".nii"]:
        out = tmp_path / f"m{suffix}"
        assert main(["convert", str(previous), str(out)]) == 0
        assert f"wrote {out}" in capsys.readouterr().out
        assert main(["info", str(out)]) == 0
        assert "64 x 64 x 64" in capsys.readouterr().out
        previous = out
    np.testing.assert_array_equal(load_volume(previous).data, load_volume(src).data)
    assert main(["convert", str(previous), str(tmp_path / "m.png")]) == 2
    assert "PNG holds one 2D image" in capsys.readouterr().err
    save_volume_as(_image(), tmp_path / "i.png", synthetic=True)
    assert main(["info", str(tmp_path / "i.png")]) == 0
    assert "synthetic: YES" in capsys.readouterr().out


def _bad_files(tmp_path: Path) -> list[Path]:
    good = {s: save_volume_as(_volume(), tmp_path / f"good{s}") for s in (".mrc", ".fits", ".tif")}
    good[".png"] = save_volume_as(_image(), tmp_path / "good.png")
    bad = []
    for suffix, path in good.items():
        raw = path.read_bytes()
        cut = tmp_path / f"truncated{suffix}"
        cut.write_bytes(raw[: len(raw) // 2])
        text = tmp_path / f"text{suffix}"
        text.write_text("this is not an image\n" * 10)
        empty = tmp_path / f"empty{suffix}"
        empty.write_bytes(b"")
        bad += [cut, text, empty]
    return bad


def test_bad_files_exit_2_with_one_line_naming_the_file(tmp_path, capsys):
    for path in _bad_files(tmp_path):
        for command in ("info", "convert"):
            args = [command, str(path)] + ([str(tmp_path / "out.nii.gz")] if command == "convert" else [])
            assert main(args) == 2, (command, path)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and str(path) in err, err


@pytest.mark.parametrize("suffix", [".mrc", ".fits", ".tif"])
def test_info_and_convert_do_not_import_torch(tmp_path, suffix):
    probe = ROOT / "tests" / "test_startup.py"
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("startup_probe", probe)
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    path = save_volume_as(_volume(), tmp_path / f"v{suffix}")
    for argv in (["info", str(path)], ["convert", str(path), str(tmp_path / "out.nii.gz")]):
        done = subprocess.run([sys.executable, "-c", module.PROBE, *argv], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, timeout=120)
        assert '"code": 0' in done.stdout and '"heavy": []' in done.stdout, done.stdout + done.stderr


def test_training_paths_read_every_format(tmp_path):
    from ldm_med.train.data import _load_path

    for suffix in (".mrc", ".fits", ".tif"):
        path = save_volume_as(_volume(), tmp_path / f"v{suffix}")
        np.testing.assert_array_equal(_load_path(str(path)).data, _volume().data)
