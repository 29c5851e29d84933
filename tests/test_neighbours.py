"""Duplicate frames, shot cuts and neighbour choice, on crafted clips and on real 1903/1906 footage."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from correlnet.frames import list_frame_files, read_image, to_gray_float
from correlnet.neighbours import (
    NeighbourConfig,
    Neighbours,
    analyse_sequence,
    choose_neighbours,
    detect_duplicates,
    thumbnail,
)

import cv2

# Found by inspecting the consecutive-frame differences of the 1906 clip (64-px thumbnails): these
# six pairs differ by 0.0002-0.0005 in mean absolute grey level, every other pair by 0.017-0.083.
MARKET_DUPLICATE_PAIRS = [(2, 3), (12, 13), (19, 20), (29, 30), (48, 49), (55, 56)]  # file numbers


def scene(rng: np.random.Generator, shape=(96, 128), brightness=0.5) -> np.ndarray:
    """A smooth random texture larger than the frame, so it can pan."""
    big = rng.random((shape[0] + 64, shape[1] + 64)).astype(np.float32)
    big = cv2.GaussianBlur(big, (0, 0), 4)
    big = (big - big.mean()) / (big.std() + 1e-6) * 0.15 + brightness
    return np.clip(big, 0, 1)


def clip(rng: np.random.Generator, texture: np.ndarray, frames: int, shape=(96, 128), step=3) -> list[np.ndarray]:
    """Panning shot with fresh film grain in every frame."""
    out = []
    for t in range(frames):
        view = texture[:shape[0], t * step:t * step + shape[1]]
        out.append(np.clip(view + rng.normal(0, 0.03, shape).astype(np.float32), 0, 1))
    return out


def rescan(rng: np.random.Generator, frame: np.ndarray) -> np.ndarray:
    """The same film frame scanned again: same grain, a little sensor noise."""
    return np.clip(frame + rng.normal(0, 0.004, frame.shape).astype(np.float32), 0, 1)


def analyse(frames: list[np.ndarray]):
    return analyse_sequence(np.stack([thumbnail(f) for f in frames]))


def naive_neighbours(is_dup: np.ndarray, shot: np.ndarray) -> list[Neighbours]:
    """Reference: walk outwards from each frame to the nearest frame in the same shot that is
    separated from it by at least one non-duplicate frame start."""
    n, out = len(is_dup), []
    for t in range(n):
        prev = next((j for j in range(t - 1, -1, -1) if shot[j] == shot[t] and (~is_dup[j + 1:t + 1]).any()), None)
        nxt = next((j for j in range(t + 1, n) if shot[j] == shot[t] and (~is_dup[t + 1:j + 1]).any()), None)
        flagged = prev is None or nxt is None
        prev = prev if prev is not None else (nxt if nxt is not None else t)
        nxt = nxt if nxt is not None else prev
        out.append(Neighbours(prev, nxt, flagged))
    return out


def test_choose_neighbours_matches_a_naive_walk():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 15))
        is_dup = rng.random(n) < 0.35
        is_dup[0] = False
        shot = np.cumsum(rng.random(n) < 0.15)
        assert choose_neighbours(is_dup, shot) == naive_neighbours(is_dup, shot)


def test_duplicates_in_a_panning_shot_are_skipped():
    rng = np.random.default_rng(1)
    frames = clip(rng, scene(rng), 18)
    # Re-scanned duplicates: one after frame 4, two after frame 10.
    frames = frames[:5] + [rescan(rng, frames[4])] + frames[5:11] + [rescan(rng, frames[10]), rescan(rng, frames[10])] + frames[11:]
    result = analyse(frames)
    assert np.flatnonzero(result.is_duplicate).tolist() == [5, 12, 13]
    assert not result.cuts.any() and set(result.shot.tolist()) == {0}
    nb = result.neighbours
    assert nb[4] == Neighbours(3, 6, False) and nb[5] == Neighbours(3, 6, False) and nb[6] == Neighbours(5, 7, False)
    assert [nb[t] for t in (11, 12, 13)] == [Neighbours(10, 14, False)] * 3
    assert nb[0] == Neighbours(1, 1, True) and nb[-1] == Neighbours(len(frames) - 2, len(frames) - 2, True)


def test_shot_cut_splits_neighbours():
    rng = np.random.default_rng(2)
    frames = clip(rng, scene(rng, brightness=0.35), 10) + clip(rng, scene(rng, brightness=0.6), 10)
    result = analyse(frames)
    assert np.flatnonzero(result.cuts).tolist() == [9]
    assert result.shot.tolist() == [0] * 10 + [1] * 10
    assert not result.is_duplicate.any()
    assert result.neighbours[9] == Neighbours(8, 8, True) and result.neighbours[10] == Neighbours(11, 11, True)
    assert result.neighbours[5] == Neighbours(4, 6, False)


def test_flicker_and_fast_pan_are_not_cuts():
    rng = np.random.default_rng(3)
    frames = clip(rng, scene(rng), 16, step=4)
    gains = 1 + rng.uniform(-0.08, 0.08, len(frames))  # frame-to-frame flicker of old prints
    result = analyse([np.clip(f * g, 0, 1) for f, g in zip(frames, gains)])
    assert not result.cuts.any() and not result.is_duplicate.any()


def test_shot_without_a_distinct_frame_uses_itself():
    rng = np.random.default_rng(4)
    a = clip(rng, scene(rng, brightness=0.3), 6)
    b = clip(rng, scene(rng, brightness=0.7), 1)
    frames = a + [b[0], rescan(rng, b[0])] + clip(rng, scene(rng, brightness=0.3), 6)
    result = analyse(frames)
    assert np.flatnonzero(result.cuts).tolist() == [5, 7]
    assert result.neighbours[6] == Neighbours(6, 6, True) and result.neighbours[7] == Neighbours(7, 7, True)


def test_single_frame_and_static_copies():
    one = analyse_sequence(np.zeros((1, 4, 4), np.float32))
    assert one.neighbours == [Neighbours(0, 0, True)] and one.is_duplicate.tolist() == [False]
    same = analyse_sequence(np.full((4, 4, 4), 0.5, np.float32))  # an exact freeze frame
    assert same.is_duplicate.tolist() == [False, True, True, True]
    assert all(n == Neighbours(t, t, True) for t, n in enumerate(same.neighbours))
    with pytest.raises(ValueError, match="thumbnails"):
        analyse_sequence(np.zeros((0, 4, 4), np.float32))
    with pytest.raises(ValueError, match="grayscale"):
        thumbnail(np.zeros((4, 4, 3), np.float32))


def test_duplicate_threshold_is_relative_to_the_clip():
    # The same absolute difference is a duplicate in a busy clip and a real change in a calm one.
    busy = np.array([0.05, 0.04, 0.004, 0.06, 0.05])
    calm = np.array([0.005, 0.004, 0.004, 0.006, 0.005])
    assert detect_duplicates(busy).tolist() == [False, False, False, True, False, False]
    assert not detect_duplicates(calm).any()
    assert detect_duplicates(calm, NeighbourConfig(duplicate_floor=0.0045)).tolist() == [
        False, False, True, True, False, False]


@functools.lru_cache(maxsize=2)
def real_thumbs(folder) -> tuple[list[int], np.ndarray]:
    files = list_frame_files(folder)
    return [int(f.stem) for f in files], np.stack([thumbnail(to_gray_float(read_image(f))) for f in files])


def test_real_footage_duplicates(real_film_dir):
    numbers, thumbs = real_thumbs(real_film_dir / "a_trip_down_market_street_before_the_fire")
    result = analyse_sequence(thumbs)
    found = [(numbers[t - 1], numbers[t]) for t in np.flatnonzero(result.is_duplicate)]
    assert found == MARKET_DUPLICATE_PAIRS
    assert not result.cuts.any()
    t = numbers.index(3)  # frame 3 repeats 2: both see 1 and 4
    assert result.neighbours[t] == result.neighbours[t - 1] == Neighbours(t - 2, t + 1, False)

    robbery_numbers, robbery = real_thumbs(real_film_dir / "the_great_train_robbery")
    clean = analyse_sequence(robbery)
    assert not clean.is_duplicate.any() and not clean.cuts.any()
    assert sum(n.flagged for n in clean.neighbours) == 2  # only the first and last frame


def test_real_footage_cut_between_the_two_films(real_film_dir):
    _, market = real_thumbs(real_film_dir / "a_trip_down_market_street_before_the_fire")
    _, robbery = real_thumbs(real_film_dir / "the_great_train_robbery")
    joined = analyse_sequence(np.concatenate([robbery[:20], market[:20]]))
    assert np.flatnonzero(joined.cuts).tolist() == [19]
    assert joined.neighbours[19].flagged and joined.neighbours[20].flagged
