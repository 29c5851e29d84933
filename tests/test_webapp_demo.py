"""studio/demo.py: the demo film is real footage with real synthetic defects, deterministic."""

from __future__ import annotations

import cv2
import numpy as np

from studio.demo import make_demo_film, read_clip_gray, demo_clip_path


def _read(folder):
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))]


def test_demo_film_is_deterministic_and_has_defects(tmp_path):
    a = make_demo_film(tmp_path / "a", n_frames=4, seed=0, size=(160, 68))
    b = make_demo_film(tmp_path / "b", n_frames=4, seed=0, size=(160, 68))
    frames_a, frames_b = _read(a), _read(b)
    assert len(frames_a) == 4 and frames_a[0].shape == (68, 160) and frames_a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b))
    truth = _read(tmp_path / "a_truth")
    assert len(truth) == 4 and all(set(np.unique(m)) <= {0, 255} for m in truth)
    assert sum(int((m > 0).sum()) for m in truth) > 0, "the demo must contain defects to find"
    clean = read_clip_gray(demo_clip_path(), 4)
    clean = np.stack([cv2.resize(f, (160, 68), interpolation=cv2.INTER_AREA) for f in clean])
    diff = np.abs(frames_a[0].astype(np.float32) / 255 - clean[0])
    inside = truth[0] > 0
    if inside.any():  # defects change the picture more than grain does
        assert diff[inside].mean() > diff[~inside].mean()
    c = make_demo_film(tmp_path / "c", n_frames=4, seed=1, size=(160, 68))
    assert not all(np.array_equal(x, y) for x, y in zip(frames_a, _read(c)))
