"""The bank of real defects: what is cut (one-frame anomalies over a static background only), where
from (never the evaluation frames), and how it is composited and labelled."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from correlnet.data import shared_data_dir
from correlnet.synth import SynthConfig, degrade_triplet_with_base
from correlnet.synth.bank import BANK_FRAMES, BankDefect, DefectBank, build_bank, cut_defects, paste_defects

H, W = 96, 128


def _texture(seed: int = 0) -> np.ndarray:
    coarse = np.random.default_rng(seed).random((H // 8 + 1, W // 8 + 1)).astype(np.float32)
    return (0.3 + 0.4 * cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC).clip(0, 1)).astype(np.float32)


def _weaving_triplet() -> np.ndarray:
    """A static textured scene seen through a gate that weaves 1 px per frame, with a little noise."""
    base = _texture()
    frames = np.stack([np.roll(base, s, axis=1) for s in (-1, 0, 1)])
    return np.clip(frames + np.random.default_rng(1).normal(0, 0.004, frames.shape), 0, 1).astype(np.float32)


def test_a_one_frame_speck_over_a_weaving_static_scene_is_cut_with_its_contrast():
    frames = _weaving_triplet()
    frames[1, 40:44, 60:63] += 0.3  # a light 12-px speck in the middle frame only
    cut = cut_defects(*frames)
    assert len(cut) == 1
    d = cut[0]
    assert d.alpha.max() == pytest.approx(1.0) and d.residual.shape == d.alpha.shape
    core = d.alpha >= 0.999
    assert core.sum() >= 12
    assert np.median(d.residual[core]) == pytest.approx(0.3, abs=0.06)


def test_a_persistent_speck_and_a_border_speck_are_not_cut():
    frames = _weaving_triplet()
    for k, s in enumerate((-1, 0, 1)):
        frames[k, 40:44, 60 + s : 63 + s] += 0.3  # in all three frames, moving with the scene: scene
    frames[1, 0:3, 10:13] += 0.3  # at the frame border: the scans' edges weave, not sure
    assert cut_defects(*frames) == []


def test_paste_adds_alpha_times_residual_and_the_mask_marks_it():
    res = np.full((5, 5), -0.4, np.float32)
    alpha = np.zeros((5, 5), np.float32)
    alpha[1:4, 1:4] = 1.0
    bank = DefectBank([BankDefect(res, alpha, "test")], ["test"])
    frame = np.full((32, 32), 0.6, np.float32)
    paste_defects(frame, bank, 1, np.random.default_rng(0))
    assert (frame < 0.25).sum() == 9 and frame.sum() == pytest.approx(0.6 * 1024 - 0.4 * 9, abs=1e-3)
    cfg = replace(SynthConfig.paper(), blotches=False, bank_per_256=40.0)
    clean = np.full((3, 64, 64), 0.6, np.float32)
    degraded, masks, base = degrade_triplet_with_base(clean, cfg, np.random.default_rng(3), bank)
    assert masks[1].any()
    np.testing.assert_allclose(degraded[1][masks[1]], 0.2, atol=1e-5)  # the real contrast, kept
    assert not degrade_triplet_with_base(clean, cfg, np.random.default_rng(3))[1].any()  # no bank: no marks


def test_paste_scales_the_residual_by_the_drawn_strength_and_labels_only_what_stays_visible():
    res = np.full((5, 5), -0.4, np.float32)
    alpha = np.zeros((5, 5), np.float32)
    alpha[1:4, 1:4] = 1.0
    bank = DefectBank([BankDefect(res, alpha, "test")], ["test"])
    full, half = np.full((32, 32), 0.6, np.float32), np.full((32, 32), 0.6, np.float32)
    paste_defects(full, bank, 1, np.random.default_rng(0))
    paste_defects(half, bank, 1, np.random.default_rng(0), opacity=(0.5, 0.5))  # fixed: same place, no draw
    np.testing.assert_allclose(0.6 - half, (0.6 - full) / 2, atol=1e-6)
    drawn = [np.full((32, 32), 0.6, np.float32) for _ in range(200)]
    rng = np.random.default_rng(1)
    for frame in drawn:
        paste_defects(frame, bank, 1, rng, opacity=(0.1, 0.9))
    strengths = np.array([(0.6 - f.min()) / 0.4 for f in drawn])
    assert 0.1 <= strengths.min() < 0.2 and 0.8 < strengths.max() <= 0.9 and abs(strengths.mean() - 0.5) < 0.05
    with pytest.raises(ValueError, match="bank opacity"):
        paste_defects(full, bank, 1, rng, opacity=(0.9, 0.1))
    # The labelling rule of the generator (min_contrast 0.05): at 0.1 of its strength the 0.4 residual
    # moves the frame by 0.04, below it: reset to the base and unlabelled; at 0.5 by 0.2: kept, labelled.
    clean = np.full((3, 64, 64), 0.6, np.float32)
    for strength, labelled in ((0.1, False), (0.5, True)):
        cfg = replace(SynthConfig.paper(), blotches=False, bank_per_256=40.0, bank_opacity=(strength, strength))
        degraded, masks, _ = degrade_triplet_with_base(clean, cfg, np.random.default_rng(3), bank)
        assert degraded[1].min() == pytest.approx(0.4 if labelled else 0.6, abs=1e-5)
        assert masks[1].any() == labelled


def test_bank_is_cut_from_the_later_frames_only(tmp_path):
    root = shared_data_dir() / "real_film"
    if not root.is_dir():
        pytest.skip(f"real film not found at {root}")
    # A small copy of the layout: frames 20-32 of each clip (links), so the rule is tested quickly.
    for clip in BANK_FRAMES:
        (tmp_path / clip).mkdir()
        for n in range(20, 33):
            (tmp_path / clip / f"{n:05d}.png").symlink_to(root / clip / f"{n:05d}.png")
    bank = build_bank(tmp_path)
    assert len(bank) > 0
    for d in bank.defects:
        clip, number = d.source.split("/")
        first, last = BANK_FRAMES[clip]
        assert first < int(number) < last + 1 and int(number) > 26  # frame 26 has neighbour 25: not cut
    assert bank.describe()["defects"] == len(bank)
    with pytest.raises(FileNotFoundError, match="real-film clip not found"):
        build_bank(tmp_path / "nowhere")
