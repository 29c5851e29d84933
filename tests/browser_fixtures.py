"""The real app in Debian Chromium, for tests/test_browser.py and `bench/webapp_latency.py --browser`:
start the Streamlit server (and a worker) on a store, launch Chromium, and small waits.

Chromium is Debian's (/usr/bin/chromium, `apt-get install -y chromium`); never `playwright install`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    """predicate()'s first truthy value within timeout seconds; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


@contextlib.contextmanager
def serve_app(store_env: dict[str, str], logs: Path, worker: bool = True) -> Iterator[str]:
    """Run `streamlit run webapp/app.py` (and `WORKER` when worker) on the store `store_env` names
    (CORRELNET_* variables); yields the app's base URL. Logs go to logs/app.log and logs/worker.log."""
    env = {**os.environ, **store_env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    port = free_port()
    procs = []
    if worker:
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(logs / "worker.log", "w")))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "webapp/app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(logs / "app.log", "w")))
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def launch_chromium(pw):
    """Debian's Chromium, headless, with nothing that calls out (Playwright's sync API `pw`)."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def app_idle(page) -> bool:
    """The app has no script run in progress (what the key listener of webapp/keyboard.py waits for)."""
    return page.evaluate("""() => { const a = document.querySelector('[data-testid="stApp"]');
        const s = a && a.getAttribute('data-test-script-state');
        return !!a && s !== 'running' && s !== 'rerunRequested'; }""")


def drag(page, box, start, end, steps=12) -> None:
    """Press at start, move to end in `steps` moves and release (canvas px, from the box's corner)."""
    page.mouse.move(box["x"] + start[0], box["y"] + start[1])
    page.mouse.down()
    for i in range(1, steps + 1):
        t = i / steps
        page.mouse.move(box["x"] + start[0] + t * (end[0] - start[0]), box["y"] + start[1] + t * (end[1] - start[1]))
    page.mouse.up()


def settled_box(locator, timeout: float = 30.0) -> dict:
    """The locator's bounding box once it has not moved for 0.5 s (the page lays out after first paint)."""
    deadline = time.monotonic() + timeout
    box = locator.bounding_box()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = locator.bounding_box()
        if again == box:
            return box
        box = again
    return box
