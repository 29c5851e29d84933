"""correlnet.evaluate, correlnet.scene_trap and the trap's blobs (correlnet.synth.scene) on hand-made cases with stub detectors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import correlnet.synth
from correlnet.evaluate import (
    FN_COLOUR,
    FP_COLOUR,
    TP_COLOUR,
    EvalConfig,
    centre_frames,
    evaluate_sequences,
    fig5_picture,
)
from correlnet.synth.scene import SceneBlobConfig, add_scene_blobs, global_shift

DEVICE = torch.device("cpu")


class DarkDetector(nn.Module):
    """Single-frame stub: flags every dark pixel of the middle frame (probability 1 below 0.3)."""

    size_multiple = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[:, 1:2] < 0.3, 20.0, -20.0)


class TemporalDetector(nn.Module):
    """Stub that only flags pixels differing from both neighbours, as a defect does."""

    size_multiple = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev, mid, nxt = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        differs = ((mid - prev).abs() > 0.2) & ((mid - nxt).abs() > 0.2)
        return torch.where(differs, 20.0, -20.0)


def fixed_defects(clean, cfg, rng):
    """Stub generator: a dark 4x5 blotch at (2, 3) of the middle frame; mask marks a 4x6 box,
    so one marked pixel column is invisible to the detector (a false negative)."""
    degraded = clean.copy()
    degraded[1, 2:6, 3:8] = 0.0
    masks = np.zeros(clean.shape, bool)
    masks[1, 2:6, 3:9] = True
    return degraded, masks


def test_hand_made_case_gives_hand_computed_scores(monkeypatch, tmp_path):
    monkeypatch.setattr(correlnet.synth, "degrade_triplet", fixed_defects)
    clip = np.full((5, 16, 24), 0.6, np.float32)
    clip[:, 10:12, 20:23] = 0.1  # a dark scene detail, 6 pixels: false positives for DarkDetector
    cfg = EvalConfig(seed=1, triplets_per_sequence=2, scene_trap=False)
    report = evaluate_sequences(DarkDetector(), {"a": clip, "b": clip}, None, cfg, DEVICE, pictures_dir=tmp_path)
    # Per frame: TP 20, FP 6, FN 4; two frames per sequence, two sequences.
    a = report.per_sequence["a"]
    assert (a.tp, a.fp, a.fn) == (40, 12, 8)
    assert (report.total.tp, report.total.fp, report.total.fn) == (80, 24, 16)
    assert report.total.precision == pytest.approx(20 / 26)
    assert report.total.recall == pytest.approx(20 / 24)
    assert report.total.f1 == pytest.approx(40 / 50)
    assert report.to_dict()["overall"]["f1"] == pytest.approx(0.8) and report.frames == 4

    # Fig. 5 picture of the first evaluated frame: green TP, blue FP, red FN, gray elsewhere.
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    assert files == ["a_000001.png", "a_000003.png", "b_000001.png", "b_000003.png"]
    rgb = cv2.imread(str(tmp_path / "a_000001.png"))[..., ::-1]
    assert tuple(rgb[3, 4]) == TP_COLOUR == (0, 255, 0)
    assert tuple(rgb[10, 21]) == FP_COLOUR == (0, 0, 255)
    assert tuple(rgb[3, 8]) == FN_COLOUR == (255, 0, 0)
    assert tuple(rgb[0, 0]) == (153, 153, 153)  # 0.6 * 255


def test_fig5_picture_colours_and_shape_check():
    frame = np.array([[0.0, 1.0], [0.5, 0.2]], np.float32)
    pred = np.array([[1, 1], [0, 0]], bool)
    true = np.array([[1, 0], [1, 0]], bool)
    rgb = fig5_picture(frame, pred, true)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [0, 255, 0] and rgb[0, 1].tolist() == [0, 0, 255]
    assert rgb[1, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [51, 51, 51]
    with pytest.raises(ValueError, match="share one"):
        fig5_picture(frame, pred[:1], true)


def test_evaluation_is_deterministic_for_a_seed_with_the_real_generator():
    from correlnet.synth import SynthConfig

    rng = np.random.default_rng(0)
    clip = cv2.GaussianBlur(rng.random((4, 40, 48)).astype(np.float32), (0, 0), 2)
    cfg = EvalConfig(seed=5, triplets_per_sequence=2, scene_trap=False)
    runs = [evaluate_sequences(DarkDetector(), {"s": clip}, SynthConfig.paper(), cfg, DEVICE).total for _ in range(2)]
    other = evaluate_sequences(DarkDetector(), {"s": clip}, SynthConfig.paper(), EvalConfig(seed=6, triplets_per_sequence=2,
                               scene_trap=False), DEVICE).total
    assert runs[0] == runs[1] and runs[0].tp + runs[0].fn > 0
    assert other != runs[0]


def moving_clip(shift=(2, -3), n=4, size=(64, 80)) -> np.ndarray:
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur(rng.random((size[0] + 40, size[1] + 40)).astype(np.float32), (0, 0), 3)
    base = (base - base.min()) / (base.max() - base.min()) * 0.4 + 0.3  # no pixel as dark as a blob
    frames = [np.roll(base, (k * shift[0], k * shift[1]), axis=(0, 1))[20:-20, 20:-20] for k in range(n)]
    return np.stack(frames).astype(np.float32)


def test_scene_blobs_move_with_the_camera():
    clip = moving_clip(shift=(2, -3))
    assert global_shift(clip[0], clip[1]) == (2, -3)
    frames, mask, blobs = add_scene_blobs(clip[:3], SceneBlobConfig(count=3), np.random.default_rng(0))
    assert len(blobs) == 3 and mask.sum() > 0
    ys, xs = np.nonzero(mask[6:-6, 6:-6])
    ys, xs = ys + 6, xs + 6
    # The blob seen at p in the middle frame is at p - shift in the previous frame, p + shift in the next.
    assert np.allclose(frames[1][ys, xs], frames[0][ys - 2, xs + 3], atol=1e-6)
    assert np.allclose(frames[1][ys, xs], frames[2][ys + 2, xs - 3], atol=1e-6)


def test_scene_trap_separates_single_frame_from_temporal_detectors(monkeypatch):
    monkeypatch.setattr(correlnet.synth, "degrade_triplet", fixed_defects)
    clip = moving_clip(shift=(1, 2), n=3)
    cfg = EvalConfig(seed=0, triplets_per_sequence=1, scene_blobs=SceneBlobConfig(count=4, dark_range=(0.0, 0.1),
                     light_range=(0.0, 0.1)))
    single = evaluate_sequences(DarkDetector(), {"s": clip}, None, cfg, DEVICE).scene
    temporal = evaluate_sequences(TemporalDetector(), {"s": clip}, None, cfg, DEVICE).scene
    assert single.blobs == temporal.blobs > 0 and single.blob_pixels == temporal.blob_pixels
    assert single.fp_rate > 0.6 and single.blob_fp_rate > 0.5
    assert temporal.fp_rate < 0.05 and temporal.blobs_flagged == 0


def test_centre_frames_spread_and_need_three_frames():
    assert centre_frames(11, 3) == [1, 5, 9]
    assert centre_frames(4, 12) == [1, 2]
    with pytest.raises(ValueError, match="at least 3 frames"):
        centre_frames(2, 1)


def test_the_shipped_default_model_loads_and_a_missing_one_says_what_to_do(tmp_path, monkeypatch):
    import correlnet.default_model as dm
    from correlnet.checkpoint import load_model

    model = load_model(dm.default_model_path())
    assert model.config.arch == "efficient-correlnet" and model.checkpoint_meta["train_config"]["steps"] >= 1000
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 40, 56)).shape == (1, 1, 40, 56)
    monkeypatch.setattr(dm, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="CORRELNET_DEFAULT_MODEL"):
        dm.default_model_path()
