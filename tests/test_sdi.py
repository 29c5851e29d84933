"""correlnet.sdi (the classical motion-compensated SDI-p peer) on hand-made cases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import correlnet.synth
from correlnet.checkpoint import load_detector
from correlnet.inference import prepare_for_inference
from correlnet.prediction import check_eval, predict_triplet_tiled, size_multiple_of
from correlnet.sdi import (
    SdiConfig,
    SdiDetector,
    choose_sdi_threshold,
    compensate,
    compensated_differences,
    sdi_mask,
    sdi_score,
    score_to_logits,
    triplet_score,
)
from correlnet.tiling import TilingConfig

H, W = 96, 128
MARGIN = 20
SPECK = (slice(40, 44), slice(60, 64))  # a 4x4 dark speck in the middle frame only


def texture(sigma: float = 2.5, seed: int = 0) -> np.ndarray:
    """A smooth random texture in [0.2, 0.8], MARGIN px larger than the frame on each side."""
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((H + 2 * MARGIN, W + 2 * MARGIN)).astype(np.float32), (0, 0), sigma)
    return ((t - t.min()) / (t.max() - t.min()) * 0.6 + 0.2).astype(np.float32)


def view(big: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The frame seen by a camera moved by (dy, dx): content moves by (-dy, -dx)."""
    return np.ascontiguousarray(big[MARGIN + dy : MARGIN + dy + H, MARGIN + dx : MARGIN + dx + W])


def near_speck(mask: np.ndarray, pad: int = 2) -> bool:
    ys, xs = np.nonzero(mask)
    return bool(len(ys)) and ys.min() >= SPECK[0].start - pad and ys.max() < SPECK[0].stop + pad \
        and xs.min() >= SPECK[1].start - pad and xs.max() < SPECK[1].stop + pad


def test_sdi_score_is_the_same_sign_minimum_magnitude():
    d_prev = np.array([[0.3, -0.2, 0.1, 0.0], [0.5, -0.4, 0.2, -0.1]], np.float32)
    d_next = np.array([[0.1, -0.5, -0.3, 0.2], [0.5, -0.1, 0.0, 0.3]], np.float32)
    expected = np.array([[0.1, 0.2, 0.0, 0.0], [0.5, 0.1, 0.0, 0.0]], np.float32)
    score = sdi_score(d_prev, d_next)
    assert score.dtype == np.float32 and np.array_equal(score, expected)
    with pytest.raises(ValueError, match="one shape"):
        sdi_score(d_prev, d_next[:1])


def test_a_speck_over_a_static_background_is_flagged_and_nothing_else():
    frame = view(texture(), 0, 0)
    mid = frame.copy()
    mid[SPECK] = 0.0
    cfg = SdiConfig()
    mask = sdi_mask(frame, mid, frame, cfg)
    assert mask.dtype == bool and mask.shape == (H, W)
    assert mask[SPECK].all() and near_speck(mask)
    d_prev, d_next = compensated_differences(frame, mid, frame, cfg)
    assert d_prev.shape == d_next.shape == (H, W) and d_prev.dtype == np.float32
    assert (d_prev[SPECK] < -0.1).all() and (d_next[SPECK] < -0.1).all()  # darker than both neighbours


def test_a_speck_over_a_translating_background_is_flagged_and_the_texture_is_not():
    big = texture()
    prev, mid, nxt = view(big, -3, -2), view(big, 0, 0).copy(), view(big, 3, 2)
    mid[SPECK] = 0.0
    for cfg in (SdiConfig(), SdiConfig(flow_scale=0.5)):
        mask = sdi_mask(prev, mid, nxt, cfg)
        assert mask[SPECK].mean() >= 0.75 and near_speck(mask), cfg
    # Without motion compensation the shifted texture would be flagged far from the speck.
    raw = sdi_score(mid - prev, mid - nxt) >= SdiConfig().threshold
    assert raw.sum() > 5 * 16 and not near_speck(raw)


def test_compensate_warps_the_neighbour_onto_the_middle_frame():
    big = texture(sigma=3.0)
    mid, other = view(big, 0, 0), view(big, 2, -3)
    warped = compensate(mid, other, SdiConfig())
    assert warped.shape == (H, W) and warped.dtype == np.float32
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(warped - mid)[inner].mean() < 0.01 < np.abs(other - mid)[inner].mean()
    with pytest.raises(ValueError, match=r"\(H, W\) float"):
        compensate(mid, (other * 255).astype(np.uint8), SdiConfig())


def test_a_bar_that_moves_across_the_three_frames_is_not_flagged():
    bg = view(texture(sigma=4.0), 0, 0)
    frames = []
    for k in range(3):  # present in all three frames, 3 px further each frame
        f = bg.copy()
        f[25:85, 50 + 3 * k : 62 + 3 * k] = 0.05
        frames.append(f)
    assert not sdi_mask(*frames, SdiConfig()).any()


def test_global_flicker_is_not_a_defect():
    frame = view(texture(), 0, 0)
    mid = np.clip(frame + 0.12, 0, 1)  # the whole middle frame brighter than both neighbours
    assert not sdi_mask(frame, mid, frame, SdiConfig()).any()
    assert sdi_mask(frame, mid, frame, SdiConfig(remove_median=False)).mean() > 0.9


def test_logits_agree_with_the_mask_at_probability_one_half():
    big = texture()
    prev, mid, nxt = view(big, -2, 1), view(big, 0, 0).copy(), view(big, 2, -1)
    mid[SPECK] = 0.0
    mid[10:13, 100:104] = 1.0
    for threshold in (0.05, 0.09, 0.3):
        cfg = SdiConfig(threshold=threshold)
        model = SdiDetector(cfg)
        x = torch.from_numpy(np.stack([np.stack([prev, mid, nxt]), np.stack([nxt, mid, prev])]))
        logits = model(x)
        assert logits.shape == (2, 1, H, W) and logits.dtype == torch.float32
        for b, (p, q) in enumerate(((prev, nxt), (nxt, prev))):
            assert torch.equal(torch.sigmoid(logits[b, 0]) >= 0.5, torch.from_numpy(sdi_mask(p, mid, q, cfg)))
        probs = predict_triplet_tiled(model, np.stack([prev, mid, nxt]), TilingConfig(), torch.device("cpu"))
        assert np.array_equal(probs >= 0.5, sdi_mask(prev, mid, nxt, cfg))
    assert model(x.double()).dtype == torch.float64
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(x[:, :2])


def test_scores_at_the_threshold_map_to_both_sides_of_one_half_exactly():
    thr = 0.09
    below = np.nextafter(np.float32(thr), np.float32(0))
    score = np.array([0.0, below, np.float32(thr), 0.5], np.float32)
    probs = torch.sigmoid(torch.from_numpy(score_to_logits(score, thr)))
    assert (probs >= 0.5).tolist() == [False, False, True, True]


def test_the_detector_runs_where_a_network_runs():
    model = SdiDetector()
    assert size_multiple_of(model) == 1 and not model.training
    check_eval(model)
    prepared = prepare_for_inference(model, "cpu")
    assert isinstance(prepared, SdiDetector) and prepared.cfg == model.cfg
    assert load_detector("sdi-p").cfg == SdiConfig()
    assert load_detector("sdi-p:0.2").cfg.threshold == 0.2
    with pytest.raises(ValueError, match="sdi-p:THRESHOLD"):
        load_detector("sdi-p:dark")
    with pytest.raises(ValueError, match="flow_preset"):
        SdiConfig(flow_preset="slowest")
    with pytest.raises(ValueError, match="threshold"):
        SdiConfig(threshold=0.0)


def test_detect_cli_writes_sdi_masks(tmp_path):
    from studio.cli import main

    big = texture()
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(3):
        f = view(big, k, 0).copy()
        if k == 1:
            f[SPECK] = 0.0
        cv2.imwrite(str(folder / f"f{k}.png"), np.rint(f * 255).astype(np.uint8))
    assert main(["detect", "--model", "sdi-p", str(folder), "--out", str(tmp_path / "out")]) == 0
    mask = cv2.imread(str(tmp_path / "out" / "f1.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (H, W) and (mask[SPECK] == 255).mean() >= 0.75 and near_speck(mask > 0)


def contrast_defects(clean, cfg, rng):
    """Stub generator: the middle frame 0.15 darker on a 5x5 square at (2, 2)."""
    degraded = clean.copy()
    degraded[1, 2:7, 2:7] -= 0.15
    masks = np.zeros(clean.shape, bool)
    masks[1, 2:7, 2:7] = True
    return degraded, masks


def test_choose_threshold_picks_the_best_f1_and_breaks_ties_low(monkeypatch):
    monkeypatch.setattr(correlnet.synth, "degrade_triplet", contrast_defects)
    clip = np.stack([view(texture(), 0, 0)] * 4)
    best, counts = choose_sdi_threshold({"s": clip}, None, 0, candidates=(0.3, 0.05, 0.1), triplets_per_sequence=2)
    # Score 0.15 on the 25 defect pixels and 0 elsewhere: 0.05 and 0.1 are perfect, 0.3 finds nothing.
    assert best == 0.05 and list(counts) == [0.05, 0.1, 0.3]
    assert (counts[0.1].tp, counts[0.1].fp, counts[0.1].fn) == (50, 0, 0)
    assert (counts[0.3].tp, counts[0.3].fn) == (0, 50)
    assert triplet_score(clip[0], clip[1], clip[2], SdiConfig()).max() < 0.01
