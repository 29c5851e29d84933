"""One film's detection by 1 and by N worker processes (issue 16): speed-up, frames missed, frames done twice.

    .venv/bin/python bench/parallel_detect.py [--frames 40] [--size 640x360] [--workers 2] [--postgres URL] [--json]

Builds a film of --frames frames (two shots of a panning grainy scene with a dark blotch per frame, 8-bit
PNGs), then, twice, on a fresh store each (SQLite in a temporary folder, or a fresh PostgreSQL schema
with --postgres): imports it, starts 1 (then --workers) `correlnet worker`-equivalent processes
(`studio.worker.run_worker`, one thread each: OMP_NUM_THREADS=1 and torch.set_num_threads(1)), waits
until each has imported everything and run the shipped model (correlnet/weights/default.pt) once on
the film's frame size, queues the film's detection ("Start detection") and times it from queueing to
the last chunk ending the job (the job row's created_at and finished_at). The workers split it into
shot-aligned chunks (studio.chunks, default ChunkConfig) and share them.
frames_missing: frames without a prediction by the job's model version after a run; frames_done_twice:
frames whose probabilities were computed more than once in a run (each worker logs the frames it
stored; the store's unique (frame, version) key keeps one row either way); both summed over the runs.
Last line (--json): {"speedup_N_workers", "frames_missing", "frames_done_twice", "workers", "frames",
"seconds_1", "seconds_N", "backend", "size", "chunks", "chunks_by_worker", "model"}.
Run it on an otherwise idle machine with at least --workers free cores: the ratio measures the job
table and the chunking, not a machine shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_film(folder: Path, n: int, h: int, w: int, seed: int = 0) -> None:
    """n 8-bit PNG frames: two shots (a sine pattern, then blurred noise) panning 3 px a frame, with grain
    and one dark blotch a frame."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0: h + 3 * n, 0: w + 3 * n].astype(np.float32)
    scenes = [0.5 + 0.2 * np.sin(xx / 37.0) * np.cos(yy / 23.0),
              0.3 + 0.4 * cv2.GaussianBlur(rng.random(xx.shape).astype(np.float32), (0, 0), 6) * 3]
    folder.mkdir(parents=True)
    for i in range(n):
        scene = scenes[0 if i < n // 2 else 1]
        frame = scene[3 * i: 3 * i + h, 3 * i: 3 * i + w] + 0.02 * rng.standard_normal((h, w))
        cy, cx = int(rng.integers(10, h - 10)), int(rng.integers(10, w - 10))
        cv2.circle(frame, (cx, cy), 5, 0.05, -1)
        cv2.imwrite(str(folder / f"reel.{1001 + i:04d}.png"), np.clip(np.rint(frame * 255), 0, 255).astype(np.uint8))


def worker_main(data_dir: str, db_url: str, model: str, worker_id: str, h: int, w: int) -> None:
    """A worker process: warm up, say "ready", wait for "go PARENT_ID", run jobs until that job ends, then
    print the frame indices it stored as a JSON line."""
    import torch

    torch.set_num_threads(1)
    import studio.detection
    from correlnet.checkpoint import load_model
    from correlnet.prediction import default_neighbours, detect_frames
    from correlnet.tiling import TilingConfig
    from db.store import Store
    from studio.settings import Settings
    from studio.worker import WorkerConfig, run_worker, stop_when_finished

    cpu = torch.device("cpu")
    warm = np.random.default_rng(0).random((3, h, w)).astype(np.float32)
    list(detect_frames(load_model(model), lambda i: warm[i], default_neighbours(3), TilingConfig.for_device(cpu), cpu))
    settings = Settings(data_dir=Path(data_dir), db_url=db_url or None, device="cpu", default_model=Path(model))
    store = Store.open(settings, upgrade=False)
    saved: list[int] = []
    save = studio.detection._save_prediction

    def logged(store_, film, frame, *args, **kwargs):
        save(store_, film, frame, *args, **kwargs)
        saved.append(frame.index)

    studio.detection._save_prediction = logged
    print("ready", flush=True)
    parent_id = int(sys.stdin.readline().split()[1])
    run_worker(store, settings, device="cpu", worker_id=worker_id, stop=stop_when_finished(store, parent_id),
               config=WorkerConfig(poll_seconds=0.05, heartbeat_seconds=5.0, stale_after_seconds=60.0))
    print(json.dumps({"saved": saved}), flush=True)
    store.close()


def run_once(src: Path, tmp: Path, workers: int, postgres: str | None, model: str, h: int, w: int) -> dict:
    """One detection of the film on a fresh store by `workers` processes."""
    from sqlalchemy import func, select

    from db.models import Frame, Prediction
    from db.testing import temporary_store
    from studio import chunks, jobs
    from studio.films import import_film

    data_dir = tmp / f"store-{workers}"
    with temporary_store(data_dir, postgres) as store:
        url = store.engine.url.render_as_string(hide_password=False) if postgres else ""  # "": the data folder's
        film = import_film(store, src, name="reel")
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(data_dir), url, model, f"w{k}",
                                   str(h), str(w)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for k in range(workers)]
        for p in procs:
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a worker process did not start (said {line!r}); run it alone to see its error")
        parent = jobs.queue_prediction(store, film.id)
        for p in procs:
            p.stdin.write(f"go {parent.id}\n")
            p.stdin.flush()
        saved = []
        for p in procs:
            out, _ = p.communicate(timeout=3600)
            if p.returncode != 0:
                raise RuntimeError(f"a worker process failed (exit {p.returncode})")
            saved += json.loads(out.strip().splitlines()[-1])["saved"]
        row = jobs.get_job(store, parent.id)
        if row.status != "succeeded":
            raise RuntimeError(f"detection job {row.id} {row.status}: {row.message}")
        rows = chunks.list_chunks(store, parent.id)
        with store.session() as s:
            per_frame = dict(s.execute(select(Frame.index, func.count(Prediction.id)).outerjoin(
                Prediction, (Prediction.frame_id == Frame.id) & (Prediction.model_version_id == row.model_version_id))
                .where(Frame.film_id == film.id).group_by(Frame.index)).all())
    by_worker: dict[str, int] = {}
    for c in rows:
        by_worker[c.worker_id] = by_worker.get(c.worker_id, 0) + 1
    return {"seconds": (row.finished_at - row.created_at).total_seconds(), "chunks": len(rows),
            "chunks_by_worker": by_worker, "missing": sum(1 for n in per_frame.values() if n == 0),
            "twice": len(saved) - len(set(saved)) + sum(n - 1 for n in per_frame.values() if n > 1),
            "frames": film.frame_count}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        data_dir, db_url, model, worker_id, h, w = sys.argv[2:8]
        worker_main(data_dir, db_url, model, worker_id, int(h), int(w))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the film (default 640x360)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the second run (default 2)")
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped correlnet/weights/default.pt)")
    ap.add_argument("--postgres", default=None, metavar="URL", help="run on PostgreSQL (fresh schemas) instead of SQLite")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from correlnet.default_model import default_model_path

    w, h = (int(v) for v in args.size.lower().split("x"))
    model = str(Path(args.model).resolve()) if args.model else str(default_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "film"
        write_film(src, args.frames, h, w)
        one = run_once(src, Path(tmp), 1, args.postgres, model, h, w)
        many = run_once(src, Path(tmp), args.workers, args.postgres, model, h, w)
    n = args.workers
    result = {f"speedup_{n}_workers": round(one["seconds"] / many["seconds"], 3),
              "frames_missing": one["missing"] + many["missing"], "frames_done_twice": one["twice"] + many["twice"],
              "workers": n, "frames": many["frames"], "seconds_1": round(one["seconds"], 2),
              f"seconds_{n}": round(many["seconds"], 2), "backend": "postgresql" if args.postgres else "sqlite",
              "size": f"{w}x{h}", "chunks": many["chunks"], "chunks_by_worker": many["chunks_by_worker"],
              "model": Path(model).name}
    print(f"{many['frames']} frames at {w}x{h}, {many['chunks']} chunks: 1 worker {one['seconds']:.1f} s, "
          f"{n} workers {many['seconds']:.1f} s (x{result[f'speedup_{n}_workers']:.2f}); chunks by worker "
          f"{many['chunks_by_worker']}; missing {result['frames_missing']}, done twice {result['frames_done_twice']}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
