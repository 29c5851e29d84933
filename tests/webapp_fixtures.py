"""A small store for the web app tests: a seeded film of FRAMES gray frames (H x W) with one dark
blotch each, predicted by a tiny untrained model registered as the film's active version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from db.store import Store
from studio.settings import Settings

H, W, FRAMES = 48, 64, 5


@dataclass
class WebStore:
    settings: Settings
    store: Store
    film: object
    frames: list
    model_path: Path
    env: dict[str, str]


def write_film(folder: Path, seed: int = 0, h: int = H, w: int = W, n: int = FRAMES) -> list[np.ndarray]:
    """n frames of a panning blurred texture, each with one dark 5x5 blotch; returns the true masks."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = cv2.GaussianBlur(rng.random((h + 2 * n, w + 2 * n)).astype(np.float32), (0, 0), 3)
    base = (base - base.min()) / (base.max() - base.min()) * 0.5 + 0.3
    masks = []
    for i in range(n):
        img = base[i: i + h, i: i + w].copy()
        mask = np.zeros((h, w), bool)
        y, x = int(rng.integers(5, h - 10)), int(rng.integers(5, w - 10))
        mask[y: y + 5, x: x + 5] = True
        img[mask] = 0.05
        masks.append(mask)
        cv2.imwrite(str(folder / f"frame_{i + 1:03d}.png"), np.round(img * 255).astype(np.uint8))
    return masks


def tiny_checkpoint(path: Path) -> Path:
    import torch

    from correlnet.checkpoint import save_checkpoint
    from tests.model_fixtures import tiny_model

    torch.manual_seed(0)
    return save_checkpoint(path, tiny_model("efficient-correlnet"))


def make_web_store(tmp_path: Path, predict: bool = True, **film_kw) -> WebStore:
    """Store under tmp_path/data with film "tiny" imported (and predicted unless predict=False)."""
    from studio import detection, films, versions

    model_path = tiny_checkpoint(tmp_path / "tiny.pt")
    env = {"CORRELNET_DATA_DIR": str(tmp_path / "data"), "CORRELNET_IMPORT_ROOT": str(tmp_path / "imports"),
           "CORRELNET_DEVICE": "cpu", "CORRELNET_DEFAULT_MODEL": str(model_path), "CORRELNET_RETRAIN_AFTER": "0"}
    settings = Settings.from_env(env)
    store = Store.open(settings)
    write_film(tmp_path / "imports" / "tiny", **film_kw)
    film = films.import_film(store, tmp_path / "imports" / "tiny", name="tiny")
    version = versions.register_model_version(store, model_path, note="tiny test model")
    versions.activate_model_version(store, film.id, version.id)
    if predict:
        detection.detect_film(store, film, version, device="cpu")
    film = films.get_film(store, film.id)
    return WebStore(settings, store, film, films.film_frames(store, film), model_path, env)


def make_plain_store(tmp_path: Path, **film_kw):
    """Store with film "tiny" imported, no model and no prediction (no torch needed)."""
    from studio import films

    settings = Settings(data_dir=tmp_path / "data", import_root=tmp_path / "imports", device="cpu", retrain_after=0)
    store = Store.open(settings)
    write_film(tmp_path / "imports" / "tiny", **film_kw)
    film = films.import_film(store, tmp_path / "imports" / "tiny", name="tiny")
    return store, film, films.film_frames(store, film)


def poll(at, timeout: float = 60):
    """Rerun only the page's fragments, as the browser does every `run_every` seconds, and return `at`
    holding what they drew (or the whole page, when a fragment asked for a full rerun).

    AppTest has no call for this (its runs are full reruns); it is emulated with the rerun request a
    polling browser sends: the ids of the fragments registered by the last run (streamlit 1.67's
    AppTest keeps them in `_fragment_storage`)."""
    from streamlit.testing.v1 import local_script_runner

    ids = list(at._fragment_storage._fragments)
    assert ids, "the page has no fragment: nothing polls it"
    real = local_script_runner.RerunData
    local_script_runner.RerunData = lambda **kw: real(**kw, fragment_id_queue=ids)
    try:
        return at.run(timeout=timeout)
    finally:
        local_script_runner.RerunData = real


# --- the Review page's canvas in AppTest (webapp/review_canvas.py) -----------------------------------------

def _component(at, key: str):
    [element] = [e for e in at.get("bidi_component") if e.key == key]
    return element


def canvas_data(at, merged: bool = True) -> dict:
    """What the page sent the review canvas on the last run; merged: with the neighbours the page sent
    after it (review_canvas.mount_more), as the browser holds them."""
    import json

    from webapp.review_canvas import KEY, MORE_KEY

    data = json.loads(_component(at, KEY).proto.json)
    if merged:
        more = json.loads(_component(at, MORE_KEY).proto.json)
        assert more["run"] == data["run"]
        data["frames"] = sorted(data["frames"] + more["frames"], key=lambda f: f["index"])
    return data


def shown_entry(at) -> dict:
    """The canvas's entry for the frame shown."""
    data = canvas_data(at)
    [entry] = [f for f in data["frames"] if f["index"] == data["index"]]
    return entry


def send_review(at, review: dict):
    """Run as the browser does when the canvas sends state "review": the widget states of the page
    (a button clicked or a widget set before counts too) and the canvas's new state, so the component's
    change callback runs before the script, as in the browser."""
    import json

    from streamlit.proto.WidgetStates_pb2 import WidgetStates

    from webapp.review_canvas import KEY

    canvas_id = _component(at, KEY).proto.id
    states = WidgetStates()
    states.widgets.extend(w for w in at._tree.get_widget_states().widgets if w.id != canvas_id)
    sent = states.widgets.add()
    sent.id = canvas_id
    sent.json_value = json.dumps({"review": review})
    at._run(states)
    assert not at.exception, at.exception
    return at


def send_canvas(at, **state):
    """send_review with the next seq, on the frame shown, with `state`'s fields (a callable gets the seq:
    a navigation or a drawing made in this send)."""
    data = canvas_data(at)
    seq = data["ack"] + 1
    review = {"seq": seq, "film": data["film"], "target": data["index"], "nav": 0, "drawings": [], "magnify": None}
    review.update({k: v(seq) if callable(v) else v for k, v in state.items()})
    return send_review(at, review)


def canvas_drawing(at, *objects, index: int | None = None):
    """For send_canvas(drawings=...): objects drawn on frame `index` (default: the one shown)."""
    data = canvas_data(at)
    index = data["index"] if index is None else index
    [entry] = [f for f in data["frames"] if f["index"] == index]
    return lambda seq: [{"token": entry["token"], "seq": seq, "objects": list(objects)}]
