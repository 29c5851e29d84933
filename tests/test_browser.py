"""The real app in Debian Chromium (Playwright, sync API): open Review, see the overlay, draw an add
and an erase stroke on the canvas, check the stored correction pixel by pixel at full resolution,
queue retraining and watch its progress. Takes a screenshot of every page into docs/screenshots/.

Skips where /usr/bin/chromium is absent (install it with `apt-get install -y chromium`; never
`playwright install`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
FILM_H, FILM_W = 270, 1440  # shown at 960 px: canvas -> image scale 1.5
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")]

WORKER = """
import sys
from db.store import Store
from studio.finetune import FinetuneConfig
from studio.settings import Settings
from studio.worker import WorkerConfig, run_worker
settings = Settings.from_env()
cfg = WorkerConfig(poll_seconds=0.3, progress_every_seconds=0.0, heartbeat_seconds=1.0,
                   finetune=FinetuneConfig.cpu(steps=400, batch_size=2, crop=64, warmup_steps=0))
run_worker(Store.open(settings), settings, config=cfg)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def _segment_distance(shape, a, b) -> np.ndarray:
    """Distance of every pixel centre to segment a-b (image coordinates x, y)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    p = np.stack([xx + 0.5, yy + 0.5], axis=-1)
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = np.clip(((p - a) @ (b - a)) / np.dot(b - a, b - a), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1)


@pytest.fixture
def running_app(tmp_path):
    from tests.webapp_fixtures import make_web_store

    ws = make_web_store(tmp_path, h=FILM_H, w=FILM_W, n=3)
    env = {**os.environ, **ws.env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    port = _free_port()
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "w")),
        subprocess.Popen([sys.executable, "-m", "streamlit", "run", "webapp/app.py", "--server.port", str(port),
                          "--server.address", "127.0.0.1", "--server.headless", "true",
                          "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "app.log", "w")),
    ]
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", 60)
        yield ws, f"http://127.0.0.1:{port}"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def _drag(page, box, start, end, steps=12) -> None:
    page.mouse.move(box["x"] + start[0], box["y"] + start[1])
    page.mouse.down()
    for i in range(1, steps + 1):
        t = i / steps
        page.mouse.move(box["x"] + start[0] + t * (end[0] - start[0]), box["y"] + start[1] + t * (end[1] - start[1]))
    page.mouse.up()


def test_review_draw_save_and_retrain_in_chromium(running_app):
    from playwright.sync_api import expect, sync_playwright

    from studio import corrections, detection, jobs
    from studio.films import frame_image
    from webapp.overlay import MaskFilter, filter_mask

    ws, url = running_app
    store, frame = ws.store, ws.frames[0]
    probs = detection.load_prediction(store, detection.latest_prediction(store, frame.id))
    base = filter_mask(probs, frame_image(store, frame), MaskFilter())  # what the canvas starts from
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(60_000)  # generous: CI machines and shared cores are slow
        page.goto(f"{url}/review")
        canvas = page.locator("canvas.upper-canvas").first  # Fabric's event canvas, in a shadow root
        expect(canvas).to_be_visible(timeout=120_000)  # the first run of a fresh server is the slowest
        expect(page.get_by_text("model's proposal (orange)")).to_be_visible()
        box = canvas.bounding_box()
        assert round(box["width"]) == 960 and round(box["height"]) == 180, box
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "review.png"))

        # Add stroke (brush 8 canvas px = 12 image px), then an erase stroke across it.
        add_a, add_b = (100, 60), (400, 60)
        _drag(page, box, add_a, add_b)
        first = _wait_for(lambda: corrections.current_correction(store, frame.id), 20, "the add stroke's autosave")
        page.get_by_text("Erase brush", exact=True).click()  # the canvas keeps its objects across tool changes
        page.wait_for_timeout(800)
        box = canvas.bounding_box()
        erase_a, erase_b = (250, 20), (250, 120)
        _drag(page, box, erase_a, erase_b)
        _wait_for(lambda: (c := corrections.current_correction(store, frame.id)) and c.id != first.id and c,
                  20, "the erase stroke's autosave")
        expect(page.get_by_text("corrected: green agreed")).to_be_visible()
        page.screenshot(path=str(SHOTS / "review-corrected.png"))

        # Keyboard: "j" clicks "Next ▶" (focus away from the tool radio first: keys in inputs are ignored).
        page.get_by_role("heading", name="Review").click()
        page.keyboard.press("j")
        expect(page.get_by_text("(index 1)")).to_be_visible()

        mask = corrections.current_mask(store, frame.id)
        scale = FILM_W / 960
        d_add = _segment_distance(mask.shape, np.multiply(add_a, scale), np.multiply(add_b, scale))
        d_erase = _segment_distance(mask.shape, np.multiply(erase_a, scale), np.multiply(erase_b, scale))
        r = 8 * scale / 2  # brush radius in image pixels
        tol = 1.5 * scale  # Fabric smooths the pointer path by about a pixel
        erased = d_erase <= r - tol
        added = (d_add <= r - tol) & (d_erase > r + tol)
        untouched = (d_add > r + tol) & (d_erase > r + tol)
        assert added.sum() > 1000 and erased.sum() > 500
        assert mask[added].all(), "pixels under the add stroke must be set"
        assert not mask[erased].any(), "pixels under the erase stroke must be cleared"
        np.testing.assert_array_equal(mask[untouched], base[untouched])  # nothing else changed

        # Retraining: enough corrected frames for a train/validation split, then one click.
        for f in ws.frames[1:]:  # the restorer accepts the other frames' proposals
            corrections.accept_prediction(store, f.id, "test")
        page.goto(f"{url}/training")
        page.get_by_role("button", name="Retrain on my corrections").click()
        expect(page.get_by_text("Fine-tuning job")).to_be_visible()
        job = [j for j in jobs.list_jobs(store, ws.film.id) if j.kind == "finetune"][0]
        # Progress written by the worker: a step above 0 with its loss.
        expect(page.get_by_text(re.compile(rf"finetune job {job.id}: running, step [1-9]"))).to_be_visible(
            timeout=120_000)
        page.screenshot(path=str(SHOTS / "training.png"))
        jobs.request_cancel(store, job.id)

        page.goto(f"{url}/films")
        expect(page.get_by_text("Films in the store")).to_be_visible()
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "films.png"))
        page.goto(f"{url}/export")
        page.get_by_role("button", name="Prepare export").click()
        expect(page.get_by_text("mattes ready")).to_be_visible()
        page.screenshot(path=str(SHOTS / "export.png"))
        browser.close()
