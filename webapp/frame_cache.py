"""A process-wide, thread-safe LRU of decoded frames and predictions, with prefetching.

Decoding a 2K PNG costs tens of milliseconds, so the Review page keeps recent frames and
prediction maps decoded, keyed by file path + checksum (a stored file never changes under the same
checksum), and decodes the next frame in a background thread while the restorer looks at the
current one. Used instead of st.cache_data so the page, its prefetch thread and the latency benchmark
share one cache; the page holds a single instance through st.cache_resource.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from studio import detection, films


class FrameCache:
    """max_entries decoded arrays (frames and probs together); ~2-6 MB each at 2K."""

    def __init__(self, max_entries: int = 24) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-prefetch")

    def _get(self, key: tuple, load: Callable[[], np.ndarray | None]) -> np.ndarray | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()  # outside the lock: two threads may decode the same file once each, harmlessly
        if value is not None:
            value.setflags(write=False)  # shared between sessions: nobody may modify it in place
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value

    def image(self, store, frame) -> np.ndarray:
        """The stored frame as imported (studio.films.frame_image), read-only."""
        # An in-place frame has no store path: its source file names it (a relinked film gets new keys).
        where = frame.path or getattr(frame, "source_path", None)
        return self._get(("frame", where, frame.sha256), lambda: films.frame_image(store, frame))

    def probs(self, store, frame) -> np.ndarray | None:
        """probs (H, W) float32 of the frame's current prediction, or None; read-only."""
        prediction = detection.latest_prediction(store, frame.id)  # a cheap row read decides the key
        if prediction is None:
            return None
        return self._get(("probs", prediction.path, prediction.sha256),
                         lambda: detection.load_prediction(store, prediction))

    def prefetch(self, store, frames: list) -> None:
        """Decode these frames and their predictions in the background (errors are left for the
        foreground read to report)."""
        def work() -> None:
            for frame in frames:
                try:
                    self.image(store, frame)
                    self.probs(store, frame)
                except Exception:  # noqa: BLE001 - a prefetch must never break the page
                    pass
        self._pool.submit(work)

    def wait(self) -> None:
        """Block until queued prefetches are done (tests and the benchmark)."""
        self._pool.submit(lambda: None).result()
