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


def test_cached_counts_are_per_store_and_per_save(tmp_path):
    """The counters' cache is shared by every session of the process: two stores whose films have the
    same id (every test store's first film is 1) must not read each other's counts, and a save in one
    session must not land on a nonce another session already cached (CI failed on both)."""
    import streamlit as st

    from webapp import canvas_input
    from webapp.review_counts import review_counts

    stores = [Store.open(Settings(data_dir=tmp_path / name)) for name in ("a", "b")]
    try:
        ids = [make_film(stores[0], frames=6), make_film(stores[1], frames=3)]
        assert ids[0] == ids[1]
        films = []
        for store, film_id in zip(stores, ids):
            with store.session() as s:
                films.append(s.get(Film, film_id))
        st.session_state.pop("review_nonce", None)
        assert review_counts(stores[0], films[0]).frames == 6
        assert review_counts(stores[1], films[1]).frames == 3  # not store a's cached 6
        canvas_input.bump(123)  # "session 1" saves ...
        first = st.session_state["review_nonce"]
        _row(stores[0], ids[0], 0, "accept", 1.0)
        assert review_counts(stores[0], films[0]).reviewed == 1
        st.session_state.pop("review_nonce")  # "session 2", new: its first save ...
        canvas_input.bump(123)
        assert st.session_state["review_nonce"] != first  # ... gets its own nonce
        _row(stores[0], ids[0], 1, "accept", 1.0)
        assert review_counts(stores[0], films[0]).reviewed == 2  # not session 1's cached 1
    finally:
        for store in stores:
            store.close()
