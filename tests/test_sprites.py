"""Scene motion and the 'real' recipe: moving sprites, the physical order of a scan, clean triplets,
duplicated frames, sub-pixel weave, the clean-video sources. Nothing that moves with the scene is
ever labelled."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import numpy as np
import pytest

from correlnet.data import (
    CLEAN_VIDEO_MAX_WIDTH,
    CLEAN_VIDEO_TRAIN,
    CLEAN_VIDEO_VALIDATION,
    TripletDataset,
    clean_video_spans,
    shared_data_dir,
)
from correlnet.synth import SynthConfig, degrade_triplet_with_base
from correlnet.synth.sprites import Sprite, SpriteConfig, draw_moving_sprites, draw_sprite, random_sprite


def _centroid(cover: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[: cover.shape[0], : cover.shape[1]]
    return float((ys * cover).sum() / cover.sum()), float((xs * cover).sum() / cover.sum())


def test_sprite_moves_by_its_velocity_and_keeps_its_area_without_growth():
    alpha = np.zeros((9, 9), np.float32)
    alpha[2:7, 2:7] = 1.0  # a 5x5 square, centre at canvas (4, 4)
    sprite = Sprite(texture=np.zeros((9, 9), np.float32), alpha=alpha, centre=(30.0, 40.0), velocity=(3.0, -5.0))
    for t, expected in ((-1.0, (27.0, 45.0)), (0.0, (30.0, 40.0)), (1.0, (33.0, 35.0))):
        frame = np.full((64, 80), 0.5, np.float32)
        cover = draw_sprite(frame, sprite, t)
        assert _centroid(cover) == pytest.approx(expected, abs=1e-3)
        assert cover.sum() == pytest.approx(25.0, abs=1e-3)
        np.testing.assert_allclose(frame[cover > 0.999], 0.0)  # the black texture replaced the grey


def test_spin_and_growth_rotate_and_scale_the_sprite():
    alpha = np.zeros((21, 21), np.float32)
    alpha[10, 2:19] = 1.0  # a horizontal line of 17 px
    sprite = Sprite(np.ones((21, 21), np.float32), alpha, (32.0, 32.0), (0.0, 0.0), spin=np.pi / 2, growth=2.0)
    cover = draw_sprite(np.zeros((64, 64), np.float32), sprite, 1.0)  # rotated 90 degrees, twice as long
    ys, xs = np.nonzero(cover > 0.5)
    assert np.ptp(ys) >= 30 and np.ptp(xs) <= 3


def test_motion_blur_spreads_the_sprite_along_its_velocity():
    alpha = np.zeros((7, 7), np.float32)
    alpha[2:5, 2:5] = 1.0
    sharp = Sprite(np.ones((7, 7), np.float32), alpha, (32.0, 32.0), (0.0, 12.0))
    blurred = replace(sharp, shutter=0.5)
    c_sharp = draw_sprite(np.zeros((64, 64), np.float32), sharp, 0.0)
    c_blur = draw_sprite(np.zeros((64, 64), np.float32), blurred, 0.0, taps=5)
    assert c_blur.sum() == pytest.approx(c_sharp.sum(), rel=1e-3)  # the same coverage, spread out
    assert np.ptp(np.nonzero(c_blur > 0.01)[1]) >= np.ptp(np.nonzero(c_sharp > 0.01)[1]) + 5


def test_sprites_are_seeded_and_their_statistics_follow_the_config():
    cfg = SpriteConfig()
    source = np.random.default_rng(0).random((200, 300)).astype(np.float32)
    a, b = (np.full((3, 96, 96), 0.5, np.float32) for _ in range(2))
    draw_moving_sprites(a, source, replace(cfg, prob=1.0), np.random.default_rng(5))
    draw_moving_sprites(b, source, replace(cfg, prob=1.0), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(1)
    sprites = [random_sprite((128, 128), source, cfg, rng) for _ in range(2000)]
    speeds = np.array([np.hypot(*s.velocity) for s in sprites])
    assert speeds.max() <= cfg.max_speed + 1e-6
    assert np.mean(speeds == 0) == pytest.approx(cfg.static_prob, abs=0.03)
    moving = speeds[speeds > 0]
    assert moving.mean() == pytest.approx(cfg.max_speed / 2, rel=0.08)  # uniform in [0, max_speed]
    assert np.mean([s.shutter > 0 for s in sprites]) == pytest.approx(cfg.motion_blur_prob, abs=0.03)
    sides = np.array([s.alpha.shape[0] for s in sprites])
    assert sides.min() <= 7 and sides.max() >= 60  # from specks of a few px to large patches


def test_sprites_reject_a_region_that_is_not_a_triplet():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        draw_moving_sprites(np.zeros((2, 8, 8), np.float32), np.zeros((8, 8), np.float32), SpriteConfig(),
                            np.random.default_rng(0))


def _moving_clip(n: int = 12, h: int = 80, w: int = 96) -> np.ndarray:
    rng = np.random.default_rng(7)
    base = rng.random((h + 4 * n, w + 4 * n)).astype(np.float32)
    return np.stack([base[2 * t : 2 * t + h, 2 * t : 2 * t + w] for t in range(n)])  # a 2-px diagonal pan


def test_scene_motion_is_never_labelled():
    # The real recipe with every defect family off: sprites, lines, blotches, weave, duplicated frames,
    # flicker, grain, blur, compression; the frames move and differ, and the mask stays empty.
    cfg = replace(SynthConfig.real(), blotches=False, dust=False, hairs=False, paper_only_prob=0.0,
                  sprites=replace(SpriteConfig(), prob=1.0), scene_lines_prob=1.0, scene_blotches_prob=1.0,
                  duplicate_frame_prob=0.3)
    ds = TripletDataset([_moving_clip()], cfg, crop=48, length=40, seed=3)
    for i in range(len(ds)):
        item = ds[i]
        assert item["mask"].sum() == 0
        frames = item["frames"].numpy()
        assert 0.0 <= frames.min() and frames.max() <= 1.0 and frames.shape == (3, 48, 48)


def test_clean_share_of_triplets_has_no_defect_and_the_rest_do():
    cfg = replace(SynthConfig.real(), clean_prob=0.5, paper_only_prob=0.0)
    clip = np.full((3, 128, 128), 0.5, np.float32)
    empty = [not degrade_triplet_with_base(clip, cfg, np.random.default_rng([9, k]))[1][1].any() for k in range(200)]
    assert np.mean(empty) == pytest.approx(0.5, abs=0.1)


def test_physical_order_puts_grain_over_the_marks_and_compression_after_the_label():
    clip = np.full((3, 96, 96), 0.5, np.float32)
    cfg = replace(SynthConfig.real(), paper_only_prob=0.0, clean_prob=0.0, compression_prob=0.0,
                  grain_sigma=(0.03, 0.03), blotch_filled_prob=1.0, blur_sigma=(0.3, 0.3))
    degraded, masks, base = degrade_triplet_with_base(clip, cfg, np.random.default_rng(2))
    m = masks[1]
    assert m.sum() > 100
    np.testing.assert_array_equal(degraded[~masks], base[~masks])  # the rule holds before compression
    # Grain over the marks: inside a mark the pixels vary like grain, not a flat uniform colour.
    flat = degraded[1][m & (degraded[1] > 0.02) & (degraded[1] < 0.98)]
    assert flat.std() > 0.005
    squeezed = replace(cfg, compression_prob=1.0, jpeg_quality=(30.0, 30.0))
    d2, m2, b2 = degrade_triplet_with_base(clip, squeezed, np.random.default_rng(2))
    np.testing.assert_array_equal(m2, masks)  # the same draws up to the compression coin: same label
    assert not np.array_equal(d2, degraded)
    assert np.abs(d2 - degraded).mean() < 0.03  # JPEG at quality 30: small on average, large only at edges


def _clean_crop(ds: TripletDataset, rng: np.random.Generator) -> np.ndarray:
    """The dataset's augmented clean crop (3, crop, crop) float32, before any defect or scene content."""
    region, view = ds.scene_region(rng)
    return view.cut(region)


def test_duplicated_frames_and_subpixel_weave():
    clip = _moving_clip()
    cfg = replace(SynthConfig.paper(), duplicate_frame_prob=1.0)
    ds = TripletDataset([clip], cfg, crop=40, length=20, seed=1, jitter=0)
    for i in range(20):
        t = _clean_crop(ds, np.random.default_rng([1, i]))
        assert np.array_equal(t[0], t[1]) or np.array_equal(t[2], t[1])
    weave = TripletDataset([clip], replace(SynthConfig.paper(), subpixel_jitter=True), crop=40, length=5, seed=1,
                           jitter=2)
    t = _clean_crop(weave, np.random.default_rng(4))
    assert t.shape == (3, 40, 40) and t.dtype == np.float32
    still = TripletDataset([clip], replace(SynthConfig.paper(), subpixel_jitter=True), crop=40, length=5, seed=1,
                           jitter=0)
    for k in range(5):  # no weave: every crop is the clip itself up to the centre's half-pixel resampling
        t = _clean_crop(still, np.random.default_rng([2, k]))
        assert np.abs(t[1] - t[1].mean()).max() > 0 and 0 <= t.min() and t.max() <= 1


def test_real_recipe_round_trips_through_json_and_has_no_line_scratches():
    cfg = SynthConfig.real()
    assert not cfg.scratches and cfg.sprites == SpriteConfig() and cfg.physical_order
    again = SynthConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg
    assert SynthConfig.paper().sprites is None and SynthConfig.paper().compression_prob == 0.0


def test_clean_video_split_and_missing_folder(tmp_path):
    assert not set(CLEAN_VIDEO_TRAIN) & set(CLEAN_VIDEO_VALIDATION)
    with pytest.raises(FileNotFoundError, match="CORRELNET_SHARED_DATA"):
        clean_video_spans("train", tmp_path)
    with pytest.raises(ValueError, match="train"):
        clean_video_spans("test", tmp_path)
    root = shared_data_dir() / "clean_video"
    if not root.is_dir():
        pytest.skip(f"clean video not found at {root}")
    spans = clean_video_spans("train")
    dog = next(s for s in spans if s.name == "sam2_01_dog")
    frames = dog.load(max_frames=3, dtype=np.uint8)
    assert frames.shape == (3, 360, CLEAN_VIDEO_MAX_WIDTH) and frames.dtype == np.uint8
