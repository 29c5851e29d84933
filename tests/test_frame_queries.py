"""studio.frame_queries against plain loops over the whole frame list (what the Review page did before
issue 16), on SQLite and PostgreSQL: the window of frames shown, shot jumps, frame numbers and ranges,
the next frame with detections under the "shown prediction" rule of studio.detection.latest_prediction."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import insert, select, update

from db.models import Correction, Film, Frame, ModelVersion, Prediction
from db.testing import temporary_store
from studio import corrections, detection, export, films
from studio import frame_queries as fq


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with temporary_store(tmp_path, url) as s:
        yield s


def seeded_film(store, n: int = 60, seed: int = 0) -> Film:
    """n frames: shots of 1-12 frames, numbers from 1001 with a few repeated (a duplicated number), and
    duplicated frames whose prev/next neighbour skips a frame."""
    rng = np.random.default_rng(seed)
    shots = np.cumsum(rng.random(n) < 1 / 6)
    numbers = 1001 + np.arange(n)
    numbers[[10, 11]] = numbers[9]  # three frames numbered 1010
    with store.write() as s:
        film = Film(name=f"f{seed}", source_path="/x", source_sha="0" * 64, width=8, height=4, bit_depth=8,
                    channels=1, frame_count=n, storage_dir="films/f")
        s.add(film)
        s.flush()
        s.execute(insert(Frame), [dict(film_id=film.id, index=i, number=int(numbers[i]), path=f"{i}.png",
                                       sha256="0" * 64, prev_index=max(i - 1 - (i % 7 == 0), 0),
                                       next_index=min(i + 1 + (i % 5 == 0), n - 1), shot=int(shots[i]))
                                  for i in range(n)])
        return film


def reference_shot_start(frames, index: int, direction: int) -> int | None:
    """The Review page's former rule, over the whole list."""
    starts = [f.index for i, f in enumerate(frames) if i == 0 or f.shot != frames[i - 1].shot]
    if direction > 0:
        return next((s for s in starts if s > index), None)
    return next((s for s in reversed(starts) if s < index), None)


def test_frame_window_holds_the_frames_the_page_shows(store):
    film = seeded_film(store)
    frames = films.film_frames(store, film)
    assert fq.frame_count(store, film) == len(frames) == 60
    for asked in [-3, 0, 1, 7, 35, 58, 59, 60, 500]:
        window = fq.frame_window(store, film, asked)
        frame = frames[int(np.clip(asked, 0, 59))]
        got = [window.frame, window.prev, window.next]
        want = [frame, frames[frame.prev_index], frames[frame.next_index]]
        assert [f.id for f in got] == [f.id for f in want], asked
    assert fq.frames_at(store, film.id, [3, 70, -1]).keys() == {3}
    assert fq.frame_at(store, film, 60) is None


def test_a_film_without_frames_has_no_window(store):
    with store.write() as s:
        film = Film(name="empty", source_path="/x", source_sha="1" * 64, width=8, height=4, bit_depth=8,
                    channels=1, frame_count=0, storage_dir="films/e")
        s.add(film)
    assert fq.frame_count(store, film) == 0 and fq.frame_window(store, film, 0) is None


def test_shot_starts_match_the_list_rule(store):
    film = seeded_film(store)
    frames = films.film_frames(store, film)
    assert len({f.shot for f in frames}) > 5
    for index in range(60):
        for direction in (+1, -1):
            assert fq.shot_start(store, film, index, direction) == reference_shot_start(frames, index, direction), \
                (index, direction)


def test_frame_numbers_and_ranges(store):
    film = seeded_film(store)
    frames = films.film_frames(store, film)
    assert fq.frame_numbered(store, film, 1010).index == 9  # the first of the three
    assert fq.frame_numbered(store, film, 1030).index == 29
    assert fq.frame_numbered(store, film, 999) is None
    for low, high in [(1005, 1020), (1020, 1005), (1010, 1010), (2000, 3000), (0, 5000)]:
        want = [f.id for f in frames if min(low, high) <= f.number <= max(low, high)]
        assert fq.frame_ids_numbered(store, film, (low, high)) == want
        assert fq.count_numbered(store, film, (low, high)) == len(want)


def _version(s, film_id=None) -> int:
    version = ModelVersion(film_id=film_id, path="/m.pt", sha256="0" * 64, arch="efficient-correlnet", encoder=None)
    s.add(version)
    s.flush()
    return version.id


def test_next_with_detections_follows_the_prediction_a_restorer_sees(store):
    film = seeded_film(store, n=30, seed=1)
    frames = films.film_frames(store, film)
    rng = np.random.default_rng(2)
    with store.write() as s:
        old, active, other = _version(s), _version(s, film.id), _version(s, film.id)
        s.execute(update(Film).where(Film.id == film.id).values(active_model_version_id=active))
        rows = []
        for f in frames:
            # active: its own pixels decide, whatever the others say; else the newest prediction decides
            for version in rng.permutation([old, active, other])[:int(rng.integers(0, 4))]:
                rows.append(dict(frame_id=f.id, model_version_id=int(version), path="p.png", sha256="0" * 64,
                                 defect_pixels=int(rng.choice([0, 0, 5])), uncertainty=0.1))
        s.execute(insert(Prediction), rows)

    def reference(index: int) -> int | None:
        for f in frames[index + 1:] + frames[:index]:
            prediction = detection.latest_prediction(store, f.id)
            if prediction is not None and prediction.defect_pixels > 0:
                return f.index
        return None

    answers = [fq.next_detected_index(store, film, i) for i in range(30)]
    assert answers == [reference(i) for i in range(30)]
    _export_rows_match_the_per_frame_reads(store, film, frames)
    assert len(set(answers)) > 3, "the seeded film has too few frames with detections to test anything"
    with store.write() as s:  # without an active version: the newest prediction of any version decides
        s.execute(update(Film).where(Film.id == film.id).values(active_model_version_id=None))
    assert [fq.next_detected_index(store, film, i) for i in range(30)] == [reference(i) for i in range(30)]
    with store.write() as s:
        s.execute(update(Prediction).values(defect_pixels=0))
        only = s.scalar(select(Prediction.frame_id).order_by(Prediction.id.desc()).limit(1))
        s.execute(update(Prediction).where(Prediction.frame_id == only).values(defect_pixels=3))
    index = next(f.index for f in frames if f.id == only)
    assert fq.next_detected_index(store, film, index) is None  # only the frame shown has detections
    assert fq.next_detected_index(store, film, (index + 1) % 30) == index  # found after wrapping round


def _export_rows_match_the_per_frame_reads(store, film, frames) -> None:
    """export.export_rows (one query) gives each frame the rows export read one frame at a time before."""
    with store.write() as s:
        for f in frames[::3]:
            s.add_all([Correction(frame_id=f.id, path=f"c{k}.png", sha256="0" * 64, author="t") for k in range(2)])
    assert not fq.numbers_unique(store, film)  # three frames numbered 1010: mattes are named by index
    for frame_range in [None, (1005, 1012)]:
        rows = export.export_rows(store, film, frame_range)
        want = [f for f in frames if frame_range is None or frame_range[0] <= f.number <= frame_range[1]]
        assert [r.frame.id for r in rows] == [f.id for f in want]
        assert [r.number for r in rows] == [f.index for f in want]
        for row in rows:
            correction, prediction = (corrections.current_correction(store, row.frame.id),
                                      detection.latest_prediction(store, row.frame.id))
            assert (row.correction and row.correction.id) == (correction and correction.id)
            assert (row.prediction and row.prediction.id) == (prediction and prediction.id)
