"""The store at feature length: the queries of one Review page run on a 130 000-frame film (issue 16).

    .venv/bin/python bench/store_scale.py [--frames 130000] [--repeats 20] [--postgres URL] [--json]

Builds a throw-away store (SQLite in a temporary folder, or a fresh PostgreSQL schema with --postgres)
holding one film of --frames frame rows (rows only: no pixels are needed for these queries), one
model version with a prediction row per frame, and corrections on 1 % of the frames (half of them
edited, half accepted as is). Then times, --repeats times each, what one run of the Review page asks
the store for, through the same functions the page calls:
- `films.film_frames` (the page loads the film's frame list on every run),
- `webapp.review_counts.count_reviews` (the counters, when their 3 s cache is cold),
- `detection.latest_prediction` and `corrections.current_mask`'s row lookup for the shown frame,
and, apart, the "next suggested" button (`active.next_frames_to_review`) and the Films table
(`films.list_films`). review_p95_ms is the 95th percentile over the repeats of one page run's sum.
Last line (--json): {"frames", "backend", "review_p95_ms", "film_frames_p95_ms", "counts_p95_ms",
"frame_rows_p95_ms", "next_suggested_p95_ms", "films_table_p95_ms", "build_s"}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select


def build(store, n: int, seed: int = 0):
    """One film of n frame rows with a prediction each and corrections on 1 %; returns the film."""
    from db.models import Correction, Film, Frame, ModelVersion, Prediction

    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    with store.write() as s:
        film = Film(name="feature", source_path="/scans/feature", source_sha="0" * 64, width=2048, height=1556,
                    bit_depth=10, channels=3, frame_count=n, storage_dir="films/feature")
        version = ModelVersion(film_id=None, path="weights/default.pt", sha256="0" * 64, arch="efficient-correlnet",
                               encoder="tinynet_e", config={}, metrics={})
        s.add_all([film, version])
        s.flush()
        film_id, version_id = film.id, version.id
        shots = np.cumsum(rng.random(n) < 1 / 120)
        chunk = 10_000
        for start in range(0, n, chunk):
            rows = [dict(film_id=film_id, index=i, number=86400 + i, path=f"frames/{i:06d}.dpx", sha256="0" * 64,
                         prev_index=max(i - 1, 0), next_index=min(i + 1, n - 1), shot=int(shots[i]),
                         uncertainty=float(rng.random()), source_name=f"feature.{86400 + i}.dpx")
                    for i in range(start, min(n, start + chunk))]
            s.execute(insert(Frame), rows)
        ids = [fid for (fid,) in s.execute(select(Frame.id).where(Frame.film_id == film_id).order_by(Frame.index))]
        for start in range(0, n, chunk):
            s.execute(insert(Prediction), [dict(frame_id=ids[i], model_version_id=version_id, path=f"p/{i}.png",
                                                sha256="0" * 64, defect_pixels=int(rng.integers(0, 500)),
                                                uncertainty=float(rng.random()), created_at=now)
                                           for i in range(start, min(n, start + chunk))])
        corrected = rng.choice(n, size=max(1, n // 100), replace=False)
        s.execute(insert(Correction), [dict(frame_id=ids[int(i)], path=f"c/{i}.png", sha256="0" * 64, author="bench",
                                            kind="edit" if k % 2 else "accept", created_at=now,
                                            dice_vs_prediction=0.8 if k % 2 else 1.0, defect_pixels=10)
                                       for k, i in enumerate(corrected)])
    from studio.films import get_film

    return get_film(store, film_id)


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) * 1000


def measure(store, film, repeats: int) -> dict:
    from db.models import Correction
    from studio import active, detection, films
    from webapp.review_counts import count_reviews

    t_frames, t_counts, t_rows, t_page, t_next, t_table = [], [], [], [], [], []
    rng = np.random.default_rng(1)
    for _ in range(repeats):
        t0 = time.perf_counter()
        frames = films.film_frames(store, film)
        t1 = time.perf_counter()
        count_reviews(store, film)
        t2 = time.perf_counter()
        frame = frames[int(rng.integers(len(frames)))]
        detection.latest_prediction(store, frame.id)
        with store.session() as s:
            s.execute(select(Correction).where(Correction.frame_id == frame.id).order_by(Correction.id.desc())).first()
        t3 = time.perf_counter()
        active.next_frames_to_review(store, film, 2)
        t4 = time.perf_counter()
        films.list_films(store)
        t5 = time.perf_counter()
        t_frames.append(t1 - t0), t_counts.append(t2 - t1), t_rows.append(t3 - t2)
        t_page.append(t3 - t0), t_next.append(t4 - t3), t_table.append(t5 - t4)
    return {"review_p95_ms": p95(t_page), "film_frames_p95_ms": p95(t_frames), "counts_p95_ms": p95(t_counts),
            "frame_rows_p95_ms": p95(t_rows), "next_suggested_p95_ms": p95(t_next), "films_table_p95_ms": p95(t_table)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=130_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--postgres", default=None, metavar="URL", help="measure on PostgreSQL (a fresh schema) instead of SQLite")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from db.testing import temporary_store

    with tempfile.TemporaryDirectory() as tmp, temporary_store(Path(tmp), args.postgres) as store:
        t = time.perf_counter()
        film = build(store, args.frames)
        build_s = time.perf_counter() - t
        result = {"frames": args.frames, "backend": "postgresql" if args.postgres else "sqlite",
                  **measure(store, film, args.repeats), "build_s": build_s}
    for key, value in result.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
