"""Training page: one click queues fine-tuning of the film's model on its corrections (the worker
runs it); live progress polled from the job row; model versions with their metrics; activate or
roll back a version; cancel a job.

Executed by st.navigation (webapp/app.py) as a script; also runnable alone by AppTest.
"""

from __future__ import annotations

import streamlit as st

from studio import jobs, versions
from webapp.context import AppContext, app_context, choose_film


KIND_LABELS = {"finetune": "Fine-tuning", "predict": "Detection"}
POLL_S = 2


def _queue(ctx: AppContext) -> None:
    # The film in the picker at click time, not the one this button was drawn for: a click that
    # follows a film change before the page has redrawn must train the film the restorer chose.
    job = jobs.queue_training(ctx.store, st.session_state["film_id"],
                              force=bool(st.session_state.get("force_publish")))
    st.session_state["training_notice"] = (job.id, f"Fine-tuning job {job.id} is {job.status}.")


def _notices(ctx: AppContext) -> None:
    """Outcomes of jobs that finished since the last poll (shown once), then the notice of the job this
    restorer queued, for as long as that job is queued or running."""
    for status, text in st.session_state.pop("training_outcomes", []):
        (st.success if status == "succeeded" else st.warning)(text)
    job_id, text = st.session_state.get("training_notice") or (None, None)
    if job_id is not None:
        try:
            active = jobs.get_job(ctx.store, job_id).status in jobs.ACTIVE
        except jobs.JobError:  # no such job any more (another store, or deleted)
            active = False
        if active:
            st.success(text)
        else:
            del st.session_state["training_notice"]


def _refresh_when_finished(film_id: int, recent) -> None:
    """A poll that sees a job finish reruns the whole page: the notice above and the versions table
    below lie outside the polled fragment, and kept a finished job's notice and the versions from
    before it until a reload."""
    key = f"training_active:{film_id}"
    seen = set(st.session_state.get(key, ()))
    active = {j.id for j in recent if j.status in jobs.ACTIVE}
    st.session_state[key] = active
    finished = [j for j in recent if j.id in seen - active]
    if finished:
        st.session_state["training_outcomes"] = [
            (j.status, f"{KIND_LABELS.get(j.kind, j.kind)} job {j.id} {j.status}"
                       + (f": {j.message}" if j.message else "")) for j in finished]
        st.rerun()


def _eta(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@st.fragment(run_every=POLL_S)
def _progress(ctx: AppContext, film_id: int) -> None:
    recent = jobs.list_jobs(ctx.store, film_id, limit=20)
    _refresh_when_finished(film_id, recent)
    current = next((j for j in recent if j.status in jobs.ACTIVE), None)
    if current is None:
        st.caption("No job queued or running.")
    else:
        total = current.total_steps or 0
        text = f"{current.kind} job {current.id}: {current.status}"
        st.progress(min(current.step / total, 1.0) if total else 0.0,
                    text=f"{text}, step {current.step}/{total or '?'}")
        a, b, c = st.columns(3)
        a.metric("Loss", "-" if current.loss is None else f"{current.loss:.4f}")
        b.metric("Validation F1", "-" if current.val_f1 is None else f"{current.val_f1:.3f}")
        c.metric("ETA", _eta(current.eta_seconds))
        if current.cancel_requested:
            st.caption("Cancelling at the worker's next step...")
        elif st.button("Cancel job", key=f"cancel-{current.id}"):
            jobs.request_cancel(ctx.store, current.id)
            st.rerun(scope="fragment")
    last = next((j for j in recent if j.kind == "finetune" and j.status not in jobs.ACTIVE), None)
    if last is not None and last.message:  # the gate's verdict: frame count, scores and their uncertainty
        st.caption(f"Last fine-tuning (job {last.id}, {last.status}): {last.message}")
    if recent:
        st.dataframe([{"job": j.id, "kind": j.kind, "status": j.status, "step": j.step, "loss": j.loss,
                       "val F1": j.val_f1, "message": j.message or "", "created": j.created_at}
                      for j in recent], hide_index=True)


def _versions(ctx: AppContext, film) -> None:
    rows = versions.list_model_versions(ctx.store, film.id)
    if not rows:
        st.caption("No model version yet: the shipped model is registered when detection first runs.")
        return
    active_id = film.active_model_version_id
    table = [{"version": v.id, "active": v.id == active_id or (active_id is None and v.film_id is None),
              "parent": v.parent_id, "created": v.created_at, "note": v.note,
              **{k: val for k, val in (v.metrics or {}).items() if isinstance(val, (int, float))}} for v in rows]
    st.dataframe(table, hide_index=True)
    _metrics_chart(rows)
    ids = [v.id for v in rows]
    chosen = st.selectbox("Version", ids, index=ids.index(active_id) if active_id in ids else 0, key="version_choice")
    if st.button("Activate this version", disabled=chosen == active_id):
        versions.activate_model_version(ctx.store, film.id, chosen)
        job = jobs.queue_prediction(ctx.store, film.id)
        st.session_state["training_notice"] = (job.id, f"Version {chosen} is active; frames it has not predicted "
                                                       f"yet are queued for detection (job {job.id}).")
        st.rerun()


def _metrics_chart(rows) -> None:
    """F1 and loss metrics per version, one point per value: a version carries each metric once, so
    the line chart this replaces (lines only, one row per version) drew nothing for a single version,
    and nothing for a metric only one version has."""
    points = [{"version": str(v.id), "id": v.id, "metric": name, "value": float(value)}
              for v in rows for name, value in sorted((v.metrics or {}).items())
              if isinstance(value, (int, float)) and not isinstance(value, bool)
              and ("f1" in name.lower() or "loss" in name.lower())]
    if not points:
        return
    st.vega_lite_chart(points, {
        "mark": {"type": "line", "point": {"size": 80}, "tooltip": True},
        "encoding": {"x": {"field": "version", "type": "ordinal", "sort": {"field": "id"}, "title": "model version"},
                     "y": {"field": "value", "type": "quantitative", "title": None},
                     "color": {"field": "metric", "type": "nominal"}},
    }, height=220)


def render(ctx: AppContext) -> None:
    st.title("Training")
    film = choose_film(ctx)
    if film is None:
        return
    st.write(f"Fine-tune **{film.name}**'s model on its corrected frames. The worker "
             "(`correlnet worker`) trains on the frames you edited (frames accepted as is only teach what "
             "they leave unmarked), publishes a new version only if it scores better on edited validation "
             "frames, by pixels and blobs, beyond the uncertainty shown below (a tie keeps the current model; "
             "unless forced), then re-predicts the uncorrected frames.")
    st.checkbox("Publish even if the gate says no", key="force_publish")
    st.button("Retrain on my corrections", type="primary", on_click=_queue, args=(ctx,))
    _notices(ctx)
    st.subheader("Progress")
    _progress(ctx, film.id)
    st.subheader("Model versions")
    _versions(ctx, film)


render(app_context())
