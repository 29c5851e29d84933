"""Server-side latency of the Review page on 1920x1080 frames with stored predictions.

Times the functions the page calls:
- "next frame": frame i+1 after frame i was shown, the frames its canvas holds ahead were built and
  its prefetch finished (pressing Next);
  "cold frame": the same with nothing decoded yet (jumping to an unseen frame, the worst case).
  Both are build_view (frame PNG + prediction PNG + filters + overlay) + the canvas background
  (resized JPEG) + the magnifier/flick of previous, current and next frames;
- "save correction": a brush stroke and an erase stroke composited at full resolution and stored
  as a Correction (webapp.autosave.autosave -> studio.corrections.save_correction).

With --browser, also the latency a restorer sees: the real app (`streamlit run webapp/app.py`) in
Debian Chromium (bench/browser_latency.py), over BROWSER_STEPS frames:
- "next": the key press (j) -> the new frame's status line and its image drawn on the canvas;
- "save": the mouse-up of a brush stroke -> the "Saved correction N" caption under the canvas.

    python bench/webapp_latency.py [--frames 6] [--json] [--browser]
Targets (issue 5, issue 14): next frame <= 300 ms, save <= 200 ms. The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from correlnet import DEFECT_THRESHOLD  # noqa: E402
from tests.webapp_fixtures import make_web_store  # noqa: E402
from webapp.autosave import CanvasSession, autosave  # noqa: E402
from webapp.canvas import ADD_COLOR, ERASE_COLOR, CanvasGeometry  # noqa: E402
from webapp.frame_cache import FrameCache  # noqa: E402
from webapp.frame_view import build_view, encode_jpeg, flick_crops, flick_gif  # noqa: E402
from webapp.overlay import MaskFilter, component_labels, magnify  # noqa: E402
from webapp.review_canvas import WINDOW  # noqa: E402

from bench.browser_latency import BROWSER_STEPS, measure_in_browser  # noqa: E402

H, W = 1080, 1920


def show_frame(store, frames, i: int, flt: MaskFilter, cache: FrameCache) -> float:
    """What the Review page does for frame i (webapp/app_pages/review.py), timed."""
    t0 = time.perf_counter()
    frame = frames[i]
    view = build_view(store, frame, flt, 0.55, load_image=cache.image, load_pred=cache.probs)
    encode_jpeg(view.picture, 960)  # the canvas background
    component_labels(view.shown_mask)  # the magnifier's list of defects
    centre = (W / 2, H / 2)
    magnify(view.picture, centre, 64, 6)
    images = [cache.image(store, frames[frame.prev_index]), view.image, cache.image(store, frames[frame.next_index])]
    flick_gif(flick_crops(images, centre, 64, 6))
    return time.perf_counter() - t0


def next_frame_prefetched(store, frames, flt: MaskFilter, n: int) -> list[float]:
    """Frame i+1 after frame i was shown, as when a restorer presses "Next" after looking at a frame: the
    page had decoded the frames its canvas holds ahead (webapp/canvas_frames.py builds their pictures)
    and prefetched the one after them."""
    warm = []
    for i in range(min(n, len(frames) - 1)):
        cache = FrameCache()
        show_frame(store, frames, i, flt, cache)
        cache.prefetch(store, frames[i + 1:i + WINDOW[1] + 2])
        cache.wait()
        warm.append(show_frame(store, frames, i + 1, flt, cache))
    return warm


def save_stroke(store, frame, k: int) -> float:
    geometry = CanvasGeometry.fit(W, H, 960)
    session = CanvasSession.start(store, frame.id, np.zeros((H, W), bool))
    y = 50 + 40 * k
    drawing = {"objects": [
        {"type": "Path", "stroke": ADD_COLOR, "strokeWidth": 8,
         "path": [["M", 100, y], ["L", 200, y + 4], ["L", 300, y], ["L", 500, y + 20]]},
        {"type": "Path", "stroke": ERASE_COLOR, "strokeWidth": 6, "path": [["M", 250, y - 30], ["L", 250, y + 30]]},
    ]}
    t0 = time.perf_counter()
    row = autosave(store, frame.id, drawing, geometry, session, "bench")
    elapsed = time.perf_counter() - t0
    assert row is not None
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one next-frame + save")
    parser.add_argument("--browser", action="store_true",
                        help=f"also time next frame and save in Chromium over {BROWSER_STEPS} frames")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="correlnet-latency-") as tmp:
        t0 = time.perf_counter()
        ws = make_web_store(Path(tmp), h=H, w=W, n=max(args.frames, BROWSER_STEPS + 1 if args.browser else 0))
        setup = time.perf_counter() - t0
        browser = measure_in_browser(ws, Path(tmp)) if args.browser else None
        flt = MaskFilter(threshold=DEFECT_THRESHOLD, polarity="dark", min_size=4, dilation=2)  # every filter on
        if args.profile:
            import cProfile
            import pstats
            cProfile.runctx("show_frame(ws.store, ws.frames, 0, flt, FrameCache()); save_stroke(ws.store, ws.frames[0], 9)",
                            globals(), locals(), str(Path(tmp) / "prof"))
            pstats.Stats(str(Path(tmp) / "prof")).sort_stats("cumtime").print_stats(30)
        cpu0 = time.process_time()
        show = [show_frame(ws.store, ws.frames, i, flt, FrameCache()) for i in range(args.frames)]
        cpu_show = (time.process_time() - cpu0) / args.frames
        warm = next_frame_prefetched(ws.store, ws.frames, flt, args.frames - 1)
        cpu0 = time.process_time()
        save = [save_stroke(ws.store, ws.frames[i], i) for i in range(args.frames)]
        cpu_save = (time.process_time() - cpu0) / args.frames
    summary = {
        "frame_size": f"{W}x{H}", "frames": args.frames,
        "next_frame_ms_median": round(1000 * statistics.median(warm), 1),
        "next_frame_ms_max": round(1000 * max(warm), 1),
        "cold_frame_ms_median": round(1000 * statistics.median(show), 1),
        "cold_frame_ms_max": round(1000 * max(show), 1),
        "save_correction_ms_median": round(1000 * statistics.median(save), 1),
        "save_correction_ms_max": round(1000 * max(save), 1),
        "cold_frame_cpu_ms_mean": round(1000 * cpu_show, 1),
        "save_correction_cpu_ms_mean": round(1000 * cpu_save, 1),
        "setup_s": round(setup, 1),
    }
    summary["next_frame_ok"] = summary["next_frame_ms_median"] <= 300
    summary["save_ok"] = summary["save_correction_ms_median"] <= 200
    if browser is not None:
        for name, values in (("next", browser["next"]), ("save", browser["save"])):
            summary[f"browser_{name}_median_ms"] = round(statistics.median(values), 1)
            summary[f"browser_{name}_max_ms"] = round(max(values), 1)
        summary["browser_label_median_ms"] = round(statistics.median(browser["label"]), 1)
        summary["browser_steps"] = BROWSER_STEPS
        summary["browser_lost"] = int(browser["lost"][0])  # presses or strokes the page never showed
    if not args.json:
        for name, values in (("cold frame", show), ("next (prefetched)", warm), ("save correction", save)):
            print(f"{name:18s} " + " ".join(f"{1000 * v:6.1f}" for v in values) + " ms")
        for name, values in (browser or {}).items():
            print(f"browser {name:10s} " + " ".join(f"{v:6.1f}" for v in values) + " ms")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
