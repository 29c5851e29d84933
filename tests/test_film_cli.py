"""`correlnet db|film ...` end to end on a small film with a tiny model, and the detection use case:
stored predictions equal a plain forward pass on each stored triplet, and runs resume."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from sqlalchemy import select

from correlnet.checkpoint import save_checkpoint
from correlnet.job_context import CallbackJob
from correlnet.models import build_model
from db.models import Frame, ModelVersion, Prediction
from db.store import Store
from studio.cli import main
from studio.detection import detect_film, load_prediction
from studio.versions import active_model_version
from studio.films import film_frames, get_film
from studio.settings import Settings

H, W = 40, 56


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, build_model("efficient-correlnet", encoder="test_efficientnet"))
    return path


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    monkeypatch.setenv("CORRELNET_DEFAULT_MODEL", str(tiny_checkpoint))
    monkeypatch.setenv("CORRELNET_DEVICE", "cpu")
    rng = np.random.default_rng(0)
    src = tmp_path / "reel"
    src.mkdir()
    images = []
    for t in range(6):
        img = (rng.normal(0.45, 0.05, (H, W)).clip(0, 1) * 255).astype(np.uint8)
        img[8:16, 2 + 4 * t:10 + 4 * t] = 230
        images.append(img)
    images.insert(3, images[2].copy())  # frame 3 repeats frame 2
    for i, img in enumerate(images):
        cv2.imwrite(str(src / f"reel_{i + 101}.png"), img)
    return src


def store_of(env) -> Store:
    return Store.open(Settings.from_env())


def reference_probs(model, store, frames, frame) -> np.ndarray:
    from studio.films import frame_gray

    triplet = np.stack([frame_gray(store, frames[j]) for j in (frame.prev_index, frame.index, frame.next_index)])
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(triplet)[None]))[0, 0].numpy()


def test_import_list_detect_export(env, capsys, tmp_path, tiny_checkpoint):
    assert main(["db", "upgrade"]) == 0
    assert "upgraded from schema revision none" in capsys.readouterr().out
    assert main(["film", "import", str(env), "--name", "reel"]) == 0
    out = capsys.readouterr().out
    assert "imported film 1 'reel': 7 frames, 56x40, 8-bit" in out and "1 duplicated" in out
    assert main(["film", "import", str(env)]) == 0
    assert "already imported as film 1 'reel'" in capsys.readouterr().out

    assert main(["film", "detect", "reel", "--limit", "3"]) == 0
    assert "3 frame(s) predicted, 0 already predicted" in capsys.readouterr().out
    assert main(["film", "detect", "1"]) == 0  # by id; resumes after the first three
    assert "4 frame(s) predicted, 3 already predicted" in capsys.readouterr().out
    assert main(["film", "list"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if " reel " in line][0]
    assert row.split()[:5] == ["1", "reel", "7", "7", "0"]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["film", "detect", "reel", "--model", str(bad)]) == 2
    assert "bad.pt" in capsys.readouterr().err

    store = store_of(env)
    film = get_film(store, "reel")
    frames = film_frames(store, film)
    assert (frames[3].prev_index, frames[3].next_index) == (1, 4)  # the duplicate is skipped
    from correlnet.checkpoint import load_model

    model = load_model(tiny_checkpoint)
    with store.session() as s:
        predictions = {p.frame_id: p for p in s.execute(select(Prediction)).scalars()}
        uncertainties = dict(s.execute(select(Frame.id, Frame.uncertainty)).all())
    for frame in frames:
        stored = load_prediction(store, predictions[frame.id])
        assert np.abs(stored - reference_probs(model, store, frames, frame)).max() <= 1 / 255 + 1e-4
        assert uncertainties[frame.id] == pytest.approx(predictions[frame.id].uncertainty)
        assert predictions[frame.id].defect_pixels == int((stored >= 0.5).sum())
        p = np.clip(stored.astype(np.float64), 1e-6, 1 - 1e-6)  # mean binary entropy in bits
        entropy = float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))
        assert predictions[frame.id].uncertainty == pytest.approx(entropy, rel=1e-5)

    assert main(["film", "export", "reel", "--out", str(tmp_path / "mattes"), "--format", "tiff"]) == 0
    assert "wrote 7 matte(s)" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "mattes").iterdir())
    assert names == sorted([f"reel.{n:04d}.tif" for n in range(101, 108)] + ["reel.coco.json"])  # padded to 4
    matte = cv2.imread(str(tmp_path / "mattes" / "reel.0104.tif"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(matte > 0, load_prediction(store, predictions[frames[3].id]) >= 0.5)
    assert set(np.unique(matte)) <= {0, 255}
    store.close()


def test_user_errors_exit_2_with_a_message(env, capsys, tmp_path):
    assert main(["film", "detect", "nope"]) == 2
    assert "no film named or numbered 'nope'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["film", "import", str(tmp_path / "empty")]) == 2
    assert "no frames" in capsys.readouterr().err
    assert main(["film", "import", str(env)]) == 0
    capsys.readouterr()
    assert main(["film", "detect", "reel", "--model", "99"]) == 2
    assert "no model version 99" in capsys.readouterr().err
    assert main(["film", "list"]) == 0


def test_detect_use_case_resumes_and_registers_the_default_once(env, tiny_checkpoint):
    from studio.films import import_film

    store = store_of(env)
    film = import_film(store, env)
    first = active_model_version(store, film, tiny_checkpoint)
    assert active_model_version(store, film, tiny_checkpoint).id == first.id
    assert first.film_id is None and first.arch == "efficient-correlnet" and first.encoder == "test_efficientnet"
    calls = []
    job = CallbackJob(lambda done, total, **_: calls.append((done, total)))
    result = detect_film(store, film, first, device="cpu", job=job, limit=2)
    assert (result.predicted, result.skipped) == (2, 0) and calls == [(0, 2), (1, 2), (2, 2)]
    result = detect_film(store, film, first, device="cpu")
    assert (result.predicted, result.skipped) == (5, 2)
    assert detect_film(store, film, first, device="cpu").predicted == 0
    with store.session() as s:
        assert s.query(ModelVersion).count() == 1 and s.query(Prediction).count() == 7
    store.close()


def test_real_footage_duplicates_detect_with_their_distinct_neighbours(env, real_film_dir, tiny_checkpoint):
    from correlnet.checkpoint import load_model
    from studio.films import import_film

    store = store_of(env)
    film = import_film(store, real_film_dir / "a_trip_down_market_street_before_the_fire", name="market")
    frames = film_frames(store, film)
    duplicates = [(frames[f.index - 1].number, f.number) for f in frames if f.is_duplicate]
    assert duplicates == [(2, 3), (12, 13), (19, 20), (29, 30), (48, 49), (55, 56)]
    # Frames 2 and 3 (indices 1, 2) are one picture: both are seen between frames 1 and 4.
    assert [(f.prev_index, f.next_index) for f in frames[1:3]] == [(0, 3), (0, 3)]
    version = active_model_version(store, film, tiny_checkpoint)
    assert detect_film(store, film, version, device="cpu", frame_indices=[2]).predicted == 1
    model = load_model(tiny_checkpoint)
    with store.session() as s:
        predictions = {p.frame_id: p for p in s.execute(select(Prediction)).scalars()}
    assert list(predictions) == [frames[2].id]
    for frame in frames[2:3]:
        stored = load_prediction(store, predictions[frame.id])
        assert stored.shape == (368, 480)
        assert np.abs(stored - reference_probs(model, store, frames, frame)).max() <= 1 / 255 + 1e-4
    store.close()


def test_a_full_disk_ends_import_and_detect_with_one_line(env, capsys, monkeypatch):
    import errno

    import db.files
    from db.models import Film

    def disk_full(path, write, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(db.files, "atomic_write", disk_full)
        assert main(["film", "import", str(env)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was imported" in err and "Traceback" not in err
    store = store_of(env)
    with store.session() as s:
        assert s.execute(select(Film)).first() is None
    assert list((store.data_dir / "films").iterdir()) == []
    assert main(["film", "import", str(env)]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(db.files, "atomic_write", disk_full)
        assert main(["film", "detect", "reel"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "run the command again" in err
    with store.session() as s:
        assert s.execute(select(Prediction)).first() is None
    store.close()


def test_film_detect_pins_the_film_to_its_model_and_refreshes_the_review_order_as_the_worker_does(env, capsys):
    """One use case (studio.detection.predict_film) for the CLI and the app's worker (issue 18 point 3)."""
    assert main(["film", "import", str(env), "--name", "reel"]) == 0
    store = store_of(env)
    assert get_film(store, "reel").active_model_version_id is None
    assert main(["film", "detect", "reel", "--limit", "2"]) == 0
    film = get_film(store, "reel")
    assert film.active_model_version_id is not None  # pinned: a later shipped default will not replace it
    with store.session() as s:
        version = s.get(ModelVersion, film.active_model_version_id)
        assert version.film_id is None  # the global default it started from
        rows = s.execute(select(Frame.uncertainty, Prediction.uncertainty).join(
            Prediction, Prediction.frame_id == Frame.id)).all()
    assert len(rows) == 2 and all(a == pytest.approx(b) for a, b in rows)
    store.close()
