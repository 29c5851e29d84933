"""Active learning: uncertainty and effort against hand-computed values; the review order (most
uncertain first, across shots, least recently served first); two restorers never get the same frame."""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from db.models import Frame
from db.store import Store
from studio import active
from studio.settings import Settings
from tests.test_jobs import add_correction, make_film


@pytest.fixture
def store(tmp_path: Path) -> Store:
    st = Store.open(Settings(data_dir=tmp_path / "data"))
    yield st
    st.close()


def set_uncertainty(store: Store, film_id: int, values: list[float]) -> None:
    with store.write() as s:
        for f in s.query(Frame).filter_by(film_id=film_id):
            f.uncertainty = values[f.index]


def test_frame_uncertainty_is_mean_binary_entropy_in_bits() -> None:
    probs = np.array([[0.5, 0.0], [1.0, 0.1]], np.float32)
    h01 = -(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))
    assert active.frame_uncertainty(probs) == pytest.approx((1.0 + 0 + 0 + h01) / 4, abs=1e-4)
    assert active.frame_uncertainty((probs * 255).round().astype(np.uint8)) == pytest.approx(
        active.frame_uncertainty(np.round(probs * 255) / 255), abs=1e-9)
    with pytest.raises(ValueError, match="sigmoid"):
        active.frame_uncertainty(np.array([[2.0]]))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        active.frame_uncertainty(np.zeros((2, 2, 2)))


def test_correction_effort_is_dice_between_proposal_and_final_mask() -> None:
    probs = np.zeros((4, 4), np.float32)
    probs[0, :3] = 0.9  # proposal: 3 pixels
    final = np.zeros((4, 4), bool)
    final[0, 1:4] = True  # restorer: 3 pixels, 2 shared
    assert active.correction_effort(probs, final) == pytest.approx(2 * 2 / 6)
    assert active.correction_effort(np.zeros((4, 4)), np.zeros((4, 4), bool)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        active.mask_dice(np.zeros((2, 2)), np.zeros((3, 3)))


def test_review_order_spreads_across_shots_and_skips_reviewed(store: Store) -> None:
    # shots: 0 0 0 1 1 2; uncertainties make shot 0 the most uncertain throughout
    film = make_film(store, frames=6, shots=(0, 0, 0, 1, 1, 2))
    set_uncertainty(store, film, [0.9, 0.8, 0.7, 0.3, 0.6, 0.1])
    add_correction(store, film, 1)  # corrected: not offered again
    got = [f.index for f in active.next_frames_to_review(store, film, n=5)]
    # round 1: best of each shot by uncertainty (0 from shot 0, 4 from shot 1, 5 from shot 2); round 2: 2, 3
    assert got == [0, 4, 5, 2, 3]


def test_least_recently_served_first(store: Store) -> None:
    film = make_film(store, frames=4)
    set_uncertainty(store, film, [0.4, 0.3, 0.2, 0.1])
    t0 = active.utcnow()
    assert [f.index for f in active.next_frames_to_review(store, film, 2, now=t0)] == [0, 1]
    assert [f.index for f in active.next_frames_to_review(store, film, 2, now=t0 + timedelta(seconds=1))] == [2, 3]
    # all served: the oldest-served come back first, most uncertain first among them
    assert [f.index for f in active.next_frames_to_review(store, film, 3, now=t0 + timedelta(seconds=2))] == [0, 1, 2]


def test_two_restorers_at_once_get_different_frames(store: Store) -> None:
    film = make_film(store, frames=12)
    set_uncertainty(store, film, [0.5] * 12)
    results: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)

    def ask(session: str) -> None:
        barrier.wait()
        results[session] = [f.index for f in active.next_frames_to_review(store, film, 4, session_id=session)]

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results["alice"]) == len(results["bob"]) == 4
    assert not set(results["alice"]) & set(results["bob"])


def test_refresh_uncertainty_from_predictions(store: Store) -> None:
    from db.models import ModelVersion, Prediction

    film = make_film(store, frames=2)
    with store.write() as s:
        mv = ModelVersion(film_id=None, path="/x.pt", sha256="0" * 64, arch="efficient-correlnet", encoder="e")
        s.add(mv)
        s.flush()
        for f in s.query(Frame).filter_by(film_id=film):
            s.add(Prediction(frame_id=f.id, model_version_id=mv.id, path="p.png", sha256="0" * 64,
                             defect_pixels=0, uncertainty=0.25 + f.index))
        mv_id = mv.id
    assert active.refresh_frame_uncertainty(store, film, mv_id) == 2
    with store.session() as s:
        assert sorted(f.uncertainty for f in s.query(Frame).filter_by(film_id=film)) == [0.25, 1.25]


def test_a_long_shot_is_spread_over_segments(store: Store) -> None:
    # one shot of 30 frames; the 3 most uncertain sit together at 10..12
    film = make_film(store, frames=30)
    set_uncertainty(store, film, [0.9 if 10 <= i <= 12 else 0.1 + i / 1000 for i in range(30)])
    got = [f.index for f in active.next_frames_to_review(store, film, n=4)]
    assert got == [10, 29, 9, 11]  # segment 1's best, segment 2's best, segment 0's best, then segment 1 again


def test_frames_without_uncertainty_come_last_and_ties_go_by_index(store: Store) -> None:
    film = make_film(store, frames=4, shots=(0, 1, 2, 3))
    with store.write() as s:
        for f in s.query(Frame).filter_by(film_id=film):
            f.uncertainty = [None, 0.5, None, 0.5][f.index]
    assert [f.index for f in active.next_frames_to_review(store, film, n=4)] == [1, 3, 0, 2]
