"""Pages that follow the worker without a reload (issue 14, item 3): what a poll of the page (a rerun
of its fragments, as the browser does every few seconds) shows once a job has finished. A poll is
emulated with `tests.webapp_fixtures.poll`; nothing here clicks or reloads between the job's end
and the check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from db.models import ModelVersion
from studio import jobs, versions
from tests.webapp_fixtures import make_plain_store, poll

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402


@pytest.fixture
def store_env(tmp_path, monkeypatch):
    store, film, frames = make_plain_store(tmp_path)
    for key, value in {"CORRELNET_DATA_DIR": str(tmp_path / "data"), "CORRELNET_IMPORT_ROOT": str(tmp_path / "imports"),
                       "CORRELNET_DEVICE": "cpu", "CORRELNET_RETRAIN_AFTER": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    return store, film


def _page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page != "films":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _finish(store, job_id: int, status: str = "succeeded", message: str = "", version_id: int | None = None):
    claimed = jobs.claim_next_job(store, "test-worker")
    assert claimed is not None and claimed.id == job_id
    jobs.finish_job(store, job_id, "test-worker", status, message, result_model_version_id=version_id)


def _texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("caption", "markdown", "success", "info") for e in getattr(at, kind))


def test_films_page_shows_a_finished_detection_without_a_reload(store_env):
    store, film = store_env
    at = _page("films")
    [detect] = [b for b in at.button if b.key == f"detect-{film.id}"]
    detect.click().run()
    [job] = [j for j in jobs.list_jobs(store, film.id) if j.kind == "predict"]
    assert f"detection job {job.id}: queued" in _texts(at)
    _finish(store, job.id, message="5 frames predicted")
    poll(at)
    assert not at.exception, at.exception
    assert f"detection job {job.id}: succeeded" in _texts(at), _texts(at)


def _publish(store, film, job_id: int, f1: float) -> int:
    with store.write() as s:
        version = ModelVersion(path=f"/v{job_id}.pt", sha256="0" * 64, arch="efficient-correlnet", encoder=None,
                               film_id=film.id, metrics={"val_f1": f1, "val_f1_parent": f1 - 0.1, "final_loss": 0.2},
                               note=f"fine-tuned by job {job_id}")
        s.add(version)
        s.flush()
        version_id = version.id
    versions.activate_model_version(store, film.id, version_id)
    return version_id


def test_training_page_drops_a_finished_jobs_notice_and_lists_its_version_without_a_reload(store_env):
    store, film = store_env
    at = _page("training")
    [retrain] = [b for b in at.button if b.label == "Retrain on my corrections"]
    retrain.click().run()
    [job] = [j for j in jobs.list_jobs(store, film.id) if j.kind == "finetune"]
    assert any(f"Fine-tuning job {job.id} is queued" in s.value for s in at.success)
    poll(at)  # polls while the job waits change nothing
    version_id = _publish(store, film, job.id, 0.8)
    _finish(store, job.id, message=f"published model version {version_id}", version_id=version_id)
    poll(at)
    assert not at.exception, at.exception
    assert not any("is queued" in s.value for s in at.success), [s.value for s in at.success]
    assert any(f"job {job.id}" in s.value and "succeeded" in s.value and f"version {version_id}" in s.value
               for s in at.success), [s.value for s in at.success]
    [table] = [d for d in at.dataframe if "version" in d.value.columns and "note" in d.value.columns]
    assert version_id in table.value["version"].tolist()


def test_training_page_keeps_the_notice_of_a_queued_job_across_reruns(store_env):
    store, film = store_env
    at = _page("training")
    [retrain] = [b for b in at.button if b.label == "Retrain on my corrections"]
    retrain.click().run()
    at.checkbox(key="force_publish").check().run()  # any other click while the job waits
    assert any("Fine-tuning job" in s.value and "is queued" in s.value for s in at.success)


def _chart_spec_and_rows(at) -> tuple[dict, list[dict]]:
    import pyarrow as pa

    [chart] = at.get("vega_lite_chart") + at.get("arrow_vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    tables = [chart.proto.data] + [d.data for d in getattr(chart.proto, "datasets", [])]
    rows = [r for t in tables if t.data for r in pa.ipc.open_stream(t.data).read_all().to_pylist()]
    return spec, rows


def _draws_points(spec: dict) -> bool:
    marks = [spec.get("mark")] + [layer.get("mark") for layer in spec.get("layer", [])]
    for mark in marks:
        mark = mark if isinstance(mark, dict) else {"type": mark}
        if mark.get("type") in ("point", "circle") or mark.get("point"):
            return True
    return False


def test_training_chart_shows_a_version_with_one_value_per_metric(store_env):
    """One fine-tuned version gives one value per metric: a line chart of single points drew nothing."""
    store, film = store_env
    version_id = _publish(store, film, 1, 0.8)
    at = _page("training")
    spec, rows = _chart_spec_and_rows(at)
    assert _draws_points(spec), spec
    values = {r["metric"]: r["value"] for r in rows if r.get("version") == str(version_id)}
    assert set(values) == {"val_f1", "val_f1_parent", "final_loss"}, rows
    assert np.isclose(values["val_f1"], 0.8)
