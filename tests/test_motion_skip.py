"""The motion skip (`ModelConfig.motion_skip`): the network's full-resolution skip also carries the
two DIS-compensated differences of its input triplet (issue 12's optical-flow-aligned input)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from correlnet.checkpoint import init_from_checkpoint, load_model, save_checkpoint
from correlnet.model_export import export_model
from correlnet.models import ModelConfig
from correlnet.models.decoder import MOTION_GAIN
from correlnet.models.padding import InputPadder
from correlnet.runtime import accelerate
from correlnet.sdi import compensated_channels
from tests.model_fixtures import tiny_model


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random texture in [0.2, 0.8] that DIS can track."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.5)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (0.2 + 0.6 * noise).astype(np.float32)


def test_compensated_channels_see_a_one_frame_speck_and_not_the_camera_motion():
    """Hand-built case: the scene pans 3 px a frame to the right; the middle frame alone holds a
    5x5 speck 0.3 lighter. After compensation both differences are +0.3 on the speck (a defect
    differs from both neighbours with one sign) and near zero on the moving scene around it."""
    big = _texture(80, 120, seed=3)
    prev, mid, nxt = (big[8:72, 8 + s : 104 + s].copy() for s in (0, 3, 6))
    mid[30:35, 40:45] += 0.3
    out = compensated_channels(torch.from_numpy(np.stack([prev, mid, nxt]))[None])
    assert out.shape == (1, 2, 64, 96) and out.dtype == torch.float32
    d = out[0].numpy()
    np.testing.assert_allclose(d[:, 31:34, 41:44], 0.3, atol=0.05)
    interior = np.ones((64, 96), bool)
    interior[:, :8] = interior[:, -8:] = False  # the pan uncovers the frame's sides
    interior[26:39, 36:49] = False  # the speck and its flow's neighbourhood
    assert np.abs(d[:, interior]).mean() < 0.01
    # a light frame (flicker) moves every pixel alike: the median removed, it is no evidence
    flick = compensated_channels(torch.from_numpy(np.stack([prev, np.clip(mid + 0.1, 0, 1), nxt]))[None])
    assert abs(float(flick[0, :, interior].median())) < 0.005


def test_compensated_channels_keep_device_dtype_and_batch_items_apart():
    frames = torch.from_numpy(np.stack([_texture(32, 48, seed=s) for s in (1, 1, 1)]))
    speck = frames.clone()
    speck[1, 10:13, 20:23] = 1.0
    out = compensated_channels(torch.stack([frames, speck]).double())
    assert out.dtype == torch.float64 and out.shape == (2, 2, 32, 48)
    assert float(out[0].abs().max()) < 1e-6  # identical frames: no evidence at all
    assert float(out[1, :, 11, 21].min()) > 0.15


def test_motion_skip_config_needs_the_input_skip():
    with pytest.raises(ValueError, match="needs input_skip"):
        ModelConfig(motion_skip=True)
    with pytest.raises(ValueError, match="true or false"):
        ModelConfig(input_skip=True, motion_skip="yes")
    with pytest.raises(ValueError, match="option of our U-Net decoder"):
        ModelConfig(arch="unet", encoder="resnet18", input_skip=True, motion_skip=True)
    assert ModelConfig().motion_skip is False  # checkpoints written before the option load unchanged


def test_grown_motion_skip_model_computes_the_same_until_trained_and_then_uses_the_evidence(tmp_path):
    """Warm start from a model without the skip (the way the candidate was trained): the stage gains
    two zero input channels, so the outputs are unchanged; with weight on them the logits follow
    MOTION_GAIN times the compensated differences."""
    torch.manual_seed(5)
    x = torch.rand(2, 3, 37, 53)
    old = tiny_model("efficient-correlnet", input_skip=True).eval()
    path = save_checkpoint(tmp_path / "old.pt", old)
    grown = tiny_model("efficient-correlnet", input_skip=True, motion_skip=True)
    report = init_from_checkpoint(grown, path)
    assert report["widened"] == ["decoder.stages.4.0.weight"] and report["kept"] == []
    grown.eval()
    with torch.no_grad():
        torch.testing.assert_close(grown(x), old(x), rtol=0, atol=1e-6)
        conv = grown.decoder.stages[-1][0]
        conv.weight[:, -2:] = 0.0
        conv.weight[:, -2:, 1, 1] = 1.0  # centre tap: the two differences' sum, before BN and ReLU
        moved = grown(x)
    assert not torch.allclose(moved, old(x), atol=1e-3)
    saved = load_model(save_checkpoint(tmp_path / "grown.pt", grown))
    assert saved.config.motion_skip is True
    with torch.no_grad():
        torch.testing.assert_close(saved(x), moved, rtol=0, atol=1e-6)
    assert MOTION_GAIN > 0


def test_motion_fusion_grows_from_a_motion_skip_model_and_reads_the_evidence(tmp_path):
    """The fusion's two new input channels start at zero (same outputs as the model it grew from);
    weighted, a one-frame speck moves the logits more than the same speck in all three frames (which
    the compensated differences do not show)."""
    torch.manual_seed(8)
    old = tiny_model("efficient-correlnet", input_skip=True, motion_skip=True).eval()
    path = save_checkpoint(tmp_path / "skip.pt", old)
    grown = tiny_model("efficient-correlnet", input_skip=True, motion_skip=True, motion_fusion=True)
    report = init_from_checkpoint(grown, path)
    assert report["widened"] == ["fuse.0.weight"] and report["kept"] == []
    frames = torch.from_numpy(np.stack([_texture(40, 56, seed=4)] * 3))[None]
    one = frames.clone()
    one[0, 1, 18:23, 26:31] += 0.3
    everywhere = frames.clone()
    everywhere[0, :, 18:23, 26:31] += 0.3
    grown.eval()
    with torch.no_grad():
        torch.testing.assert_close(grown(one), old(one), rtol=0, atol=1e-6)
        grown.fuse[0].weight[:, -2:] = 1.0
        moved = (grown(one) - old(one)).abs().max()
        static = (grown(everywhere) - old(everywhere)).abs().max()
    assert moved > 1e-3 and static < 1e-5
    with pytest.raises(ValueError, match="needs motion_skip"):
        ModelConfig(input_skip=True, motion_fusion=True)


@pytest.mark.parametrize("arch", ["efficient-correlnet", "correlnet"])
@pytest.mark.parametrize("fusion", [False, True])
def test_streaming_api_equals_forward_with_the_motion_skip(arch, fusion):
    torch.manual_seed(2)
    model = tiny_model(arch, input_skip=True, motion_skip=True, motion_fusion=fusion).eval()
    with torch.no_grad():
        model.decoder.stages[-1][0].weight[:, -2:] = 0.5  # the evidence counts
        if fusion:
            model.fuse[0].weight[:, -2:] = 0.5
    x = torch.rand(2, 3, 37, 53)
    padder = InputPadder(37, 53, model.size_multiple)
    xp = padder.pad(x)
    with torch.no_grad():
        prev, mid, nxt = (model.stem_features(xp[:, k : k + 1]) for k in range(3))
        logits = model.head(mid, model.pair_correlation(mid, prev), model.pair_correlation(mid, nxt), xp)
        torch.testing.assert_close(padder.unpad(logits), model(x), rtol=1e-4, atol=1e-5)


def _motion_model(seed: int = 0):
    torch.manual_seed(seed)
    model = tiny_model("efficient-correlnet", input_skip=True, motion_skip=True, motion_fusion=True).eval()
    with torch.no_grad():  # the evidence weighs, so a wrong motion input shows in the output
        model.decoder.stages[-1][0].weight[:, -2:] = 2.0
        model.fuse[0].weight[:, -2:] = 2.0
    return model


def _speck_triplet(h: int, w: int) -> np.ndarray:
    big = _texture(h + 8, w + 8, seed=9)
    frames = np.stack([big[4 : 4 + h, s : s + w] for s in (2, 4, 6)])
    frames[1, 10:14, 12:16] = 0.95
    return np.rint(frames * 255) / 255  # what a runner reads back from 8-bit files


def test_motion_skip_models_run_eagerly_on_accelerated_runtimes():
    model = _motion_model()
    assert accelerate(model, "cpu", "onnxruntime") is model


def test_exported_motion_model_takes_the_motion_input_and_matches_eager(tmp_path):
    """Exported at a size that needs padding (37 x 53 -> 64 x 64): the graph's "motion" input, computed
    outside on the edge-padded frames (`motion_input`), gives the eager network's probabilities."""
    ort = pytest.importorskip("onnxruntime")
    import json

    from correlnet.model_export import motion_input

    model = _motion_model()
    path, meta_path = export_model(model, "onnx", tmp_path / "m", 37, 53)
    meta = json.loads(meta_path.read_text())
    assert meta["motion_input"]["name"] == "motion" and meta["motion_input"]["shape"] == [1, 2, 64, 64]
    x = _speck_triplet(37, 53)[None].astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["frames", "motion"]
    got = session.run(None, {"frames": x, "motion": motion_input(x, (1, 2, 64, 64))})[0]
    with torch.inference_mode():
        ref = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    assert np.abs(got - ref).max() <= 1e-4
    wrong = session.run(None, {"frames": x, "motion": np.zeros((1, 2, 64, 64), np.float32)})[0]
    assert np.abs(wrong - ref).max() > 1e-2  # the input is used: no evidence, another answer


def test_farm_script_computes_the_motion_input_itself(tmp_path):
    """scripts/farm_detect.py (no correlnet) on a motion model's export gives the network's mask."""
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys
    from pathlib import Path

    model = _motion_model(seed=1)
    with torch.no_grad():
        model.decoder.logits.bias += 1.5  # a mask with some of both
    path, _ = export_model(model, "onnx", tmp_path / "m", 37, 53)
    frames = _speck_triplet(37, 53)
    pngs = []
    for i, f in enumerate(frames):
        pngs.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(pngs[-1]), np.rint(f * 255).astype(np.uint8))
    script = Path(__file__).resolve().parents[1] / "scripts" / "farm_detect.py"
    subprocess.run([sys.executable, str(script), str(path), *map(str, pngs), str(tmp_path / "mask.png")],
                   check=True, cwd=tmp_path)
    with torch.inference_mode():
        ref = torch.sigmoid(model(torch.from_numpy(frames[None].astype(np.float32)))).numpy()[0, 0]
    mask = cv2.imread(str(tmp_path / "mask.png"), cv2.IMREAD_GRAYSCALE)
    assert 0 < (ref >= 0.5).sum() < ref.size
    assert np.all(((mask > 0) == (ref >= 0.5)) | (np.abs(ref - 0.5) < 1e-3))
