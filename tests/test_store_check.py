"""`correlnet db check [--repair]` after a real SIGKILL at each step of import, detection and publishing
(issue 15): every leftover is reported, --repair removes exactly what no row references, and the store
still reads. A row whose file is missing is reported and never "repaired" away."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from correlnet.checkpoint import save_checkpoint
from db.store import Store
from studio.cli import main
from studio.detection import _save_prediction, latest_prediction, load_prediction, register_model_version
from studio.films import film_frames, frame_image, import_film
from studio.settings import Settings
from studio.store_check import check_store, repair_store
from tests.model_fixtures import tiny_model
from tests.test_import import moving_frames, write_folder

ROOT = Path(__file__).resolve().parents[1]

# Each step kills the process (SIGKILL: no clean-up runs) at one point of a use case.
KILLER = r"""
import os, signal, sys
from pathlib import Path
from db.store import Store
from studio.settings import Settings

step, data, src = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
store = Store.open(Settings(data_dir=data), upgrade=False)

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if step == "import-writing-frames":
    import studio.staging as staging
    real, calls = staging.write_png, []
    def write_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            die()
        return real(*args, **kwargs)
    staging.write_png = write_then_die
    from studio.films import import_film
    import_film(store, src, name="killed")
elif step == "import-before-commit":
    store.write = die  # after the staging folder was renamed into place
    from studio.films import import_film
    import_film(store, src, name="killed")
elif step == "detect-before-row":
    store.write = die  # the prediction file is on disk, its row is not
    from studio.detection import _save_prediction
    from studio.films import film_frames, get_film
    import numpy as np
    film = get_film(store, "reel")
    _save_prediction(store, film, film_frames(store, film)[1], int(sys.argv[4]), np.zeros((40, 56)), False)
elif step == "detect-mid-write":
    os.fsync = die  # inside the atomic write: the temporary file exists, the final name does not
    from studio.detection import _save_prediction
    from studio.films import film_frames, get_film
    import numpy as np
    film = get_film(store, "reel")
    _save_prediction(store, film, film_frames(store, film)[1], int(sys.argv[4]), np.zeros((40, 56)), False)
elif step == "publish-before-row":
    store.write = die  # the fine-tuned checkpoint is written, its ModelVersion row is not
    from db.models import ModelVersion
    from studio.films import get_film
    from studio.finetune import publish_version
    from tests.model_fixtures import tiny_model
    with store.session() as s:
        parent = s.get(ModelVersion, int(sys.argv[4]))
    publish_version(store, get_film(store, "reel"), parent, tiny_model("efficient-correlnet"), {}, {}, job_id=1)
print("not killed")
"""

STEPS = ["import-writing-frames", "import-before-commit", "detect-before-row", "detect-mid-write", "publish-before-row"]


@pytest.fixture
def film_store(tmp_path):
    """A store with one film, one registered model and one stored prediction."""
    settings = Settings(data_dir=tmp_path / "data")
    store = Store.open(settings)
    write_folder(tmp_path / "reel", moving_frames(4))
    film = import_film(store, tmp_path / "reel")
    torch.manual_seed(0)
    version = register_model_version(store, save_checkpoint(tmp_path / "tiny.pt", tiny_model("efficient-correlnet")))
    frame = film_frames(store, film)[0]
    _save_prediction(store, film, frame, version.id, np.full((40, 56), 0.25, np.float32), set_uncertainty=False)
    write_folder(tmp_path / "other", moving_frames(4, seed=3))
    yield store, film, version, tmp_path
    store.close()


def kill_at(step: str, store: Store, tmp_path: Path, version_id: int) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLER, step, str(store.data_dir), str(tmp_path / "other"),
                           str(version_id)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


def assert_store_reads(store: Store, film) -> None:
    for frame in film_frames(store, film):
        frame_image(store, frame)
    frame = film_frames(store, film)[0]
    assert load_prediction(store, latest_prediction(store, frame.id)).max() == pytest.approx(64 / 255)


def test_a_store_in_use_is_clean(film_store):
    store, film, _, _ = film_store
    report = check_store(store, checksums=True, min_age_s=0)
    assert report.clean and report.busy == [], report


@pytest.mark.parametrize("step", STEPS)
def test_leftovers_of_a_kill_are_found_and_repaired(film_store, step, capsys):
    store, film, version, tmp_path = film_store
    kill_at(step, store, tmp_path, version.id)
    report = check_store(store, min_age_s=0)
    assert report.missing == [] and len(report.junk) == 1, report
    [junk] = report.junk
    expected = {"import-writing-frames": lambda p: p.name.startswith(".staging-"),
                "import-before-commit": lambda p: p.parent.name == "films" and not p.name.startswith("."),
                "detect-before-row": lambda p: p.parent.name == f"v{version.id}" and p.suffix == ".png",
                "detect-mid-write": lambda p: p.name.endswith(".tmp"),
                "publish-before-row": lambda p: "models" in p.parts and p.suffix == ".pt"}[step]
    assert expected(junk), junk
    assert check_store(store).junk == []  # young leftovers are kept by default: a live process may own them
    assert repair_store(store, report) == [junk] and not junk.exists()
    assert check_store(store, checksums=True, min_age_s=0).clean
    assert_store_reads(store, film)


def test_cli_reports_repairs_and_keeps_a_missing_files_row(film_store, monkeypatch, capsys):
    store, film, version, tmp_path = film_store
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(store.data_dir))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    orphan = store.data_dir / "uploads" / "upload-0123"  # a crashed app's upload
    orphan.mkdir(parents=True)
    (orphan / "clip.mp4").write_bytes(b"x")
    assert main(["db", "check", "--repair"]) == 0  # young: its import may still be reading it
    assert "upload-0123: no row references it yet, but it may be in use" in capsys.readouterr().out
    assert main(["db", "check", "--min-age", "0"]) == 1  # reported, not removed
    assert "upload-0123: no row references it (--repair removes it)" in capsys.readouterr().out and orphan.exists()
    assert main(["db", "check", "--repair", "--min-age", "0"]) == 0
    assert "upload-0123: removed" in capsys.readouterr().out and not orphan.exists()
    lost = store.path(film_frames(store, film)[2].path)
    lost.unlink()
    assert main(["db", "check", "--repair", "--min-age", "0"]) == 1
    out = capsys.readouterr().out
    assert f"{lost}: missing (the file of frame" in out and "1 missing" in out
    assert len(film_frames(store, film)) == 4  # the row stays: restoring the file is the fix


def test_a_live_import_is_never_repaired_away(film_store):
    store, _, _, tmp_path = film_store
    seen = {}

    def check_meanwhile(done: int, total: int) -> None:
        if done == 2:
            report = check_store(store, min_age_s=0)
            seen["busy"], seen["junk"] = report.busy, report.junk
            repair_store(store, report)

    film = import_film(store, tmp_path / "other", on_progress=check_meanwhile)
    assert seen["junk"] == [] and [p.name.startswith(".staging-") for p in seen["busy"]] == [True]
    assert all(frame_image(store, f) is not None for f in film_frames(store, film))
