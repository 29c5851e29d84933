"""`correlnet pretrain` / `correlnet evaluate` through studio.cli.main on a tiny synthetic video."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from correlnet.checkpoint import load_model
from studio.cli import main


@pytest.fixture
def tiny_video(tmp_path):
    """8 frames of 64x48 smooth texture drifting right by 1 px per frame (MJPG in an .avi)."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((48, 96)).astype(np.float32), (0, 0), 2)
    base = ((base - base.min()) / (base.max() - base.min()) * 200 + 25).astype(np.uint8)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    assert writer.isOpened()
    for k in range(8):
        writer.write(cv2.cvtColor(np.ascontiguousarray(base[:, k : k + 64]), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_pretrain_dry_run_writes_a_loadable_checkpoint_then_evaluate_reads_it(tiny_video, tmp_path, capsys):
    out = tmp_path / "model.pt"
    code = main(["pretrain", "--source", str(tiny_video), "--encoder", "test_efficientnet", "--out", str(out),
                 "--dry-run", "--crop", "32", "--batch", "2", "--override", "max_displacement=2",
                 "--override", "decoder_channels=8,8,8,8,8", "--threads", "1"])
    assert code == 0
    model = load_model(out)
    meta = model.checkpoint_meta
    assert meta["arch"] == "efficient-correlnet" and meta["encoder"] == "test_efficientnet"
    assert model.config.max_displacement == 2 and meta["train_config"]["dry_run"] is True
    assert meta["metrics"]["step"] == 2
    data = meta["extra"]["data"]  # what it was trained on, which TrainConfig does not say
    assert data["sources"] == [str(tiny_video)] and data["synth"] == "full" and data["crop"] == 32
    assert data["synth_config"]["scratch_prob"] == 0.3 and data["init"] is None
    capsys.readouterr()

    pictures = tmp_path / "fig5"
    code = main(["evaluate", "--model", str(out), "--source", str(tiny_video), "--seed", "4", "--frames", "2",
                 "--json", "--pictures", str(pictures), "--threads", "1"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    overall = report["overall"]
    assert report["frames"] == 2 and set(report["per_sequence"]) == {"clip"}
    assert overall["tp"] + overall["fn"] > 0  # the paper generator drew defects
    assert 0 <= overall["f1"] <= 1 and "fp_rate" in report["scene_trap"]
    assert len(list(pictures.glob("clip_*.png"))) == 2


def test_init_warm_starts_a_grown_network_and_overrides_are_typed(tiny_video, tmp_path, capsys):
    from correlnet.synth import SynthConfig
    from studio.commands.pretrain import parse_overrides
    from studio.commands.sources import synth_config

    assert synth_config("mixed") == SynthConfig.mixed() and synth_config("paper") == SynthConfig.paper()
    with pytest.raises(ValueError, match="'paper', 'full', 'mixed' or 'real'"):
        synth_config("clean")

    assert parse_overrides(["input_skip=true", "stride2=2", "decoder_channels=8,4", "encoder=x"]) == {
        "input_skip": True, "stride2": 2, "decoder_channels": (8, 4), "encoder": "x"}
    assert parse_overrides(["input_skip=False"]) == {"input_skip": False}
    common = ["pretrain", "--source", str(tiny_video), "--encoder", "test_efficientnet", "--dry-run", "--crop", "32",
              "--batch", "2", "--override", "max_displacement=2", "--override", "decoder_channels=8,8,8,8,8",
              "--threads", "1"]
    first = tmp_path / "first.pt"
    assert main(common + ["--out", str(first)]) == 0
    grown = tmp_path / "grown.pt"
    assert main(common + ["--out", str(grown), "--init", str(first), "--override", "input_skip=true"]) == 0
    assert "1 widened ['decoder.stages.4.0.weight']" in capsys.readouterr().out
    assert load_model(grown).config.input_skip is True


def test_bad_sources_and_models_give_a_clear_error(tmp_path, capsys):
    code = main(["pretrain", "--source", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "m.pt"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.mp4" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code = main(["evaluate", "--model", str(bad), "--source", str(tmp_path)])
    assert code == 2 and "bad.pt" in capsys.readouterr().err


def test_registering_the_commands_does_not_import_torch():
    code = (
        "import argparse, sys\n"
        "from studio.commands import evaluate, pretrain\n"
        "sub = argparse.ArgumentParser().add_subparsers()\n"
        "pretrain.register(sub); evaluate.register(sub)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_synth_overrides_change_the_generator_and_are_recorded(tiny_video, tmp_path):
    from correlnet.checkpoint import load_checkpoint_meta
    from correlnet.synth import SynthConfig
    from studio.commands.pretrain import parse_overrides

    assert parse_overrides(["dust_opacity=0.1,1.0", "dust_per_256=0,30"]) == {
        "dust_opacity": (0.1, 1.0), "dust_per_256": (0, 30)}
    with pytest.raises(ValueError, match="comma list must hold numbers"):
        parse_overrides(["dust_opacity=a,b"])
    real = SynthConfig.real()
    changed = real.with_overrides({"dust_opacity": [0.1, 1.0], "sprites.max_speed": 12.0})
    assert changed.dust_opacity == (0.1, 1.0) and changed.sprites.max_speed == 12.0
    assert changed.sprites.speck_prob == real.sprites.speck_prob and real.dust_opacity == (0.35, 1.0)
    with pytest.raises(ValueError, match="dust_opcity"):
        real.with_overrides({"dust_opcity": (0.1, 1.0)})
    with pytest.raises(ValueError, match="sprites.speed"):
        real.with_overrides({"sprites.speed": 3.0})
    with pytest.raises(ValueError, match="need a generator with moving sprites"):
        SynthConfig.paper().with_overrides({"sprites.max_speed": 3.0})
    for bad in ({"dust_opacity": 0.5}, {"dust": 0.3}, {"dust_opacity": (0.1, 0.5, 1.0)}, {"sprites.opacity": "x"}):
        with pytest.raises(ValueError, match="does not fit its current value"):
            real.with_overrides(bad)
    with pytest.raises(ValueError, match="one by one"):
        real.with_overrides({"sprites": (1, 2)})
    assert real.with_overrides({"dust": False, "dust_per_256": (0, 30)}).dust is False

    out = tmp_path / "over.pt"
    assert main(["pretrain", "--source", str(tiny_video), "--encoder", "test_efficientnet", "--dry-run", "--crop", "32",
                 "--batch", "2", "--override", "max_displacement=2", "--override", "decoder_channels=8,8,8,8,8",
                 "--threads", "1", "--synth", "real", "--synth-override", "dust_opacity=0.1,1.0",
                 "--out", str(out)]) == 0
    provenance = load_checkpoint_meta(out)["extra"]["data"]
    assert provenance["synth_overrides"] == ["dust_opacity=0.1,1.0"]
    assert provenance["synth_config"]["dust_opacity"] == [0.1, 1.0]
