"""Training page: one click queues fine-tuning of the film's model on its corrections (the worker
runs it); live progress polled from the job row; model versions with their metrics; activate or
roll back a version; cancel a job.

Executed by st.navigation (webapp/app.py) as a script; also runnable alone by AppTest.
"""

from __future__ import annotations

import streamlit as st

from studio import jobs, versions
from webapp.context import AppContext, app_context, choose_film


def _queue(ctx: AppContext) -> None:
    # The film in the picker at click time, not the one this button was drawn for: a click that
    # follows a film change before the page has redrawn must train the film the restorer chose.
    job = jobs.queue_training(ctx.store, st.session_state["film_id"],
                              force=bool(st.session_state.get("force_publish")))
    st.session_state["training_notice"] = f"Fine-tuning job {job.id} is {job.status}."


def _eta(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@st.fragment(run_every=2)
def _progress(ctx: AppContext, film_id: int) -> None:
    recent = jobs.list_jobs(ctx.store, film_id, limit=20)
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
    metric_names = sorted({k for v in rows for k, val in (v.metrics or {}).items() if isinstance(val, (int, float))
                           and ("f1" in k.lower() or "loss" in k.lower())})
    if metric_names:
        chart = [{"version": str(v.id), **{m: (v.metrics or {}).get(m) for m in metric_names}} for v in rows]
        st.line_chart(chart, x="version", y=metric_names)
    ids = [v.id for v in rows]
    chosen = st.selectbox("Version", ids, index=ids.index(active_id) if active_id in ids else 0, key="version_choice")
    if st.button("Activate this version", disabled=chosen == active_id):
        versions.activate_model_version(ctx.store, film.id, chosen)
        job = jobs.queue_prediction(ctx.store, film.id)
        st.session_state["training_notice"] = (f"Version {chosen} is active; frames it has not predicted yet "
                                               f"are queued for detection (job {job.id}).")
        st.rerun()


def render(ctx: AppContext) -> None:
    st.title("Training")
    film = choose_film(ctx)
    if film is None:
        return
    st.write(f"Fine-tune **{film.name}**'s model on its corrected frames. The worker "
             "(`correlnet worker`) trains, publishes a new version only if validation F1 does not drop "
             "(unless forced), then re-predicts the uncorrected frames.")
    st.checkbox("Publish even if validation F1 drops", key="force_publish")
    st.button("Retrain on my corrections", type="primary", on_click=_queue, args=(ctx,))
    if notice := st.session_state.pop("training_notice", None):
        st.success(notice)
    st.subheader("Progress")
    _progress(ctx, film.id)
    st.subheader("Model versions")
    _versions(ctx, film)


render(app_context())
