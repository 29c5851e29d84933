"""Checkpoints: identical outputs after save -> load, metadata restored, unusable files rejected clearly."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

import correlnet
from correlnet.checkpoint import (
    CheckpointError,
    init_from_checkpoint,
    load_checkpoint_meta,
    load_model,
    save_checkpoint,
)
from correlnet.models import ARCHS
from model_fixtures import tiny_model


@dataclasses.dataclass(frozen=True)
class _TrainCfg:
    lr: float = 1e-3
    steps: int = 10
    crop: tuple[int, int] = (256, 256)


def _trained_bn(model, x):
    """One train-mode pass so BatchNorm running stats differ from their defaults."""
    model.train()
    with torch.no_grad():
        model(torch.cat([x, x.flip(-1)]))
    return model.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_gives_identical_outputs(arch, tmp_path):
    torch.manual_seed(3)
    x = torch.rand(2, 3, 37, 53)
    model = _trained_bn(tiny_model(arch), x)
    with torch.no_grad():
        expected = model(x)
    path = save_checkpoint(tmp_path / "m.pt", model, metrics={"f1": 0.5})
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_metadata_round_trip(tmp_path):
    model = tiny_model("efficient-correlnet")
    metrics = {"val": {"f1": 0.71, "precision": 0.8}, "steps": 12}
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, metrics=metrics, train_config=_TrainCfg(),
                           extra={"film": "robbery", "parents": [1, 2]})
    meta = load_checkpoint_meta(path)
    assert meta["arch"] == "efficient-correlnet" and meta["encoder"] == "test_efficientnet"
    assert meta["model_config"] == model.config.to_dict()
    assert meta["metrics"] == metrics
    assert meta["train_config"] == {"lr": 1e-3, "steps": 10, "crop": [256, 256]}
    assert meta["extra"] == {"film": "robbery", "parents": [1, 2]}
    assert meta["library_version"] == correlnet.__version__ and meta["created"].endswith("+00:00")
    assert "state_dict" not in meta
    assert load_model(path).checkpoint_meta == meta
    assert os.listdir(tmp_path / "sub") == ["m.pt"]  # no temp file left behind


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    model = tiny_model("efficient-unet")
    path = save_checkpoint(tmp_path / "m.pt", model, metrics={"f1": 0.1})
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, metrics={"f1": 0.9})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.pt"]


def test_non_plain_metrics_rejected(tmp_path):
    with pytest.raises(TypeError, match="metrics.f1"):
        save_checkpoint(tmp_path / "m.pt", tiny_model("unet"), metrics={"f1": torch.tensor(0.5)})
    assert not (tmp_path / "m.pt").exists()


def _good_file(tmp_path):
    return save_checkpoint(tmp_path / "good.pt", tiny_model("efficient-unet"))


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "state_dict", "future"])
def test_unusable_files_raise_checkpoint_error(kind, tmp_path):
    path = tmp_path / f"{kind}.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, this is not a model\n")
    elif kind == "truncated":
        data = _good_file(tmp_path).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "state_dict":
        torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    elif kind == "future":
        data = torch.load(_good_file(tmp_path), weights_only=True)
        torch.save({**data, "format_version": 99}, path)
    for fn in (load_model, load_checkpoint_meta):
        with pytest.raises(CheckpointError) as err:
            fn(path)
        assert str(path) in str(err.value)
        assert any(w in str(err.value) for w in ("check the path", "re-save", "upgrade"))


def test_weights_not_matching_config_raise(tmp_path):
    data = torch.load(_good_file(tmp_path), weights_only=True)
    data["model_config"]["decoder_channels"] = [8, 8, 8, 8, 8]
    path = tmp_path / "tampered.pt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(path)


def test_init_from_checkpoint_grows_the_decoder_without_changing_outputs(tmp_path):
    torch.manual_seed(6)
    x = torch.rand(2, 3, 37, 53)
    old = _trained_bn(tiny_model("efficient-correlnet"), x)
    path = save_checkpoint(tmp_path / "old.pt", old)
    grown = tiny_model("efficient-correlnet", input_skip=True)
    report = init_from_checkpoint(grown, path)
    assert report["widened"] == ["decoder.stages.4.0.weight"] and report["kept"] == []
    assert len(report["copied"]) == len(old.state_dict()) - 1
    w = grown.decoder.stages[-1][0].weight
    assert torch.equal(w[:, :-3], old.decoder.stages[-1][0].weight) and not w[:, -3:].any()
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(x), old(x), rtol=0, atol=1e-6)
    with pytest.raises(CheckpointError, match="shares no weights"):
        init_from_checkpoint(tiny_model("unet"), path)


def test_init_from_checkpoint_adds_refine_blocks_without_changing_outputs(tmp_path):
    """The shipped model's refine block was added to a trained network this way (docs/training.md)."""
    torch.manual_seed(7)
    x = torch.rand(2, 3, 37, 53)
    old = _trained_bn(tiny_model("efficient-correlnet", input_skip=True), x)
    path = save_checkpoint(tmp_path / "old.pt", old)
    grown = tiny_model("efficient-correlnet", input_skip=True, refine_convs=1)
    report = init_from_checkpoint(grown, path)
    assert report["copied"] == list(old.state_dict()) and report["widened"] == []
    assert report["kept"] == [k for k in grown.state_dict() if k.startswith("decoder.refine.0.")]
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(x), old.eval()(x), rtol=0, atol=0)
        torch.testing.assert_close(grown.train()(x), old.train()(x), rtol=0, atol=0)
    saved = load_model(save_checkpoint(tmp_path / "grown.pt", grown))
    assert saved.config.refine_convs == 1
