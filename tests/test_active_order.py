"""The review order in SQL (studio.active.review_order, next_frames_to_review) against the plain Python
order it replaced (session 7's `order_for_review`, kept here as the reference), on SQLite and
PostgreSQL: seeded random films with several shots and segments, tied and missing uncertainties,
reviewed and corrected frames, and frames served at several times; then two processes asking at once."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, insert, select, update

from db.models import Correction, Film, Frame
from db.testing import temporary_store
from studio import active
from tests.process_pair import run_pair

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def order_for_review(frames: list[Any], segment: int = active.SEGMENT_FRAMES) -> list[Any]:
    """The reference: never-served (or least recently served) first; within the same serving time,
    round-robin over (shot, index // segment), each one's most uncertain frame first; frames without
    an uncertainty last. frames: objects with .index, .shot, .uncertainty, .last_served_at."""
    by_serve: dict[datetime | None, list[Any]] = defaultdict(list)
    for f in frames:
        by_serve[f.last_served_at].append(f)
    ordered: list[Any] = []
    for served in sorted(by_serve, key=lambda t: (t is not None, t or T0)):
        per_shot: dict[tuple[int, int], list[Any]] = defaultdict(list)
        for f in sorted(by_serve[served], key=_uncertainty_key):
            per_shot[(f.shot or 0, f.index // segment)].append(f)
        ranked = [(rank, _uncertainty_key(f), f) for shot in per_shot.values() for rank, f in enumerate(shot)]
        ordered.extend(f for _, _, f in sorted(ranked, key=lambda r: (r[0], r[1])))
    return ordered


def _uncertainty_key(frame: Any) -> tuple[bool, float, int]:
    u = frame.uncertainty
    return (u is None, -(u or 0.0), frame.index)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with temporary_store(tmp_path, url) as s:
        yield s


def random_film(store, rng: np.random.Generator, n: int, served_share: float = 0.3) -> int:
    """A film of n frames: shots of 1-40 frames, uncertainties drawn from a few tied values, uniform
    values and NULL (not predicted), 10 % reviewed (half by a correction, half by reviewed_at), and
    `served_share` of the frames served at one of three times."""
    shots = np.cumsum(rng.random(n) < 1 / 20)
    ties = [0.25, 0.5, 0.75, 0.0]
    with store.write() as s:
        film = Film(name=f"f{rng.integers(1 << 30)}", source_path="/x", source_sha="0" * 64, width=8, height=4,
                    bit_depth=8, channels=1, frame_count=n, storage_dir="films/f")
        s.add(film)
        s.flush()
        rows = []
        for i in range(n):
            kind = rng.random()
            u = None if kind < 0.15 else float(rng.choice(ties)) if kind < 0.5 else float(rng.random())
            served = T0 + timedelta(minutes=int(rng.integers(3))) if rng.random() < served_share else None
            rows.append(dict(film_id=film.id, index=i, number=1001 + i, path=f"{i}.png", sha256="0" * 64,
                             prev_index=max(i - 1, 0), next_index=min(i + 1, n - 1), shot=int(shots[i]),
                             uncertainty=u, last_served_at=served,
                             reviewed_at=T0 if rng.random() < 0.05 else None))
        s.execute(insert(Frame), rows)
        ids = list(s.scalars(select(Frame.id).where(Frame.film_id == film.id).order_by(Frame.index)))
        corrected = rng.choice(n, size=n // 20, replace=False)
        s.execute(insert(Correction), [dict(frame_id=ids[int(i)], path="c.png", sha256="0" * 64, author="t")
                                       for i in corrected])
        return film.id


def unreviewed(store, film_id: int) -> list[Frame]:
    """The film's frames with no reviewed_at and no correction, found in Python."""
    with store.session() as s:
        corrected = set(s.scalars(select(Correction.frame_id)))
        return [f for f in s.scalars(select(Frame).where(Frame.film_id == film_id))
                if f.reviewed_at is None and f.id not in corrected]


def reference_order(store, film_id: int) -> list[int]:
    """Frame indices in the reference order, over the unreviewed frames as the store holds them now."""
    return [f.index for f in order_for_review(unreviewed(store, film_id))]


def sql_order(store, film_id: int) -> list[int]:
    with store.session() as s:
        index_of = dict(s.execute(select(Frame.id, Frame.index).where(Frame.film_id == film_id)).all())
        return [index_of[i] for i in s.scalars(active.review_order(film_id))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_sql_order_is_the_python_order(store, seed):
    film = random_film(store, np.random.default_rng(seed), n=400)
    expected = reference_order(store, film)
    assert len(expected) < 400 and len(set(expected)) == len(expected)
    assert sql_order(store, film) == expected


def test_suggestions_follow_the_python_order_while_frames_are_served_and_corrected(store):
    """Ask again and again, as restorers do, for 1-3 frames (fast path: a few frames of the earliest-served
    group ranked; small groups once everything was served: the whole film ranked), correcting some of
    what was served; each answer is the reference's first frames of the store at that moment."""
    rng = np.random.default_rng(7)
    film = random_film(store, rng, n=90, served_share=0.0)
    exhausted = False
    for step in range(80):
        n = int(rng.integers(1, 4))
        expected = reference_order(store, film)[:n]
        got = active.next_frames_to_review(store, film, n, now=T0 + timedelta(seconds=step))
        assert [f.index for f in got] == expected, f"step {step}, n={n}"
        assert all(f.last_served_at == T0 + timedelta(seconds=step) for f in got)
        if got and rng.random() < 0.3:  # the restorer corrects one of them: its group shrinks
            with store.write() as s:
                s.add(Correction(frame_id=got[0].id, path="c.png", sha256="0" * 64, author="t"))
        exhausted |= all(f.last_served_at is not None for f in unreviewed(store, film))
    assert exhausted, "the film's never-served frames ran out: later answers came from served groups"


def test_suggestions_fill_from_the_next_served_groups_without_ranking_the_film(store):
    """Late in a review every frame was served and the earliest-served groups hold fewer frames than asked
    for: the answer takes them all, then the next groups' first frames (the reference order), and every
    ranking the database does is over an explicit list of at most SEGMENT_FRAMES * n frames."""
    rng = np.random.default_rng(11)
    film = random_film(store, rng, n=400, served_share=1.0)  # served at T0, T0 + 1 min, T0 + 2 min
    with store.write() as s:  # the first group keeps 2 unreviewed frames, the second 1
        for minute, keep in ((0, 2), (1, 1)):
            group = [f for f in unreviewed(store, film) if f.last_served_at == T0 + timedelta(minutes=minute)]
            s.execute(update(Frame).where(Frame.id.in_([f.id for f in group[keep:]])).values(reviewed_at=T0))
    rankings: list[tuple[str, int]] = []

    def seen(conn, cursor, statement, params, context, executemany):
        if "row_number()" in statement.lower():
            rankings.append((statement, len(params)))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        for step, n in enumerate([5, 1, 4, 6, 3, 2, 6]):
            expected = reference_order(store, film)[:n]
            got = active.next_frames_to_review(store, film, n, now=T0 + timedelta(hours=1, seconds=step))
            assert [f.index for f in got] == expected, f"step {step}, n={n}"
            assert rankings and all(" IN (" in sql and count <= active.SEGMENT_FRAMES * n + 3
                                    for sql, count in rankings), f"step {step}: a ranking of more than a prefix"
            rankings.clear()
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)


def test_nothing_left_to_review(store):
    film = random_film(store, np.random.default_rng(3), n=30)
    with store.write() as s:
        s.execute(update(Frame).where(Frame.film_id == film).values(reviewed_at=T0))
    assert active.next_frames_to_review(store, film, 2) == []
    assert sql_order(store, film) == []


WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from db.store import Store
    from studio import active
    from studio.settings import Settings
    url, data_dir, film, go = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    store = Store.open(Settings(data_dir=data_dir, db_url=url), upgrade=False)
    Path(sys.argv[5]).touch()
    while not go.exists():
        time.sleep(0.005)
    start = time.time()
    got = [f.index for _ in range(30) for f in active.next_frames_to_review(store, film, 3)]
    print(start, time.time(), *got)
""")


def test_two_processes_asking_at_once_get_different_frames(store, tmp_path):
    film = random_film(store, np.random.default_rng(4), n=200, served_share=0.0)
    with store.write() as s:  # every frame unreviewed and alike: both processes want the same frames
        s.execute(update(Frame).where(Frame.film_id == film).values(uncertainty=0.5, reviewed_at=None))
        s.execute(Correction.__table__.delete())
    url = store.engine.url.render_as_string(hide_password=False)
    outputs = run_pair(WORKER, [[url, str(tmp_path), str(film)]] * 2, tmp_path)
    results = [out.split() for out in outputs]
    handed = [int(i) for r in results for i in r[2:]]
    assert len(handed) == 2 * 30 * 3 and len(set(handed)) == len(handed), "a frame was handed out twice"
