"""The temporal gate: a mark stands only where the frame differs from both compensated neighbours."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from correlnet.checkpoint import load_model, save_checkpoint
from correlnet.models import ModelConfig
from correlnet.prediction import default_neighbours, detect_frames, predict_triplet_tiled
from correlnet.temporal_gate import GateConfig, gate_config_of, gate_probs, sure_config, temporal_evidence
from correlnet.tiling import TilingConfig
from tests.model_fixtures import tiny_model

H, W = 96, 128


def textured(seed: int = 0) -> np.ndarray:
    """A smooth random texture (H, W) in [0.2, 0.8]: something for the optical flow to lock on to."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((H // 8 + 1, W // 8 + 1)).astype(np.float32)
    import cv2

    return (0.2 + 0.6 * cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC).clip(0, 1)).astype(np.float32)


def static_scene(noise_seed: int = 1) -> np.ndarray:
    """(3, H, W): one textured frame with a dark 2-px vertical line and an edge, three times, with
    independent sensor noise (std 0.005)."""
    base = textured()
    base[:, 40:42] = 0.05  # a thin static dark line
    base[:, 90:] += 0.15  # a static vertical edge
    rng = np.random.default_rng(noise_seed)
    return np.clip(base[None] + rng.normal(0, 0.005, (3, H, W)), 0, 1).astype(np.float32)


def test_static_line_mark_is_dropped_and_one_frame_speck_is_kept():
    frames = static_scene()
    frames[1, 60:65, 20:25] = 0.98  # a light speck in the middle frame only
    probs = np.zeros((H, W), np.float32)
    probs[:, 39:43] = 0.9  # the network marks the static line along its whole height
    probs[:, 89:91] = 0.8  # and the static edge
    probs[59:66, 19:26] = 0.95  # and the speck
    out = gate_probs(probs, *frames, GateConfig())
    assert out[:, 39:43].max() == 0.0 and out[:, 89:91].max() == 0.0
    np.testing.assert_array_equal(out[59:66, 19:26], probs[59:66, 19:26])  # kept whole, unchanged


def test_evidence_of_a_speck_over_a_shifting_background_and_none_on_a_moving_bar():
    base = textured(3)
    frames = np.stack([np.roll(base, s, axis=1) for s in (-3, 0, 3)])  # a camera pan, 3 px per frame
    # A dark 16-px block with its own motion, 8 px per frame. (DIS loses objects of a few px that move
    # 10 px or more per frame: there the gate cannot veto and the network must judge.)
    for k, x in enumerate((32, 40, 48)):
        frames[k, 16:32, x : x + 16] = 0.05
    frames[1, 70:74, 100:104] = 0.95  # a speck in the middle frame only
    evidence = temporal_evidence(*frames, GateConfig(dilate_px=0))
    assert evidence[71:73, 101:103].all()
    assert evidence[16:32, 40:56].mean() < 0.1
    assert evidence[5:15, 5:120].mean() < 0.02  # the panned texture itself


def test_global_flicker_is_not_evidence():
    frames = static_scene()
    frames[1] = np.clip(frames[1] + 0.06, 0, 1)  # the middle frame brighter than both neighbours
    probs = np.zeros((H, W), np.float32)
    probs[:, 39:43] = 0.9
    assert gate_probs(probs, *frames, GateConfig()).max() == 0.0


def test_a_mark_stands_whole_when_enough_of_it_has_evidence_and_values_below_the_threshold_stay():
    frames = static_scene()
    frames[1, 10:14, 10:14] = 0.98  # 16 px of evidence
    probs = np.zeros((H, W), np.float32)
    probs[8:22, 8:22] = 0.7  # a 196-px mark: 16 px of evidence, dilated by 2 -> 64 px = 33 % >= 20 %
    probs[50:52, 100:102] = 0.3  # below the mark threshold: not a mark, left alone
    out = gate_probs(probs, *frames, GateConfig())
    np.testing.assert_array_equal(out, probs)
    strict = gate_probs(probs, *frames, GateConfig(min_support=0.5))
    assert strict[8:22, 8:22].max() == 0.0 and strict[50, 100] == pytest.approx(0.3)


def test_gate_off_is_the_identity_and_bad_config_raises():
    frames = static_scene()
    probs = np.random.default_rng(0).random((H, W)).astype(np.float32)
    np.testing.assert_array_equal(gate_probs(probs, *frames, GateConfig(threshold=0.0)), probs)
    with pytest.raises(ValueError, match="threshold"):
        GateConfig(threshold=1.5)
    with pytest.raises(ValueError, match="temporal_gate"):
        ModelConfig(temporal_gate=-0.1)
    with pytest.raises(ValueError, match="share one"):
        gate_probs(probs[:10], *frames, GateConfig())


def test_model_config_gate_travels_with_the_checkpoint_and_applies_in_both_prediction_paths(tmp_path):
    torch.manual_seed(0)
    plain = tiny_model("efficient-correlnet").eval()
    gated = tiny_model("efficient-correlnet", temporal_gate=0.03).eval()
    gated.load_state_dict(plain.state_dict())
    path = save_checkpoint(tmp_path / "gated.pt", gated)
    loaded = load_model(path)
    assert loaded.config.temporal_gate == pytest.approx(0.03)
    assert gate_config_of(loaded).enabled and not gate_config_of(plain).enabled

    clip = np.concatenate([static_scene(seed)[:1] for seed in range(4)])  # four frames of one static scene
    clip[2, 30:36, 60:66] = 0.97  # a speck in frame 2 only
    cfg, cpu = TilingConfig(), torch.device("cpu")
    raw = predict_triplet_tiled(plain, clip[1:4], cfg, cpu)
    gate_cfg = GateConfig(threshold=0.03)
    expected = gate_probs(raw, *clip[1:4], gate_cfg)
    np.testing.assert_allclose(predict_triplet_tiled(loaded, clip[1:4], cfg, cpu), expected, atol=1e-5)
    np.testing.assert_allclose(predict_triplet_tiled(loaded, clip[1:4], cfg, cpu, gate=False), raw, atol=1e-5)
    streamed = dict(detect_frames(loaded, lambda j: clip[j], default_neighbours(len(clip)), cfg, cpu))
    np.testing.assert_allclose(streamed[2], expected, atol=1e-4)


class _ColumnMarker(torch.nn.Module):
    """A stub detector with the gate and sure marks on: it marks a static column of every frame
    (no temporal evidence: the gate must drop it) and nothing else (the sure marks must add the specks)."""

    size_multiple = 1

    def __init__(self):
        super().__init__()
        self.config = ModelConfig(temporal_gate=0.03, sure_marks=0.09)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        logits = torch.full_like(frames[:, 1:2], -20.0)
        logits[..., 10:60, 100:103] = 20.0
        return logits


def test_the_gate_computed_beside_the_network_gives_every_frame_its_own_gate():
    base = textured(7)
    clip = np.stack([np.clip(base + 0.003 * np.random.default_rng(k).standard_normal(base.shape), 0, 1)
                     for k in range(6)]).astype(np.float32)
    specks = {1: (20, 30), 2: (40, 60), 4: (70, 20)}  # a different one-frame speck in three frames
    for k, (y, x) in specks.items():
        clip[k, y : y + 3, x : x + 3] += 0.3
    model, cfg, cpu = _ColumnMarker().eval(), TilingConfig(), torch.device("cpu")
    neighbours = default_neighbours(len(clip))
    reads: list[int] = []

    def read(j: int) -> np.ndarray:
        reads.append(j)
        return clip[j]

    threaded = dict(detect_frames(model, read, neighbours, cfg, cpu, prepare=False))
    assert sorted(reads) == list(range(len(clip)))  # each frame read once
    after = dict(detect_frames(model, lambda j: clip[j], neighbours, cfg, cpu, prepare=False, overlap_gate=False))
    for i, (p, q) in enumerate(neighbours):
        alone = predict_triplet_tiled(model, clip[[p, i, q]], cfg, cpu, prepare=False)
        np.testing.assert_array_equal(threaded[i], after[i])
        np.testing.assert_array_equal(threaded[i], alone)
        assert threaded[i][10:60, 100:103].max() == 0.0  # the static column: dropped on every frame
        if i in specks:  # each frame's own speck, found by its own flows
            y, x = specks[i]
            assert threaded[i][y : y + 3, x : x + 3].min() == 1.0
        for k, (y, x) in specks.items():
            if k != i and p != q:  # an end frame's one neighbour counts twice: its speck is a (dark) anomaly
                assert threaded[i][y : y + 3, x : x + 3].max() < 0.5


def test_a_frame_that_cannot_be_read_ahead_does_not_lose_the_frame_before_it():
    clip = np.stack([textured(7)] * 4).astype(np.float32)
    model, cfg, cpu = _ColumnMarker().eval(), TilingConfig(), torch.device("cpu")

    def read(j: int) -> np.ndarray:
        if j == 3:
            raise OSError("frame 3: file missing")
        return clip[j]

    got = []
    with pytest.raises(OSError, match="frame 3"):
        for i, _ in detect_frames(model, read, default_neighbours(4), cfg, cpu, prepare=False):
            got.append(i)
    assert got == [0, 1]  # frame 2 needs frame 3 as its neighbour; 0 and 1 came out first


def test_a_precomputed_compensation_gives_the_same_gate():
    from correlnet.sdi import compensate_triplet

    base = textured(5)
    frames = np.stack([np.roll(base, s, axis=1) for s in (-1, 0, 1)])
    frames[1, 20:23, 90:93] += 0.25  # a one-frame speck
    probs = np.zeros((H, W), np.float32)
    probs[60:64, 10:14] = 0.9  # a mark without temporal evidence: the gate drops it
    cfg = GateConfig(sure=sure_config(0.09))
    comp = compensate_triplet(*frames, cfg.flow)
    alone = gate_probs(probs, *frames, cfg)
    np.testing.assert_array_equal(gate_probs(probs, *frames, cfg, compensation=comp), alone)
    assert alone[60:64, 10:14].max() == 0.0 and alone[20:23, 90:93].min() == 1.0


def test_model_specs_switch_the_gate_on_and_off(tmp_path):
    from correlnet.checkpoint import load_detector

    path = save_checkpoint(tmp_path / "m.pt", tiny_model("efficient-correlnet", temporal_gate=0.05).eval())
    assert load_detector(str(path)).config.temporal_gate == pytest.approx(0.05)
    assert load_detector(f"{path}+nogate").config.temporal_gate == 0.0
    assert load_detector(f"{path}+gate").config.temporal_gate == pytest.approx(GateConfig().threshold)
    assert load_detector(f"{path}+gate:0.07").config.temporal_gate == pytest.approx(0.07)
    with pytest.raises(ValueError, match=r"\+gate:VALUE"):
        load_detector(f"{path}+gate:x")


def test_sure_marks_add_a_one_frame_speck_the_network_missed_and_nothing_on_a_moving_block():
    base = textured(5)
    frames = np.stack([np.roll(base, s, axis=1) for s in (-1, 0, 1)])  # gate weave, 1 px per frame
    for k, x in enumerate((32, 40, 48)):  # a block with its own motion: scene
        frames[k, 50:66, x : x + 16] = 0.1
    frames[1, 20:23, 90:93] += 0.25  # a faint one-frame speck the network does not mark
    probs = np.zeros((H, W), np.float32)
    cfg = GateConfig(sure=sure_config(0.09))
    out = gate_probs(probs, *frames, cfg)
    assert out[20:23, 90:93].min() == 1.0
    assert out[50:66, 30:70].max() == 0.0 and out.sum() <= 9 + 8  # the speck (plus its soft rim) only
    np.testing.assert_array_equal(gate_probs(probs, *frames, GateConfig()), probs)  # off: nothing added


def test_sure_marks_travel_with_the_config_and_the_spec(tmp_path):
    from correlnet.checkpoint import load_detector

    path = save_checkpoint(tmp_path / "m.pt", tiny_model("efficient-correlnet", temporal_gate=0.03,
                                                         sure_marks=0.09).eval())
    model = load_detector(str(path))
    cfg = gate_config_of(model)
    assert cfg.enabled and cfg.sure is not None and cfg.sure.score == pytest.approx(0.09)
    plain = load_detector(f"{path}+nosure+nogate")
    assert not gate_config_of(plain).enabled
    both = load_detector(f"{path}+nogate+sure:0.1")
    assert both.config.temporal_gate == 0.0 and both.config.sure_marks == pytest.approx(0.1)
    with pytest.raises(ValueError, match="sure_marks"):
        ModelConfig(sure_marks=2.0)


def test_marks_grow_step_by_step_into_visible_same_sign_anomaly_only():
    from correlnet.temporal_gate import grow_marks

    probs = np.zeros((10, 12), np.float32)
    probs[5, 5] = 0.9  # one mark pixel
    probs[1, 1] = 0.3  # below the mark threshold: not a mark, left as it is
    score = np.zeros((10, 12), np.float32)
    score[5, 6:9] = 0.06  # a visible anomaly running right of the mark: 1, 2 and 3 steps away
    score[6, 5] = 0.04  # below extent_score (0.05): never added
    score[3, 3] = 0.5  # strong, but not reachable through allowed pixels
    out = grow_marks(probs, score, GateConfig(extent_px=2))
    expected = probs.copy()
    expected[5, 6:8] = 0.5  # steps 1 and 2, at the mark threshold; (5, 8) is 3 steps away
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(grow_marks(probs, score, GateConfig(extent_px=0)), probs)
    assert grow_marks(probs, score, GateConfig(extent_px=5))[5, 8] == 0.5
    with pytest.raises(ValueError, match="extent_px"):
        GateConfig(extent_px=-1)


def test_with_a_fraction_marks_grow_only_along_their_own_fading_edge():
    """Hand-computed: a strong mark (score 0.6) with a 0.1 fringe (above 0.05 but below 0.3 x 0.6 =
    0.18) does not grow there, while a faint mark (0.15) grows into its 0.06 rim (>= 0.05 and >= 0.045)."""
    from correlnet.temporal_gate import grow_marks

    probs = np.zeros((12, 20), np.float32)
    score = np.zeros((12, 20), np.float32)
    probs[5, 4] = probs[5, 14] = 0.9
    score[5, 4], score[5, 5] = 0.6, 0.1  # strong blotch, the flow's fringe beside it
    score[5, 14], score[5, 15] = 0.15, 0.06  # faint speck, its soft rim
    score[5, 6] = 0.25  # two steps from the blotch: 0.25 >= 0.18, but only reachable through (5, 5)
    plain = grow_marks(probs, score, GateConfig(extent_px=2))
    assert plain[5, 5] == 0.5 and plain[5, 6] == 0.5 and plain[5, 15] == 0.5
    out = grow_marks(probs, score, GateConfig(extent_px=2, extent_fraction=0.3))
    expected = probs.copy()
    expected[5, 15] = 0.5
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="extent_fraction"):
        GateConfig(extent_fraction=1.0)
    assert gate_config_of(SimpleNamespace(config=ModelConfig(mark_extent=1, mark_extent_fraction=0.3))).extent_fraction == 0.3
    with pytest.raises(ValueError, match="mark_extent_fraction"):
        ModelConfig(mark_extent_fraction=-0.1)


def test_a_blurred_speck_is_marked_to_its_rim_and_not_into_the_static_line_beside_it():
    frames = static_scene()
    frames[1, 60:63, 20:23] += 0.3  # the speck's core, in the middle frame only
    rim = np.zeros((H, W), bool)
    rim[59:64, 19:24] = True
    rim[60:63, 20:23] = False
    frames[1][rim] += 0.08  # its soft rim, blurred by the scanner: visible (>= 0.05), weak
    frames = frames.clip(0, 1)
    probs = np.zeros((H, W), np.float32)
    probs[60:63, 20:23] = 0.9  # the network marks the core only
    probs[:, 40:42] = 0.0  # the static line at columns 40-41 is not marked
    core_only = gate_probs(probs, *frames, GateConfig())
    grown = gate_probs(probs, *frames, GateConfig(extent_px=2))
    assert (core_only[rim] >= 0.5).sum() == 0
    assert (grown[rim] >= 0.5).mean() > 0.9
    assert (grown >= 0.5).sum() <= 25 + 8  # the 5x5 speck (plus at most a pixel of noise on a side)
    assert grown[:, 30:].max() == 0.0  # nothing reaches the static line or the edge


def test_mark_extent_travels_with_the_config_and_the_spec(tmp_path):
    from correlnet.checkpoint import load_detector

    path = save_checkpoint(tmp_path / "m.pt", tiny_model("efficient-correlnet", temporal_gate=0.03,
                                                         mark_extent=2).eval())
    assert gate_config_of(load_detector(str(path))).extent_px == 2
    assert gate_config_of(load_detector(f"{path}+noextent")).extent_px == 0
    assert load_detector(f"{path}+extent:3").config.mark_extent == 3
    assert gate_config_of(load_detector(f"{path}+nogate+nosure")).enabled  # the extent alone still grows
    for bad in (1.5, -1, True, 9):
        with pytest.raises(ValueError, match="mark_extent"):
            ModelConfig(mark_extent=bad)
