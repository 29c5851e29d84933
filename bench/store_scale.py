"""The store at feature length: the queries of one Review page run on a 130 000-frame film (issue 16).

    .venv/bin/python bench/store_scale.py [--frames 130000] [--repeats 20] [--postgres URL] [--json]

Builds a throw-away store (SQLite in a temporary folder, or a fresh PostgreSQL schema with --postgres)
holding one film of --frames frame rows (rows only: no pixels are needed for these queries), one
model version with a prediction row per frame, and corrections on 1 % of the frames (half of them
edited, half accepted as is). Then times, --repeats times each at a random frame, what one run of the
Review page (webapp/app_pages/review.py, `render`) asks the store for, through the same functions,
in the page's order (`page_run`):
- the film picker (`films.ready_films`, webapp.context.choose_film),
- the frames shown (`frame_queries.frame_window`: the frame and its flick neighbours; the frames the
  canvas holds, `webapp.canvas_frames.Window.around`, with their prediction and correction rows; the
  film's first and last frame numbers for the go-to box),
- the counters (`webapp.review_counts.count_reviews`, when their 3 s cache is cold),
- the shown frame's rows: its prediction (`detection.latest_prediction`, through the frame cache), its
  correction for the overlay and the evidence (`corrections.current_correction`, twice: the files
  themselves are not read), and both again for its canvas picture's key (`canvas_frames.FrameRows`).
review_p95_ms is the 95th percentile over the repeats of one page run's sum; film_frames_p95_ms is
the part that reads frames (`frame_window`; the name is kept from when the page loaded the whole
list), frame_rows_p95_ms the shown frame's rows. Apart, the buttons: "Next suggested"
(`active.next_frames_to_review`, 2 frames), "Next with detections" (`frame_queries.next_detected_index`),
the Films table (`films.list_films`), and export's reads for a 1 000-frame range (the film's frame names
for the matte padding, `export.export_rows`: what a farm task of `film export --frames` reads).
Last line (--json): {"frames", "backend", "review_p95_ms", "film_frames_p95_ms", "counts_p95_ms",
"frame_rows_p95_ms", "next_suggested_p95_ms", "next_detected_p95_ms", "films_table_p95_ms",
"export_range_p95_ms", "build_s"}.
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


def page_run(store, film, index: int) -> tuple[float, float, float, float]:
    """The store reads of one Review page run showing frame `index`, in the page's order; returns the
    seconds spent on (film picker, frames shown, counters, the shown frame's rows)."""
    from studio import corrections, detection, films, frame_queries
    from webapp.canvas_frames import FrameRows, Window
    from webapp.review_counts import count_reviews

    t0 = time.perf_counter()
    films.ready_films(store)  # webapp.context.choose_film
    t1 = time.perf_counter()
    count = frame_queries.frame_count(store, film)
    frame_queries.frames_at(store, film, (0, count - 1))  # _navigation: the go-to box's number range
    window = frame_queries.frame_window(store, film, index)
    Window.around(store, film, window.frame, count)  # the canvas's neighbours and their rows
    t2 = time.perf_counter()
    count_reviews(store, film)  # _counters, cold
    t3 = time.perf_counter()
    detection.latest_prediction(store, window.frame.id)  # build_view: FrameCache.probs
    for _ in range(2):  # build_view: the correction, its evidence
        corrections.current_correction(store, window.frame.id)
    FrameRows.read(store, window.frame)  # canvas_frames.shown_entry: the picture's key
    t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3


def measure(store, film, repeats: int) -> dict:
    from studio import active, export, films, frame_queries

    t_picker, t_frames, t_counts, t_rows, t_page, t_next, t_detected, t_table, t_export = ([] for _ in range(9))
    rng = np.random.default_rng(1)
    for _ in range(repeats):
        index = int(rng.integers(film.frame_count))
        parts = page_run(store, film, index)
        t_picker.append(parts[0]), t_frames.append(parts[1]), t_counts.append(parts[2]), t_rows.append(parts[3])
        t_page.append(sum(parts))
        t0 = time.perf_counter()
        active.next_frames_to_review(store, film, 2)
        t1 = time.perf_counter()
        frame_queries.next_detected_index(store, film, index)
        t2 = time.perf_counter()
        films.list_films(store)
        t3 = time.perf_counter()
        first = 86400 + int(rng.integers(max(1, film.frame_count - 1000)))
        export.source_padding(frame_queries.frame_names(store, film))  # export_film's reads before any pixel
        export.export_rows(store, film, (first, first + 999))
        t4 = time.perf_counter()
        t_next.append(t1 - t0), t_detected.append(t2 - t1), t_table.append(t3 - t2), t_export.append(t4 - t3)
    return {"review_p95_ms": p95(t_page), "film_frames_p95_ms": p95(t_frames), "counts_p95_ms": p95(t_counts),
            "frame_rows_p95_ms": p95(t_rows), "next_suggested_p95_ms": p95(t_next),
            "next_detected_p95_ms": p95(t_detected), "films_table_p95_ms": p95(t_table),
            "export_range_p95_ms": p95(t_export)}


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
