"""Films page: import a film (upload, or a path under the allowed root), see every film's frames,
detection progress, model and corrections, and start detection (a queued job the worker runs).

Executed by st.navigation (webapp/app.py) as a script; also runnable alone by AppTest.
"""

from __future__ import annotations

import shutil

import streamlit as st

from correlnet.job_context import CallbackJob
from studio import jobs
from studio.films import FilmImportError, import_film, list_films
from webapp.context import AppContext, app_context
from webapp.uploads import ACCEPTED, UploadError, UploadLimits, resolve_under_root, stage_upload


def _import(ctx: AppContext, run) -> None:  # run: (job context) -> Film, may raise
    bar = st.progress(0.0, text="importing...")

    def show(done: int, total: int, **_) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"frame {done}/{total}")

    try:
        film = run(CallbackJob(show))
    except (FilmImportError, UploadError, ValueError, OSError) as exc:
        bar.empty()
        kept = getattr(exc, "kept_frames", 0)
        outcome = (f"the first {kept} frames are kept: fix this and import the same folder again to resume"
                   if kept else "nothing was imported")
        st.error(f"Import failed, {outcome}: {exc}")
        return
    bar.empty()
    if getattr(film, "already_imported", False):
        st.info(f"This film is already in the store as **{film.name}** (id {film.id}); nothing was copied.")
    else:
        st.success(f"Imported **{film.name}**: {film.frame_count} frames, {film.width}x{film.height}.")


def _upload_section(ctx: AppContext) -> None:
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader("Upload a video, a zip of frames, or frame files", type=list(ACCEPTED),
                                 accept_multiple_files=True)
        name = st.text_input("Film name (optional)", key="upload_name")
        submitted = st.form_submit_button("Import upload")
    if not submitted:
        return
    staging_root = ctx.store.data_dir / "uploads"

    def run(job):
        path, staging = stage_upload([(f.name, f.getvalue()) for f in files or []], staging_root, UploadLimits())
        try:
            return import_film(ctx.store, path, name=name.strip() or None, job=job)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    _import(ctx, run)


def _path_section(ctx: AppContext) -> None:
    root = ctx.settings.import_root
    st.caption(f"Allowed import folder: `{root}` (set CORRELNET_IMPORT_ROOT to change it)")
    with st.form("by_path"):
        path_text = st.text_input("Path of a video or a folder of frames", key="import_path")
        name = st.text_input("Film name (optional)", key="path_name")
        submitted = st.form_submit_button("Import from path")
    if submitted:
        # root= makes the use case check every frame too: a symlinked frame inside the folder may
        # point anywhere the app can read.
        _import(ctx, lambda job: import_film(ctx.store, resolve_under_root(path_text, root),
                                             name=name.strip() or None, job=job, root=root))


# The table and the detection status are polled from the store: the worker runs detection in the
# background, and a page that only redrew on a click showed "detection job 1: queued" long after the
# job succeeded. The rest of the page (the import forms) is left alone between polls.
POLL_S = 2


@st.fragment(run_every=POLL_S)
def _film_table(ctx: AppContext) -> None:
    summaries = list_films(ctx.store)
    if not summaries:
        st.info("No film yet: import one above.")
        return
    rows = []
    for s in summaries:
        film = s.film
        active = film.active_model_version_id
        rows.append({"id": film.id, "name": film.name, "frames": s.frames,
                     "size": f"{film.width}x{film.height} {film.bit_depth}-bit",
                     "detection": s.predicted / max(s.frames, 1), "corrected frames": s.corrected,
                     "model": f"version {active}" if active else "shipped default"})
    st.dataframe(rows, hide_index=True, column_config={
        "detection": st.column_config.ProgressColumn("detection", min_value=0.0, max_value=1.0, format="percent")})
    for s in summaries:
        _detect_row(ctx, s)


def _detect_row(ctx: AppContext, summary) -> None:
    film = summary.film
    active_jobs = [j for j in jobs.list_jobs(ctx.store, film.id, limit=10) if j.kind == "predict"]
    latest = active_jobs[0] if active_jobs else None
    cols = st.columns([3, 2, 5])
    cols[0].markdown(f"**{film.name}**: {summary.predicted}/{summary.frames} frames predicted")
    if cols[1].button("Start detection", key=f"detect-{film.id}",
                      disabled=summary.predicted >= summary.frames and summary.frames > 0):
        job = jobs.queue_prediction(ctx.store, film.id)
        st.toast(f"Detection queued (job {job.id}); the worker predicts the frames in the background.")
        latest = job
    if latest is not None:
        done = f", step {latest.step}/{latest.total_steps}" if latest.total_steps else ""
        cols[2].caption(f"detection job {latest.id}: {latest.status}{done} {latest.message or ''}")


def render(ctx: AppContext) -> None:
    st.title("Films")
    left, right = st.columns(2)
    with left:
        st.subheader("Upload")
        _upload_section(ctx)
    with right:
        st.subheader("Import by path")
        _path_section(ctx)
    st.subheader("Films in the store")
    _film_table(ctx)
    st.caption(f"Store: `{ctx.store.data_dir}`. Detection runs in `correlnet worker`; "
               f"frames already predicted by the active model are skipped.")


render(app_context())
