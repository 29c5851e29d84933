"""The Review page's counters: corrected means the current mask differs from the proposal."""

from __future__ import annotations

from db.models import Correction, Film, Frame
from studio.settings import Settings
from db.store import Store
from tests.test_jobs import make_film
from webapp.review_counts import count_reviews


def _row(store: Store, film_id: int, index: int, kind: str, dice: float | None) -> None:
    with store.write() as s:
        frame = s.query(Frame).filter_by(film_id=film_id, index=index).one()
        s.add(Correction(frame_id=frame.id, path="x.png", sha256="0" * 64, author="t", kind=kind,
                         dice_vs_prediction=dice))


def test_corrected_counts_edited_evidence_not_row_kinds(tmp_path):
    store = Store.open(Settings(data_dir=tmp_path / "data"))
    try:
        film_id = make_film(store, frames=6)
        _row(store, film_id, 0, "accept", 1.0)  # accepted as is
        _row(store, film_id, 1, "edit", 0.8)  # edited
        _row(store, film_id, 2, "edit", 0.7)
        _row(store, film_id, 2, "edit", 1.0)  # ... then drawn back to the proposal: not corrected now
        _row(store, film_id, 3, "edit", 0.9)
        _row(store, film_id, 3, "accept", 0.9)  # accept of an edited mask: still corrected
        with store.session() as s:
            film = s.get(Film, film_id)
        counts = count_reviews(store, film)
        assert (counts.frames, counts.reviewed, counts.corrected) == (6, 4, 2)
    finally:
        store.close()
