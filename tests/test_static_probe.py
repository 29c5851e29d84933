"""The static-scene probe, and the shipped detector on it: persistent structure is scene, the one-frame
speck is a defect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from correlnet.checkpoint import load_detector
from correlnet.default_model import default_model_path
from correlnet.static_probe import faint_specks, probe, speck_sensitivity, static_scene


class _VerticalLineDetector(nn.Module):
    """A stub single-frame detector: flags strong horizontal gradients of the middle frame (vertical
    lines and edges), whatever the neighbours say: what the session-5 model did."""

    size_multiple = 1

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        mid = frames[:, 1:2]
        gx = (mid[..., 2:] - mid[..., :-2]).abs()
        gx = torch.nn.functional.pad(gx, (1, 1))
        return (gx - 0.1) * 100


def test_scene_structures_are_in_every_frame_and_the_speck_in_the_middle_only():
    scene = static_scene(seed=3)
    frames = scene.frames
    assert frames.shape == (3, 192, 192) and frames.dtype == np.float32
    noise = (frames[0] - frames[2])[~scene.speck].std()
    assert noise == pytest.approx(0.005 * np.sqrt(2), rel=0.15)  # independent noise only
    assert (frames[1][scene.speck] - frames[0][scene.speck]).min() > 0.2
    assert set(scene.structures) >= {"dark line 90 deg", "light line 0 deg", "vertical edge", "static blobs"}
    with pytest.raises(ValueError, match="96"):
        static_scene(size=64)


def test_probe_catches_a_detector_that_marks_vertical_lines():
    r = probe(_VerticalLineDetector().eval(), static_scene())
    assert r["dark line 90 deg"] > 0.5 and r["vertical edge"] > 0.3
    assert r["dark line 0 deg"] < 0.1  # only where it crosses the vertical lines
    assert r["flagged_share"] > 0.005


def test_shipped_detector_leaves_a_static_scene_empty_and_finds_the_one_frame_speck():
    model = load_detector(default_model_path())
    for seed in (0, 1):
        r = probe(model, static_scene(seed=seed))
        assert r["flagged_share"] <= 0.0005, r
        assert r["speck_found"] >= 0.5, r


class _ThresholdDetector(nn.Module):
    """A stub temporal detector: flags where the middle frame differs from both neighbours' mean by
    more than 0.1 (so it finds a speck of peak contrast 0.15 and misses one of 0.05)."""

    size_multiple = 1

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        diff = (frames[:, 1:2] - (frames[:, 0:1] + frames[:, 2:3]) / 2).abs()
        return (diff - 0.1) * 1000


def test_faint_specks_have_the_asked_peak_contrast_in_the_middle_frame_only():
    frames, centres = faint_specks(0.11, seed=1)
    assert frames.shape == (3, 192, 192) and len(centres) == 16
    diff = np.abs(frames[1] - frames[0])
    for y, x in centres:  # the peak of each speck is the contrast asked for, up to the noise
        assert diff[y - 1 : y + 2, x - 1 : x + 2].max() == pytest.approx(0.11, abs=0.02)
    assert np.abs(frames[2] - frames[0]).max() < 0.04  # the neighbours are the scene, up to noise
    with pytest.raises(ValueError, match="contrast"):
        faint_specks(0.8)


def test_speck_sensitivity_finds_what_a_threshold_detector_can_see():
    sens = speck_sensitivity(_ThresholdDetector().eval(), (0.05, 0.15), seeds=1)
    assert sens[0.05]["found"] == 0.0 and sens[0.15]["found"] == 1.0
    assert sens[0.15]["flagged_share"] < 0.001
