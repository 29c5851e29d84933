"""Synthetic defect generator: determinism, ranges, the labelling rule, paper statistics, dust sizes."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from correlnet.synth.noise import fractal_perlin
from correlnet.synth import (
    SynthConfig,
    degrade_triplet,
    degrade_triplet_with_base,
    draw_defects,
    texture_triplet,
)
from correlnet.synth.dust import sample_speck_areas, speck_shape
from correlnet.synth.paper import band_masks, blotch_field


def scene(seed: int = 0, size: int = 96) -> np.ndarray:
    """A smooth seeded (3, H, W) triplet in [0.05, 0.95], shifted by a pixel per frame."""
    base = fractal_perlin((size, size + 2), res=(3, 3), octaves=2, rng=np.random.default_rng(seed))
    base = 0.5 + 0.45 * base
    return np.stack([base[:, t : t + size] for t in range(3)]).astype(np.float32)


def grey(size: int = 128) -> np.ndarray:
    return np.full((3, size, size), 0.5, dtype=np.float32)


@pytest.mark.parametrize("cfg", [SynthConfig(), SynthConfig.paper()])
def test_same_seed_same_output_different_seed_differs(cfg):
    clean = scene()
    d1, m1 = degrade_triplet(clean, cfg, np.random.default_rng(11))
    d2, m2 = degrade_triplet(clean, cfg, np.random.default_rng(11))
    d3, m3 = degrade_triplet(clean, cfg, np.random.default_rng(12))
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1, m3)


@pytest.mark.parametrize("cfg", [SynthConfig(), SynthConfig.paper()])
def test_shapes_types_and_ranges(cfg):
    clean = scene(size=80)
    degraded, masks = degrade_triplet(clean, cfg, np.random.default_rng(0))
    assert degraded.shape == masks.shape == (3, 80, 80)
    assert degraded.dtype == np.float32 and masks.dtype == bool
    assert degraded.min() >= 0.0 and degraded.max() <= 1.0
    assert masks.any()
    np.testing.assert_array_equal(clean, scene(size=80))  # input untouched


@pytest.mark.parametrize("seed", range(4))
def test_mask_marks_visibly_changed_pixels_only(seed):
    """Masked pixels moved >= min_contrast from the base; unmasked ones equal it exactly."""
    cfg = SynthConfig(scratch_prob=1.0)
    clean = scene(seed)
    degraded, masks = degrade_triplet(clean, cfg, np.random.default_rng(seed))
    again, masks_again, base = degrade_triplet_with_base(clean, cfg, np.random.default_rng(seed))
    np.testing.assert_array_equal(again, degraded)
    np.testing.assert_array_equal(masks_again, masks)
    change = np.abs(degraded - base)
    assert change[masks].min() >= cfg.min_contrast - 1e-6
    assert np.array_equal(degraded[~masks], base[~masks])
    # The base differs from the clean input by grain/flicker/blur only: small and not masked.
    assert 0 < np.abs(base - clean).mean() < 0.05


def test_base_is_texture_then_defects_in_that_order():
    """Without blur the base is exactly texture_triplet's output, defects are drawn after it."""
    cfg = replace(SynthConfig(), blur=False)
    clean = scene(1)
    rng = np.random.default_rng(1)
    base = texture_triplet(clean, cfg, rng)
    drawn = draw_defects(base, cfg, rng)
    degraded, masks, base_again = degrade_triplet_with_base(clean, cfg, np.random.default_rng(1))
    np.testing.assert_array_equal(base_again, base)
    np.testing.assert_array_equal(degraded[masks], drawn[masks])


def test_blur_softens_defect_edges_but_keeps_the_rule():
    cfg = SynthConfig(blur_sigma=(0.8, 0.8)).only(blotches=True, blur=True)
    sharp_cfg = replace(cfg, blur=False)
    soft, soft_masks, base = degrade_triplet_with_base(grey(128), cfg, np.random.default_rng(2))
    sharp, _ = degrade_triplet(grey(128), sharp_cfg, np.random.default_rng(2))
    levels = lambda img: len(np.unique(np.round(img, 3)))  # noqa: E731
    assert levels(soft[0]) > levels(sharp[0])  # intermediate values at the edges
    assert np.array_equal(soft[~soft_masks], base[~soft_masks])


def test_paper_generator_has_no_texture():
    clean = scene()
    degraded, masks = degrade_triplet(clean, SynthConfig.paper(), np.random.default_rng(0))
    np.testing.assert_array_equal(degraded[~masks], clean[~masks])


def test_paper_mask_is_the_noise_band_on_grey():
    """On mid-grey every band pixel changes by >= 0.5 * 0.35, so the mask is exactly the band."""
    cfg = SynthConfig.paper()
    degraded, masks = degrade_triplet(grey(256), cfg, np.random.default_rng(4))
    dark, light = band_masks(blotch_field((256, 256), cfg, np.random.default_rng(4)), cfg)
    np.testing.assert_array_equal(masks[0], dark | light)
    assert (degraded[0][dark] < 0.5).all() and (degraded[0][light] > 0.5).all()


def test_paper_dark_and_light_fractions_in_band():
    """Over many seeds each polarity covers ~1 % of pixels: the share of a normalised fractal
    Perlin field in [0.65, 0.8] (measured on 200 fields: mean 1.0 %, 5-95 % range 0.4-1.7 %)."""
    cfg = SynthConfig.paper()
    dark_frac, light_frac = [], []
    for seed in range(10):
        degraded, masks = degrade_triplet(grey(256), cfg, np.random.default_rng(seed))
        dark_frac.append((masks & (degraded < 0.5)).mean())
        light_frac.append((masks & (degraded > 0.5)).mean())
    for frac in (np.mean(dark_frac), np.mean(light_frac)):
        assert 0.006 < frac < 0.015
    # Independent fields per frame: masks of the three frames barely overlap.
    assert (masks[0] & masks[1]).mean() < 0.2 * masks[1].mean()


def test_larger_frames_keep_the_paper_blotch_size():
    """A 512x512 frame gets 16x16 periods, so the defect fraction matches the 256 case."""
    cfg = SynthConfig.paper()
    fracs = [degrade_triplet(grey(512), cfg, np.random.default_rng(s))[1].mean() for s in range(3)]
    assert 0.01 < np.mean(fracs) < 0.03


def test_speck_areas_are_lognormal_with_paper_median():
    cfg = SynthConfig()
    areas = sample_speck_areas(4000, cfg, np.random.default_rng(0))
    assert 5 <= np.median(areas) <= 7
    assert areas.min() >= 1 and areas.max() <= cfg.dust_max_area
    log_areas = np.log(areas[(areas > 2) & (areas < cfg.dust_max_area)])
    assert 0.7 < log_areas.std() < 1.1


@pytest.mark.parametrize("area", [1, 6, 40])
def test_speck_shape_has_exact_area_and_one_component(area):
    patch = speck_shape(area, np.random.default_rng(area))
    assert patch.sum() == area
    count, _ = cv2.connectedComponents(patch.astype(np.uint8), connectivity=4)
    assert count == 2


def test_dust_specks_in_the_mask_have_the_target_median_area():
    cfg = SynthConfig().only(dust=True)
    areas = []
    for seed in range(6):
        _, masks = degrade_triplet(grey(256), cfg, np.random.default_rng(seed))
        for frame_mask in masks:
            _, _, stats, _ = cv2.connectedComponentsWithStats(frame_mask.astype(np.uint8), connectivity=8)
            areas.extend(stats[1:, cv2.CC_STAT_AREA])
    assert len(areas) > 50
    assert 4 <= np.median(areas) <= 10


def test_scratches_persist_across_the_triplet_with_slow_drift():
    cfg = SynthConfig(scratch_prob=1.0, scratch_max_count=1, scratch_full_height_prob=1.0).only(scratches=True)
    _, masks = degrade_triplet(grey(128), cfg, np.random.default_rng(3))
    columns = [np.flatnonzero(m.mean(axis=0) > 0.5) for m in masks]
    for cols in columns:
        assert 1 <= len(cols) <= 6  # a thin line
    centres = [c.mean() for c in columns]
    assert max(centres) - min(centres) < 5  # drifts slowly
    assert all(m.any(axis=1).mean() > 0.95 for m in masks)  # full height in every frame


def test_grain_flicker_and_blur_change_pixels_but_are_never_masked():
    cfg = SynthConfig().only(grain=True, flicker=True, blur=True)
    clean = scene()
    degraded, masks = degrade_triplet(clean, cfg, np.random.default_rng(0))
    assert not masks.any()
    assert np.abs(degraded - clean).mean() > 1e-3


def test_config_presets():
    paper = SynthConfig.paper()
    families = ("dust", "hairs", "scratches", "grain", "flicker", "blur")
    assert paper.blotches and not any(getattr(paper, f) for f in families)
    assert all(getattr(SynthConfig(), f) for f in ("blotches",) + families)
    full = SynthConfig()
    with pytest.raises(ValueError, match="unknown"):
        full.only(smudges=True)


def test_config_survives_a_json_round_trip():
    import json
    from dataclasses import asdict

    for cfg in (SynthConfig(), SynthConfig.paper(), SynthConfig(dust_per_256=(1.0, 2.0))):
        back = SynthConfig.from_dict(json.loads(json.dumps(asdict(cfg))))
        assert back == cfg and hash(back) == hash(cfg)
    with pytest.raises(ValueError, match="smudges"):
        SynthConfig.from_dict({"smudges": 1})


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.float32), np.full((3, 8, 8), 255.0, np.float32)])
def test_bad_input_raises_with_advice(bad):
    with pytest.raises(ValueError, match="(3, H, W)|divide"):
        degrade_triplet(bad, SynthConfig(), np.random.default_rng(0))


def test_filled_blotches_contain_the_paper_band():
    cfg = SynthConfig()
    field = blotch_field((128, 128), cfg, np.random.default_rng(0))
    dark, light = band_masks(field, cfg)
    solid_dark, solid_light = band_masks(field, cfg, filled=True)
    assert (solid_dark | ~dark).all() and (solid_light | ~light).all()
    assert solid_dark.sum() > dark.sum() and solid_light.sum() > light.sum()


def test_blotch_period_sets_blotch_size():
    def median_blob_area(period: float) -> float:
        cfg = replace(SynthConfig().only(blotches=True), blotch_periods=(period,), blotch_filled_prob=1.0)
        areas = []
        for seed in range(3):
            _, masks = degrade_triplet(grey(256), cfg, np.random.default_rng(seed))
            _, _, stats, _ = cv2.connectedComponentsWithStats(masks[1].astype(np.uint8))
            areas.extend(stats[1:, cv2.CC_STAT_AREA])
        return float(np.median(areas))

    assert median_blob_area(64.0) > 2 * median_blob_area(16.0)


def no_scene(cfg: SynthConfig) -> SynthConfig:
    return replace(cfg, scene_lines=False, scene_blotches=False, sprites=None)


def test_mixed_generator_draws_the_paper_part_for_its_share_of_triplets():
    """SynthConfig.mixed(p): one coin per triplet, then exactly the paper's generator or the full one."""
    clean = np.random.default_rng(0).random((3, 48, 48)).astype(np.float32)
    # p = 1: the coin, then the paper generator's own stream
    rng = np.random.default_rng(1)
    rng.random()
    ref = degrade_triplet(clean, SynthConfig.paper(), rng)
    got = degrade_triplet(clean, no_scene(SynthConfig.mixed(1.0)), np.random.default_rng(1))
    assert all(np.array_equal(g, r) for g, r in zip(got, ref))
    # p = 0 draws no coin: the full generator (with mixed()'s scratch rate), bit for bit
    ref = degrade_triplet(clean, SynthConfig(scratch_prob=0.15), np.random.default_rng(2))
    got = degrade_triplet(clean, no_scene(SynthConfig.mixed(0.0)), np.random.default_rng(2))
    assert all(np.array_equal(g, r) for g, r in zip(got, ref))
    # p = 0.3: paper-only triplets have no grain, so their unmasked pixels equal the clean frames
    paper_like = 0
    for seed in range(200):
        degraded, masks = degrade_triplet(clean, no_scene(SynthConfig.mixed(0.3)), np.random.default_rng(seed))
        paper_like += np.array_equal(degraded[~masks], clean[~masks])
    assert 40 <= paper_like <= 80  # binomial(200, 0.3): mean 60, sd 6.5
    assert SynthConfig.paper().paper_only_prob == 0 and SynthConfig.mixed().paper_only_prob == 0.3


def test_degrade_triplet_draws_the_scene_counter_examples_and_never_masks_them():
    """SynthConfig.scene_lines / scene_blotches are honoured by degrade_triplet itself (before, only the
    dataset drew them): without a view they are drawn alike into the three frames, never masked."""
    from correlnet.synth.scene import draw_scene

    only_scene = replace(SynthConfig().only(), scene_lines=True, scene_lines_prob=1.0, scene_blotches=True,
                         scene_blotches_prob=1.0)
    clean = grey(64)
    degraded, masks = degrade_triplet(clean, only_scene, np.random.default_rng(0))
    assert not masks.any() and np.abs(degraded - 0.5).max() > 0.03
    assert np.array_equal(degraded[0], degraded[1]) and np.array_equal(degraded[2], degraded[1])
    assert np.array_equal(clean, grey(64))  # the caller's triplet is never drawn on
    # With defects too: the scene first (same random numbers as draw_scene), then the defect pipeline as
    # on a clean triplet holding that scene; so the mask is the defects' alone.
    mixed = SynthConfig.mixed()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        with_scene = draw_scene(scene(seed), mixed, rng)
        ref = degrade_triplet_with_base(with_scene, no_scene(mixed), rng)
        got = degrade_triplet_with_base(scene(seed), mixed, np.random.default_rng(seed))
        assert all(np.array_equal(g, r) for g, r in zip(got, ref))
    # The share of mixed() triplets with scene lines is scene_lines_prob (0.5), paper-only ones included.
    lines = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        lines += rng.random() < mixed.scene_lines_prob  # draw_scene_lines' coin comes first
    drawn = sum(not np.array_equal(draw_scene(grey(32), replace(mixed, scene_blotches=False), np.random.default_rng(s)),
                                   grey(32)) for s in range(200))
    assert drawn == lines and 80 <= drawn <= 120
