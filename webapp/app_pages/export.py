"""Export page: download the film's mattes (a zip of one mono 8-bit image per frame, 255 = defect,
named with the source frame number) and the COCO run-length JSON, through studio.export.

Executed by st.navigation (webapp/app.py) as a script; also runnable alone by AppTest.
"""

from __future__ import annotations

import streamlit as st

from studio import export
from webapp.context import AppContext, app_context, choose_film
from webapp.matte_archive import matte_zip

SOURCE_HELP = {"best": "corrections where they exist, predictions elsewhere",
               "corrected": "only frames a restorer corrected or accepted",
               "predicted": "the model's proposals only"}


def render(ctx: AppContext) -> None:
    st.title("Export")
    film = choose_film(ctx)
    if film is None:
        return
    source = st.radio("Masks from", export.SOURCES, index=export.SOURCES.index("best"), horizontal=True,
                      format_func=lambda s: f"{s} ({SOURCE_HELP.get(s, '')})", key="export_source")
    fmt = st.radio("Matte format", list(export.FORMATS), horizontal=True, key="export_format")
    if st.button("Prepare export", type="primary"):
        with st.spinner("Writing mattes..."):
            data, coco, written, missing = matte_zip(ctx.store, film, fmt, source)
        st.session_state["export_ready"] = (film.id, source, fmt, data, coco, written, missing)
    ready = st.session_state.get("export_ready")
    if ready and ready[:3] == (film.id, source, fmt):
        _, _, _, data, coco, written, missing = ready
        st.success(f"{written} mattes ready" + (f"; {len(missing)} frames have no mask yet" if missing else ""))
        st.download_button("Download mattes (zip)", data, file_name=f"{film.name}-mattes-{source}.zip",
                           mime="application/zip")
        st.download_button("Download COCO JSON", coco, file_name=f"{film.name}-{source}.coco.json",
                           mime="application/json")
    else:
        st.caption("Prepare the export to download the mattes and the COCO run-length JSON.")


render(app_context())
