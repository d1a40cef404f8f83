"""``ldm-med generate`` end to end on tiny models: every preset, files, determinism, guidance, attributes,
bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ldm_med
from ldm_med.cli import main
from ldm_med.options import GenerateOptions

PRESETS = ("medical-ct", "medical-mr", "molecular", "astronomical")
SUFFIX = {"medical-ct": ".nii.gz", "medical-mr": ".nii.gz", "molecular": ".mrc", "astronomical": ".fits"}


def _opts(ckpt, preset="medical-ct", **kw):
    kw.setdefault("steps", 3)
    return GenerateOptions(preset=preset, checkpoint=str(ckpt), **kw)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_end_to_end_writes_marked_files_and_a_gallery(tiny_generator, tmp_path, preset):
    out = tmp_path / preset
    assert main(["generate", "--preset", preset, "--checkpoint", str(tiny_generator), "--n", "2",
                 "--steps", "3", "--seed", "5", "--out", str(out), "-q"]) == 0
    files = sorted(p.name for p in out.iterdir())
    stem = f"{preset}_2d_seed"
    assert files == sorted([f"{stem}5{SUFFIX[preset]}", f"{stem}6{SUFFIX[preset]}", "gallery.png",
                            "generation.json"])
    vol = ldm_med.load_volume(out / f"{stem}5{SUFFIX[preset]}")
    assert vol.data.shape[:2] == (32, 32) and np.isfinite(vol.data).all()
    assert vol.metadata.get("synthetic") is True
    prov = vol.metadata["provenance"]
    assert prov["sample_seed"] == 5 and prov["preset"] == preset and prov["steps"] == 3
    summary = json.loads((out / "generation.json").read_text())
    assert summary["synthetic"] and [s["seed"] for s in summary["samples"]] == [5, 6]
    from PIL import Image

    gallery = np.asarray(Image.open(out / "gallery.png").convert("L"), dtype=float)
    assert gallery.std() > 10  # not blank


def test_same_seed_same_bytes_and_other_seeds_differ(tiny_generator, tmp_path):
    for name in ("a", "b"):
        assert main(["generate", "--preset", "molecular", "--checkpoint", str(tiny_generator), "--n", "2",
                     "--steps", "3", "--out", str(tmp_path / name), "-q"]) == 0
    for f in ("molecular_2d_seed0.mrc", "molecular_2d_seed1.mrc", "gallery.png"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    a0 = ldm_med.load_volume(tmp_path / "a" / "molecular_2d_seed0.mrc").data
    a1 = ldm_med.load_volume(tmp_path / "a" / "molecular_2d_seed1.mrc").data
    assert not np.array_equal(a0, a1)
    # sample i of seed s is sample 0 of seed s + i
    single = ldm_med.generate(_opts(tiny_generator, "molecular", seed=1)).volumes[0].data
    np.testing.assert_array_equal(single.astype(np.float32), a1.astype(np.float32))


def test_guidance_and_attributes_change_the_sample(tiny_generator):
    def one(**kw):
        return ldm_med.generate(_opts(tiny_generator, "astronomical", **kw)).volumes[0].data

    base, guided = one(guidance=0.0), one(guidance=3.0)
    low, high = one(attrs=(("n_sources", 3.0),)), one(attrs=(("n_sources", 60.0),))
    assert not np.allclose(base, guided) and not np.allclose(low, high)


class _BranchDenoiser:
    """Says which branch it ran: 100 for a class label, +1 for a present attribute."""

    batches: list = []

    def __call__(self, x, t, cond=None, labels=None):
        self.batches.append(x.shape[0])
        value = 100.0 * (labels != NULL).float() + cond[:, 1].flatten(1).mean(1)
        return value.reshape(-1, 1, 1, 1).expand_as(x)


NULL = 4


def test_attribute_guidance_is_a_third_branch_against_the_class_only_model():
    from types import SimpleNamespace

    from ldm_med.generation.sampling import guided_denoiser

    model = SimpleNamespace(attributes={"n_sources": {}}, label_names=["a"] * NULL, null_label=NULL,
                            denoiser=_BranchDenoiser())
    x, attrs = torch.zeros(1, 2, 4, 4), torch.tensor([[0.3]])
    two = guided_denoiser(model, 1, attrs, 2.0, (4, 4))(x, 0.5)
    assert float(two.flatten()[0]) == pytest.approx(2.0 * 101.0)  # x0_u + g (x0_c - x0_u), x0_u = 0
    three = guided_denoiser(model, 1, attrs, 2.0, (4, 4), attr_guidance=5.0)(x, 0.5)
    assert float(three.flatten()[0]) == pytest.approx(2.0 * 100.0 + 5.0 * 1.0)  # class 2x, attribute 5x
    assert model.denoiser.batches[-1] == 3  # conditional, class only, unconditional
    class_plain = guided_denoiser(model, 1, attrs, 1.0, (4, 4), attr_guidance=5.0)(x, 0.5)
    assert float(class_plain.flatten()[0]) == pytest.approx(100.0 + 5.0 * 1.0)
    assert model.denoiser.batches[-1] == 2  # at class guidance 1 the unconditional branch cancels
    same = guided_denoiser(model, 1, attrs, 2.0, (4, 4), attr_guidance=2.0)(x, 0.5)
    assert torch.equal(same, two)
    absent = torch.full((1, 1), float("nan"))  # no attribute asked: nothing to guide apart
    assert torch.equal(guided_denoiser(model, 1, absent, 2.0, (4, 4), attr_guidance=5.0)(x, 0.5),
                       guided_denoiser(model, 1, absent, 2.0, (4, 4))(x, 0.5))



class _TwoAttributeDenoiser:
    """100 for a class label, +1 for attribute 0 present, +10 for attribute 1 present."""

    def __call__(self, x, t, cond=None, labels=None):
        flags = cond[:, [1, 3]].flatten(2).mean(2)
        value = 100.0 * (labels != NULL).float() + flags[:, 0] + 10.0 * flags[:, 1]
        return value.reshape(-1, 1, 1, 1).expand_as(x)


def test_drawn_attributes_are_guided_with_the_class_and_only_requested_ones_apart():
    from types import SimpleNamespace

    from ldm_med.generation.sampling import guided_denoiser

    model = SimpleNamespace(attributes={"a": {}, "b": {}}, label_names=["c"] * NULL, null_label=NULL,
                            denoiser=_TwoAttributeDenoiser())
    x, nan = torch.zeros(1, 2, 4, 4), float("nan")
    attrs, drawn = torch.tensor([[0.3, -0.2]]), torch.tensor([[nan, -0.2]])  # a requested, b drawn
    out = guided_denoiser(model, 1, attrs, 2.0, (4, 4), attr_guidance=5.0, drawn=drawn)(x, 0.5)
    # x0_u = 0, class-only branch (class + drawn b) = 110, conditional = 111
    assert float(out.flatten()[0]) == pytest.approx(2.0 * 110.0 + 5.0 * 1.0)
    only_drawn = torch.tensor([[nan, -0.2]])  # nothing requested: no branch apart, b guided with the class
    plain = guided_denoiser(model, 1, only_drawn, 2.0, (4, 4), attr_guidance=5.0, drawn=only_drawn)(x, 0.5)
    assert float(plain.flatten()[0]) == pytest.approx(2.0 * 110.0)

def test_attribute_guidance_end_to_end(tiny_generator):
    def one(**kw):
        return ldm_med.generate(_opts(tiny_generator, "astronomical", **kw)).volumes[0]

    attrs = (("n_sources", 40.0),)
    plain = one(attrs=attrs)
    assert np.array_equal(one(attrs=attrs, attr_guidance=2.0).data, plain.data)  # equal scales
    strong = one(attrs=attrs, attr_guidance=6.0)
    assert not np.allclose(strong.data, plain.data)
    assert strong.metadata["provenance"]["attr_guidance"] == 6.0
    assert np.array_equal(one(attr_guidance=6.0).data, one().data)  # no attribute requested


def test_out_of_range_attribute_is_clamped_with_a_warning(tiny_generator):
    with pytest.warns(UserWarning, match="outside the trained range"):
        result = ldm_med.generate(_opts(tiny_generator, attrs=(("body_diameter", 900.0),)))
    assert "clamped to 290" in result.notes[0]
    assert result.volumes[0].metadata["provenance"]["notes"] == result.notes


@pytest.mark.parametrize("argv, message", [
    (["--preset", "galaxy"], "unknown preset"),
    (["--preset", "medical-ct", "--attr", "n_sources=4"], "unknown attribute 'n_sources' for medical-ct"),
    (["--preset", "medical-ct", "--attr", "body_diameter"], "expected NAME=VALUE"),
    (["--preset", "medical-ct", "--size", "18", "18"], "cannot produce size [18, 18]"),
    (["--preset", "medical-ct", "--dims", "3"], "a 2D model, but --dims 3"),
    (["--preset", "medical-ct", "--size", "262144", "262144"], "allocation cap"),
    (["--preset", "medical-ct", "--format", "png", "--n", "0"], "--n must be >= 1"),
    (["--preset", "medical-ct", "--attr-guidance", "-1"], "--attr-guidance must be in [0, 20]"),
])
def test_bad_requests_exit_2_with_one_line(tiny_generator, tmp_path, capsys, argv, message):
    # an unknown shipped preset is refused before any model is loaded
    ckpt = [] if argv[1] == "galaxy" else ["--checkpoint", str(tiny_generator)]
    assert main(["generate", *argv, *ckpt, "--steps", "2", "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_existing_outputs_are_not_overwritten_without_the_flag(tiny_generator, tmp_path, capsys):
    args = ["generate", "--preset", "medical-mr", "--checkpoint", str(tiny_generator), "--n", "1",
            "--steps", "2", "--out", str(tmp_path), "-q"]
    assert main(args) == 0
    before = (tmp_path / "medical-mr_2d_seed0.nii.gz").read_bytes()
    assert main([*args, "--seed", "0"]) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert (tmp_path / "medical-mr_2d_seed0.nii.gz").read_bytes() == before


def test_a_checkpoint_that_is_not_a_generation_model_is_refused(tiny_autoencoder_file, tmp_path, capsys):
    assert main(["generate", "--preset", "medical-ct", "--checkpoint", str(tiny_autoencoder_file), "--out",
                 str(tmp_path), "-q"]) == 2
    assert "not a generation model" in capsys.readouterr().err


def test_list_shows_each_preset_with_its_attribute(tiny_generator, capsys):
    assert main(["generate", "--list", "--checkpoint", str(tiny_generator)]) == 0
    out = capsys.readouterr().out
    for preset in PRESETS:
        assert preset in out
    assert "n_sources=[3, 60] count" in out and "radius_of_gyration" in out


def test_cancel_from_the_progress_callback_stops(tiny_generator):
    seen = []

    def progress(stage, done, total):
        seen.append(done)
        if done >= 2:
            raise ldm_med.Cancelled()

    with pytest.raises(ldm_med.Cancelled):
        ldm_med.generate(_opts(tiny_generator, n=3, steps=3), progress=progress)
    assert max(seen) == 2


def test_a_folder_trained_attribute_moves_samples_the_requested_way(tiny_autoencoder_file, tmp_path):
    """Images whose bright disc has the radius given in attributes.csv; a tiny model trained briefly on
    them must draw bigger discs when asked for a bigger radius."""
    from ldm_med.train import train
    from tests.generation.conftest import tiny_recipe

    data = tmp_path / "discs"
    (data / "disc").mkdir(parents=True)
    yy, xx = np.mgrid[:16, :16] - 7.5
    rows = ["file,radius"]
    rng = np.random.default_rng(0)
    for i in range(24):
        r = 2.0 + 5.0 * (i % 6) / 5
        img = np.where(np.hypot(yy, xx) < r, 1.0, 0.0) + 0.02 * rng.standard_normal((16, 16))
        ldm_med.save_volume(ldm_med.Volume(img[:, :, None].astype(np.float32)), data / "disc" / f"{i}.nii.gz")
        rows.append(f"disc/{i}.nii.gz,{r}")
    (data / "attributes.csv").write_text("\n".join(rows) + "\n")
    cfg = tiny_recipe("generate", "data.sources=[{folder: " + str(data) + "}]", "data.validation=[]",
                      "train.steps=300", "train.val_every=1000", "train.sample_every=1000",
                      "train.ckpt_every=300", "optim.lr=3.0e-3", "data.batch_size=8",
                      "model.channels=[16,16]", "data.crop=[16,16]", autoencoder=tiny_autoencoder_file)
    out = tmp_path / "run"
    torch.set_num_threads(1)
    train(cfg, out, device="cpu", progress=False)
    model = out / "model.safetensors"

    def bright(radius: float) -> float:
        opts = GenerateOptions(preset="disc", checkpoint=str(model), n=6, steps=10, guidance=2.0,
                               attrs=(("radius", radius),))
        vols = ldm_med.generate(opts).volumes
        return float(np.mean([(v.data > 0.5).mean() for v in vols]))  # discs are 1, the rest 0

    small, large = bright(2.0), bright(7.0)  # true disc areas: 5% and 60% of the image
    assert large > small + 0.2, (small, large)


def test_preset_generators_follow_their_attribute():
    from ldm_med.data.presets import PRESETS as TABLE

    for name, preset in TABLE.items():
        values = [preset.measure(preset.sample(seed, 2).data[:, :, 0]) for seed in range(16)]
        spec = preset.attribute
        assert min(values) < spec.low + 0.5 * (spec.high - spec.low) < max(values), (name, values)


def test_stretch_round_trips():
    from ldm_med.data.presets import PRESETS as TABLE

    x = np.array([-1000.0, 0.0, 50.0, 400.0, 2500.0], dtype=np.float32)
    for preset in TABLE.values():
        back = preset.stretch.inverse(preset.stretch.forward(x))
        np.testing.assert_allclose(back, x, rtol=1e-4, atol=1e-3 * preset.stretch.scale)


def test_the_decoder_bias_correction_applies_with_and_without_the_grain(tiny_generator):
    from ldm_med.checkpoint import load_model, save_model

    src = load_model(tiny_generator)

    def with_bias(name, bias):
        extra = dict(src.extra)
        extra["classes"] = {k: {**v, "decoder_bias": bias} for k, v in src.extra["classes"].items()}
        return save_model(tiny_generator.parent / name, src.model, kind=src.kind, config=src.config,
                          extra=extra)

    none = with_bias("none.safetensors", [])
    offset = with_bias("offset.safetensors", [[-5.0, 0.1], [5.0, 0.1]])
    for noise in (False, True):  # MR: a linear stretch, so a constant offset stays constant
        plain = ldm_med.generate(_opts(none, "medical-mr", decoder_noise=noise)).volumes[0].data
        moved = ldm_med.generate(_opts(offset, "medical-mr", decoder_noise=noise)).volumes[0].data
        shift = moved.astype(np.float64) - plain
        assert shift.mean() > 0 and shift.std() < 1e-3 * shift.mean()  # everywhere the same offset


def test_sampling_settings_come_from_the_model_where_guidance_is_not_given():
    from ldm_med.pipelines.generate import sampling_settings

    recorded = {"sampling": {"guidance": 1.0, "attr_guidance": 5.0, "why": "measured"}}
    opts = sampling_settings(GenerateOptions(preset="astronomical"), recorded)
    assert (opts.guidance, opts.attr_guidance) == (1.0, 5.0)
    opts = sampling_settings(GenerateOptions(preset="astronomical"), {})  # nothing recorded
    assert (opts.guidance, opts.attr_guidance) == (2.0, None)
    explicit = sampling_settings(GenerateOptions(preset="astronomical", guidance=3.0), recorded)
    assert (explicit.guidance, explicit.attr_guidance) == (3.0, None)  # recorded scales belong together
    own = sampling_settings(GenerateOptions(preset="astronomical", attr_guidance=2.0), recorded)
    assert (own.guidance, own.attr_guidance) == (1.0, 2.0)


def test_a_recorded_setting_is_used_listed_and_written_into_the_files(recorded):
    from ldm_med.errors import InputError
    from ldm_med.train.recommend import main as recommend
    from ldm_med.train.recommend import record_sampling

    model, listing = recorded("astronomical", "--guidance", "1", "--attr-guidance", "5")
    assert "guidance 1; attribute guidance 5" in listing
    result = ldm_med.generate(_opts(model, "astronomical", attrs=(("n_sources", 30.0),)))
    prov = result.volumes[0].metadata["provenance"]
    assert (prov["guidance"], prov["attr_guidance"]) == (1.0, 5.0)
    again = ldm_med.generate(_opts(model, "astronomical", attrs=(("n_sources", 30.0),), guidance=1.0,
                                   attr_guidance=5.0))
    np.testing.assert_array_equal(again.volumes[0].data, result.volumes[0].data)
    other = ldm_med.generate(_opts(model, "medical-ct")).volumes[0].metadata["provenance"]
    assert other["guidance"] == 2.0  # nothing recorded for that class
    with pytest.raises(InputError, match="no class 'galaxy'"):
        record_sampling(str(model), "galaxy", {"guidance": 1.0})
    with pytest.raises(SystemExit):
        recommend([str(model), "astronomical"])  # no --guidance


def test_a_class_trained_range_is_measured_recorded_listed_and_clamped_to(tiny_generator, tmp_path, capsys):
    """The 3D sky cubes hold fewer sources than the declared (2D) range: a model records what its
    training samples cover per class, and requests are clamped to that."""
    import shutil

    from ldm_med.config import Source
    from ldm_med.generation.model import rewrite_classes
    from ldm_med.train.gendata import RANGE_MIN_SAMPLES, preset_ranges

    few = [Source(preset="astronomical", count=RANGE_MIN_SAMPLES - 1, seed=0)]
    assert preset_ranges(few, (32, 32)) == {}  # too few samples to tell: the declared range stands
    ranges = preset_ranges([Source(preset="molecular", count=RANGE_MIN_SAMPLES, seed=0)], (32, 32))
    low, high = ranges["molecular"]["radius_of_gyration"]
    assert 6.0 <= low < high <= 17.0  # within the declared range, and narrower here
    assert (low, high) != (6.0, 17.0)

    model = tmp_path / "model.safetensors"
    shutil.copy(tiny_generator, model)
    rewrite_classes(model, lambda classes: classes["astronomical"].update(
        attribute_ranges={"n_sources": [5.0, 26.0]}))
    info = ldm_med.generation_model_info(model)["classes"]
    assert (info["astronomical"]["attributes"]["n_sources"]["low"],
            info["astronomical"]["attributes"]["n_sources"]["high"]) == (5.0, 26.0)
    assert info["medical-ct"]["attributes"]["body_diameter"]["high"] == 290.0  # declared: nothing recorded
    assert main(["generate", "--list", "--checkpoint", str(model)]) == 0
    assert "n_sources=[5, 26] count" in capsys.readouterr().out
    with pytest.warns(UserWarning, match=r"outside the trained range of astronomical \[5, 26\]"):
        clamped = ldm_med.generate(_opts(model, "astronomical", attrs=(("n_sources", 40.0),)))
    asked = ldm_med.generate(_opts(model, "astronomical", attrs=(("n_sources", 26.0),)))
    np.testing.assert_array_equal(clamped.volumes[0].data, asked.volumes[0].data)


def test_preset_attributes_read_the_shipped_models_ranges_without_torch():
    import subprocess
    import sys

    code = ("import sys, ldm_med; a = ldm_med.preset_attributes(3)['astronomical']; "
            "d = ldm_med.preset_attributes()['astronomical']; "
            "print(a['low'], a['high'], d['high'], 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = done.stdout.split()
    assert out[2] == "60.0" and out[3] == "False"  # the declared range, and no torch import
    assert float(out[0]) < float(out[1]) <= 60.0


def test_training_attribute_distribution_is_measured_as_quantiles_within_the_range():
    from ldm_med.config import Source
    from ldm_med.train.gendata import QUANTILE_LEVELS, RANGE_MIN_SAMPLES, preset_attribute_records

    rec = preset_attribute_records([Source(preset="molecular", count=RANGE_MIN_SAMPLES, seed=0)], (32, 32))
    low, high = rec["molecular"]["attribute_ranges"]["radius_of_gyration"]
    q = np.array(rec["molecular"]["attribute_quantiles"]["radius_of_gyration"])
    assert q.shape == QUANTILE_LEVELS.shape and np.all(np.diff(q) >= 0)
    assert (q[0], q[-1]) == (low, high)  # values clipped to the range they cover: its ends are theirs
    assert len(np.unique(q)) > 5  # a spread, not one value


def _with_quantiles(tiny_generator, tmp_path):
    import shutil

    from ldm_med.generation.model import rewrite_classes

    model = tmp_path / "drawn.safetensors"
    shutil.copy(tiny_generator, model)
    rewrite_classes(model, lambda classes: classes["astronomical"].update(
        attribute_quantiles={"n_sources": np.linspace(10.0, 50.0, 21).tolist()}), half=False)
    return model


def test_an_attribute_not_requested_is_drawn_per_sample_from_the_training_distribution(tiny_generator,
                                                                                        tmp_path):
    """Unconditioned, guided samples of a class all came out alike (3D CT bodies of one size): the
    attribute is drawn as the training data have it, seeded, recorded, and it is exactly a request."""
    model = _with_quantiles(tiny_generator, tmp_path)
    res = ldm_med.generate(_opts(model, "astronomical", n=4, seed=3))
    drawn = [v.metadata["provenance"]["attrs_drawn"]["n_sources"] for v in res.volumes]
    assert all(10.0 <= d <= 50.0 for d in drawn) and len(set(drawn)) == 4
    again = ldm_med.generate(_opts(model, "astronomical", n=4, seed=3))
    for a, b in zip(res.volumes, again.volumes):  # same seed, same draws, same samples
        assert a.metadata["provenance"]["attrs_drawn"] == b.metadata["provenance"]["attrs_drawn"]
        np.testing.assert_array_equal(a.data, b.data)
    asked = ldm_med.generate(_opts(model, "astronomical", seed=4, attrs=(("n_sources", drawn[1]),)))
    np.testing.assert_array_equal(asked.volumes[0].data, res.volumes[1].data)
    assert asked.volumes[0].metadata["provenance"]["attrs_drawn"] == {}  # a request is not drawn

    free = ldm_med.generate(_opts(model, "astronomical", seed=3, draw_attributes=False)).volumes[0]
    plain = ldm_med.generate(_opts(tiny_generator, "astronomical", seed=3)).volumes[0]  # records none
    assert free.metadata["provenance"]["attrs_drawn"] == {}
    np.testing.assert_array_equal(free.data, plain.data)
    assert not np.array_equal(free.data, res.volumes[0].data)


def test_free_attributes_flag_and_the_drawn_values_in_the_summary(tiny_generator, tmp_path, capsys):
    model = _with_quantiles(tiny_generator, tmp_path)
    base = ["generate", "--preset", "astronomical", "--checkpoint", str(model), "--n", "2", "--steps", "2"]
    assert main([*base, "--out", str(tmp_path / "drawn")]) == 0
    assert "drawn n_sources" in capsys.readouterr().out
    summary = json.loads((tmp_path / "drawn" / "generation.json").read_text())
    assert summary["settings"]["draw_attributes"] is True
    assert all(10.0 <= s["attrs_drawn"]["n_sources"] <= 50.0 for s in summary["samples"])
    assert main([*base, "--free-attributes", "--out", str(tmp_path / "free"), "-q"]) == 0
    summary = json.loads((tmp_path / "free" / "generation.json").read_text())
    assert summary["settings"]["draw_attributes"] is False
    assert [s["attrs_drawn"] for s in summary["samples"]] == [{}, {}]


def test_a_class_can_record_that_its_attributes_stay_free(tiny_generator, tmp_path, capsys):
    """Where drawing measured worse (3D astronomical), the class records it; an explicit choice wins."""
    from ldm_med.train.recommend import main as recommend

    model = _with_quantiles(tiny_generator, tmp_path)
    assert recommend([str(model), "astronomical", "--guidance", "2", "--free-attributes", "--why", "t"]) == 0
    default = ldm_med.generate(_opts(model, "astronomical", seed=3))
    assert default.options.draw_attributes is False
    assert default.volumes[0].metadata["provenance"]["attrs_drawn"] == {}
    forced = ldm_med.generate(_opts(model, "astronomical", seed=3, draw_attributes=True))
    assert "n_sources" in forced.volumes[0].metadata["provenance"]["attrs_drawn"]
    assert main(["generate", "--list", "--checkpoint", str(model)]) == 0
    assert "attributes free" in capsys.readouterr().out


def test_candidates_keep_the_sample_whose_measured_attribute_is_closest_to_the_request(tiny_generator,
                                                                                      monkeypatch):
    monkeypatch.setattr("ldm_med.pipelines.generate.CANDIDATE_TOLERANCE", 0.0)  # draw them all
    request = (("n_sources", 20.0),)
    one = ldm_med.generate(_opts(tiny_generator, "astronomical", attrs=request, seed=3)).volumes[0]
    three = ldm_med.generate(_opts(tiny_generator, "astronomical", attrs=request, seed=3, candidates=3))
    chosen = three.volumes[0].metadata["provenance"]["reranking"]
    assert chosen["attribute"] == "n_sources" and chosen["seeds"][0] == 3 and len(set(chosen["seeds"])) == 3
    assert chosen["miss"][chosen["kept"]] == min(chosen["miss"])
    if chosen["kept"] == 0:  # the first candidate is the sample without reranking
        np.testing.assert_array_equal(three.volumes[0].data, one.data)
    else:
        assert not np.array_equal(three.volumes[0].data, one.data)
    assert "reranking" not in one.metadata["provenance"] and one.metadata["provenance"]["candidates"] == 1
    again = ldm_med.generate(_opts(tiny_generator, "astronomical", attrs=request, seed=3, candidates=3))
    np.testing.assert_array_equal(again.volumes[0].data, three.volumes[0].data)  # reproducible


def test_candidates_need_a_requested_attribute_and_a_valid_count(tiny_generator):
    from ldm_med.errors import InputError

    steps = []
    result = ldm_med.generate(_opts(tiny_generator, "astronomical", candidates=3),
                              progress=lambda stage, done, total: steps.append(total))
    assert "reranking" not in result.volumes[0].metadata["provenance"] and set(steps) == {3}  # one pass
    with pytest.raises(InputError, match="--candidates"):
        _opts(tiny_generator, "astronomical", candidates=0)


def test_recorded_candidates_are_used_and_listed(recorded):
    model, listing = recorded("astronomical", "--guidance", "2", "--candidates", "2")
    assert "2 candidates per --attr sample" in listing
    prov = ldm_med.generate(_opts(model, "astronomical", attrs=(("n_sources", 9.0),))).volumes[0].metadata
    chosen = prov["provenance"]["reranking"]
    assert prov["provenance"]["candidates"] == 2 and len(chosen["seeds"]) in (1, 2)
    assert len(chosen["seeds"]) == 2 or chosen["miss"][0] <= chosen["tolerance"]  # stopped: close enough


def test_candidates_stop_at_the_first_within_the_tolerance(tiny_generator, monkeypatch):
    request = (("n_sources", 20.0),)
    monkeypatch.setattr("ldm_med.pipelines.generate.CANDIDATE_TOLERANCE", 10.0)  # any is close enough
    first = ldm_med.generate(_opts(tiny_generator, "astronomical", attrs=request, seed=3, candidates=3))
    plain = ldm_med.generate(_opts(tiny_generator, "astronomical", attrs=request, seed=3, candidates=1))
    assert first.volumes[0].metadata["provenance"]["reranking"]["seeds"] == [3]
    np.testing.assert_array_equal(first.volumes[0].data, plain.volumes[0].data)
    monkeypatch.setattr("ldm_med.pipelines.generate.CANDIDATE_TOLERANCE", 0.0)
    every = ldm_med.generate(_opts(tiny_generator, "astronomical", attrs=request, seed=3, candidates=3))
    assert len(every.volumes[0].metadata["provenance"]["reranking"]["seeds"]) == 3
