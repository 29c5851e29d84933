"""`correlnet db check [--repair]` after a real SIGKILL at each step of import, detection and publishing
(issue 15): every leftover is reported, --repair removes exactly what no row references, and the store
still reads. A row whose file is missing is reported and never "repaired" away. Frames imported in place
(issue 16): a missing or changed source is reported, the user's files are never touched, and an
interrupted import is reported, kept and resumable."""

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
from studio.detection import _save_prediction, latest_prediction, load_prediction
from studio.versions import register_model_version
from studio.films import ImportConfig, film_frames, frame_image, get_film, import_film
from studio.settings import Settings
from studio.store_check import check_store, repair_store
from tests.model_fixtures import tiny_model
from tests.test_import import COPY, moving_frames, progress, write_folder

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

if step in ("import-writing-frames", "import-copy-mid-batch"):
    import studio.resumable_import as resumable
    real, calls = resumable.write_png, []
    def write_then_die(*args, **kwargs):  # the third frame's PNG written, its row not committed
        sha = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            die()
        return sha
    resumable.write_png = write_then_die
    from studio.films import ImportConfig, import_film
    batch = 2 if step == "import-copy-mid-batch" else 500
    import_film(store, src, name="killed", cfg=ImportConfig(in_place=False, batch_frames=batch))
elif step == "import-before-commit":
    store.write = die  # after the staging folder was renamed into place
    from studio.films import ImportConfig, import_film
    import_film(store, src, name="killed", cfg=ImportConfig(in_place=False))
elif step == "import-in-place-after-batch":
    import studio.resumable_import as resumable
    real = resumable.commit_batch
    def commit_then_die(run):
        real(run)
        die()
    resumable.commit_batch = commit_then_die
    from studio.films import ImportConfig, import_film
    import_film(store, src, name="killed", cfg=ImportConfig(batch_frames=2))
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
    from studio.versions import publish_version
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
    film = import_film(store, tmp_path / "reel", cfg=COPY)  # frames stored as files of the store
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
    expected = {"import-writing-frames": lambda p: p.parent.name == "films" and (p / "frames").is_dir(),
                "import-before-commit": lambda p: p.parent.name == "films" and (p / "frames").is_dir(),
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

    film = import_film(store, tmp_path / "other", job=progress(check_meanwhile), cfg=COPY)
    assert seen["junk"] == [] and seen["busy"] == [store.path(film.storage_dir)]
    assert all(frame_image(store, f) is not None for f in film_frames(store, film))


def test_a_live_in_place_import_is_busy_not_interrupted(film_store):
    store, _, _, tmp_path = film_store
    seen = {}

    def check_meanwhile(done: int, total: int) -> None:
        if done == 3:  # two batches committed, the film row says "importing"
            report = check_store(store, min_age_s=0)
            seen["busy"], seen["junk"], seen["interrupted"] = report.busy, report.junk, report.interrupted
            repair_store(store, report)

    film = import_film(store, tmp_path / "other", job=progress(check_meanwhile), cfg=ImportConfig(batch_frames=1))
    assert seen["junk"] == [] and seen["interrupted"] == [] and seen["busy"] == [store.path(film.storage_dir)]
    assert film.status == "ready" and all(frame_image(store, f) is not None for f in film_frames(store, film))
    assert check_store(store, checksums=True, min_age_s=0).clean


def test_a_killed_in_place_import_is_reported_kept_and_resumes(film_store, monkeypatch, capsys):
    store, film, version, tmp_path = film_store
    kill_at("import-in-place-after-batch", store, tmp_path, version.id)
    killed = get_film(store, "killed", importing=True)
    assert killed.status == "importing" and len(film_frames(store, killed)) == 2
    report = check_store(store, min_age_s=0)
    assert report.junk == [] and report.missing == [] and len(report.interrupted) == 1, report
    assert "'killed'" in report.interrupted[0] and "after 2 of 4 frames" in report.interrupted[0]
    assert repair_store(store, report) == [] and store.path(killed.storage_dir).is_dir()
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(store.data_dir))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    assert main(["db", "check", "--repair", "--min-age", "0"]) == 1  # left to do: resume the import
    assert "run `correlnet film import" in capsys.readouterr().out
    resumed = import_film(store, tmp_path / "other", name="killed")
    assert resumed.id == killed.id and resumed.status == "ready" and len(film_frames(store, resumed)) == 4
    assert check_store(store, checksums=True, min_age_s=0).clean
    assert_store_reads(store, film)


def test_a_copy_killed_mid_batch_is_interrupted_not_corrupt_and_resumes(film_store, monkeypatch, capsys):
    """The third frame's PNG is on disk without its row: no junk, no missing file, one interrupted import;
    the same command resumes it, rewriting that PNG, and the store ends clean."""
    store, film, version, tmp_path = film_store
    kill_at("import-copy-mid-batch", store, tmp_path, version.id)
    killed = get_film(store, "killed", importing=True)
    folder = store.path(killed.storage_dir)
    assert len(film_frames(store, killed)) == 2 and (folder / "frames" / "000002.png").is_file()
    report = check_store(store, checksums=True, min_age_s=0)
    assert report.junk == [] and report.missing == [] and report.damaged == [], report
    assert len(report.interrupted) == 1 and "after 2 of 4 frames" in report.interrupted[0]
    assert f"correlnet film import {(tmp_path / 'other').resolve()} --copy" in report.interrupted[0]
    assert repair_store(store, report) == [] and (folder / "frames" / "000002.png").is_file()
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(store.data_dir))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    assert main(["film", "import", str(tmp_path / "other"), "--copy", "--name", "killed"]) == 0
    resumed = get_film(store, "killed")
    assert resumed.id == killed.id and len(film_frames(store, resumed)) == 4
    for frame, image in zip(film_frames(store, resumed), moving_frames(4, seed=3)):
        assert np.array_equal(frame_image(store, frame), image)
    assert check_store(store, checksums=True, min_age_s=0).clean
    assert_store_reads(store, film)


def test_missing_and_changed_source_frames_are_reported_and_never_touched(film_store, tmp_path, monkeypatch, capsys):
    store, _, _, _ = film_store
    paths = write_folder(tmp_path / "scans", moving_frames(4, seed=8))
    film = import_film(store, tmp_path / "scans", name="scans")
    moved = paths[1].with_name("elsewhere.png")
    paths[1].rename(moved)
    data = bytearray(paths[2].read_bytes())
    data[-20] ^= 1  # one byte: same size, other content
    paths[2].write_bytes(bytes(data))
    report = check_store(store, min_age_s=0)
    assert len(report.missing) == 1 and report.damaged == [] and report.junk == []  # size only without --checksums
    assert f"film 'scans', frame 2: source file {paths[1].resolve()} is missing" in report.missing[0]
    assert "correlnet film relink scans NEW_FOLDER" in report.missing[0]
    report = check_store(store, checksums=True, min_age_s=0)
    assert len(report.damaged) == 1 and "frame 3" in report.damaged[0] and "checksum mismatch" in report.damaged[0]
    before = {p: p.read_bytes() for p in (tmp_path / "scans").iterdir()}
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(store.data_dir))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    assert main(["db", "check", "--repair", "--checksums", "--min-age", "0"]) == 1
    out = capsys.readouterr().out
    assert "1 missing, 1 damaged" in out and str(paths[1].resolve()) in out
    assert {p: p.read_bytes() for p in (tmp_path / "scans").iterdir()} == before  # the user's files untouched
    assert len(film_frames(store, film)) == 4
