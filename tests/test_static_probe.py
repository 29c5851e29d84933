"""The static-scene probe, and the shipped detector on it: persistent structure is scene, the one-frame
speck is a defect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from correlnet.checkpoint import load_detector
from correlnet.default_model import default_model_path
from correlnet.static_probe import probe, static_scene


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
