"""Whole runs of the tiny recipes on CPU: files written, exact resume, export, CLI errors."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ldm_med.checkpoint import load_inpainting_pair, load_model, load_state
from ldm_med.cli import main
from ldm_med.config import from_dict

PNG = b"\x89PNG"


def _assert_same_state(a, b, path="") -> int:
    """Exact equality of two nested training states (tensors compared bit for bit); returns #tensors."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
        return 1
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        return sum(_assert_same_state(a[k], b[k], f"{path}/{k}") for k in a)
    if isinstance(a, (list, tuple)):
        return sum(_assert_same_state(x, y, f"{path}/{i}") for i, (x, y) in enumerate(zip(a, b, strict=True)))
    assert a == b, path
    return 0


def _states_equal(run_a: Path, run_b: Path) -> None:
    a, _, _ = load_state(run_a / "state.safetensors")
    b, _, _ = load_state(run_b / "state.safetensors")
    assert a["step"] == b["step"]
    assert _assert_same_state(a["task"], b["task"]) > 10
    wa, wb = load_model(run_a).model.state_dict(), load_model(run_b).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_autoencoder_run_writes_logs_samples_and_checkpoints(ae_run):
    names = ("config.yaml", "log.csv", "loss.png", "model.safetensors", "state.safetensors", "summary.json")
    for name in names:
        assert (ae_run / name).is_file(), name
    assert (ae_run / "loss.png").read_bytes()[:4] == PNG
    samples = sorted(p.name for p in (ae_run / "samples").glob("*.png"))
    assert samples == ["step_000003.png", "step_000006.png"]
    assert (ae_run / "samples" / "step_000006.png").read_bytes()[:4] == PNG
    rows = list(csv.DictReader(open(ae_run / "log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]
    assert {"step", "loss", "lr", "time", "val_loss", "l1", "kl", "d_loss"} <= set(rows[0])
    assert rows[1]["val_loss"] and not rows[0]["val_loss"] and rows[-1]["d_loss"]
    pytest.importorskip("tensorboard")
    assert list((ae_run / "tb").glob("events.out.tfevents.*"))


def test_autoencoder_model_file_embeds_config_and_latent_scale(ae_run):
    loaded = load_model(ae_run)
    assert loaded.kind == "autoencoder" and loaded.extra["latent_scale"] > 0 and loaded.extra["step"] == 6
    cfg = from_dict(loaded.config)
    assert cfg.kind == "autoencoder" and cfg.train.steps == 6
    summary = json.loads((ae_run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["precision"] == "fp32" and len(summary["replica_digests"]) == 1


def test_autoencoder_resume_equals_uninterrupted(ae_run, tiny, tmp_path):
    from ldm_med.train import train

    train(tiny("autoencoder"), tmp_path, device="cpu", stop_at=3, progress=False)
    assert load_state(tmp_path / "state.safetensors")[0]["step"] == 3
    train(tiny("autoencoder"), tmp_path, device="cpu", resume=True, progress=False)
    _states_equal(ae_run, tmp_path)  # includes the discriminator, switched on at step 3
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]


@pytest.fixture(scope="module")
def inpainting_run(ae_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inpainting")
    torch.set_num_threads(1)
    recipe = Path(__file__).parents[2] / "configs" / "tiny_diffusion.yaml"
    assert main(["train", "diffusion", "--config", str(recipe), "--autoencoder", str(ae_run),
                 "--out", str(out), "--device", "cpu", "-q"]) == 0
    return out


def test_inpainting_run_and_exact_resume_through_the_cli(inpainting_run, ae_run, tmp_path, configs_dir):
    assert (inpainting_run / "samples" / "step_000006.png").read_bytes()[:4] == PNG
    extra = load_model(inpainting_run).extra
    assert extra["task"] == "slice-inpainting" and extra["residual_scale"] > 0 and extra["prediction"] == "v"
    common = ["--device", "cpu", "-q", "--out", str(tmp_path)]
    assert main(["train", "diffusion", "--config", str(configs_dir / "tiny_diffusion.yaml"),
                 "--autoencoder", str(ae_run / "model.safetensors"), "--stop-at", "3",
                 "--set", "train.sample_every=0", *common]) == 0
    assert main(["train", "diffusion", "--resume", *common]) == 0  # recipe read back from the run
    _states_equal(inpainting_run, tmp_path)


def test_export_half_and_load_the_inpainting_pair(inpainting_run, tmp_path):
    out = tmp_path / "ship" / "denoiser.safetensors"
    assert main(["train", "export", str(inpainting_run), "-o", str(out), "--half",
                 "--autoencoder-out", str(tmp_path / "ship" / "autoencoder.safetensors")]) == 0
    assert out.stat().st_size < 0.6 * (inpainting_run / "model.safetensors").stat().st_size
    ae, den = load_inpainting_pair(out)
    assert den.extra["residual_scale"] == load_model(inpainting_run).extra["residual_scale"]
    ref = load_model(inpainting_run).model.state_dict()
    for key, value in den.model.state_dict().items():
        assert value.dtype == ref[key].dtype
        torch.testing.assert_close(value, ref[key], atol=2e-3, rtol=2e-3)


def test_generation_run_with_class_labels(ae_run, tiny, tmp_path):
    from ldm_med.train import train

    cfg = tiny("diffusion", "task=generation", "model.cond_channels=0", "labels.enabled=true",
               "train.steps=3", autoencoder=ae_run)
    result = train(cfg, tmp_path, device="cpu", progress=False)
    extra = load_model(tmp_path).extra
    assert extra["task"] == "generation" and extra["label_names"] == ["ct", "mr"] and extra["null_label"] == 2
    assert load_model(tmp_path).config["model"]["num_classes"] == 2  # resolved from the sources
    assert (tmp_path / "samples" / "step_000003.png").is_file() and result.step == 3


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys, configs_dir, ae_run):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: autoencoder\ntrian: {steps: 3}\n")
    assert main(["train", "autoencoder", "--config", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "bad.yaml" in capsys.readouterr().err
    assert main(["train", "autoencoder", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "autoencoder", "--config", str(configs_dir / "tiny_autoencoder.yaml"),
                 "--out", str(ae_run), "--device", "cpu"]) == 2  # never overwrite a run
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "diffusion", "--config", str(configs_dir / "tiny_diffusion.yaml"),
                 "--autoencoder", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "d")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def _signal_after(monkeypatch, at_step: int, signum: int, times: int = 1) -> None:
    """Make the loop receive ``signum`` (``times`` times) while it is in step ``at_step``."""
    from ldm_med.train import loop

    real = loop._train_step

    def step_then_signal(task, cfg, step, ctx):
        result = real(task, cfg, step, ctx)
        if step == at_step:
            for _ in range(times):
                signal.raise_signal(signum)
        return result

    monkeypatch.setattr(loop, "_train_step", step_then_signal)


def test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_resume_equals_uninterrupted(
        ae_run, tiny, tmp_path, monkeypatch, capsys):
    from ldm_med.train import train

    _signal_after(monkeypatch, at_step=3, signum=signal.SIGINT)  # step 4 of 6; periodic checkpoints at 3, 6
    with pytest.raises(KeyboardInterrupt):
        train(tiny("autoencoder"), tmp_path, device="cpu", progress=False)
    assert "stopped by SIGINT after step 4 of 6" in capsys.readouterr().out
    assert load_state(tmp_path / "state.safetensors")[0]["step"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    monkeypatch.undo()
    train(tiny("autoencoder"), tmp_path, device="cpu", resume=True, progress=False)
    _states_equal(ae_run, tmp_path)


def test_a_second_ctrl_c_stops_at_once_keeping_the_last_periodic_checkpoint(tiny, tmp_path, monkeypatch):
    from ldm_med.train import train

    _signal_after(monkeypatch, at_step=3, signum=signal.SIGINT, times=2)
    with pytest.raises(KeyboardInterrupt):
        train(tiny("autoencoder"), tmp_path, device="cpu", progress=False)
    assert load_state(tmp_path / "state.safetensors")[0]["step"] == 3


def test_sigterm_to_a_training_process_then_resume_equals_uninterrupted(tmp_path, configs_dir):
    """A real process and a real signal, as a scheduler sends it before pre-empting a job."""
    recipe = str(configs_dir / "tiny_autoencoder.yaml")
    common = ["--config", recipe, "--device", "cpu", "-q", "--steps", "2000",
              "--set", "train.log_every=1", "--set", "train.sample_every=0", "--set", "train.val_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "ldm_med", "train", "autoencoder"]
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen([*run, *common, "--out", str(stopped)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = stopped / "log.csv"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) > 3):  # header + 3 steps
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    step = load_state(stopped / "state.safetensors")[0]["step"]
    assert 3 <= step < 2000 and f"stopped by SIGTERM after step {step} of 2000" in out
    assert not list(stopped.glob("*.tmp*"))  # nothing half-written beside the checkpoint

    target = ["--stop-at", str(step + 2)]
    assert subprocess.run([*run, "--out", str(stopped), "--resume", "-q", *target], env=env).returncode == 0
    straight = tmp_path / "straight"
    assert subprocess.run([*run, *common, "--out", str(straight), *target], env=env).returncode == 0
    _states_equal(straight, stopped)
