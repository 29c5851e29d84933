"""Export page: download the film's mattes (a zip of one mono 8-bit image per frame, 255 = defect,
named with the source frame number) and the COCO run-length JSON, through studio.export.

Executed by st.navigation (webapp/app.py) as a script; also runnable alone by AppTest.
"""

from __future__ import annotations

import streamlit as st

from studio import export
from webapp.context import AppContext, app_context, choose_film
from webapp.matte_archive import matte_zip
from webapp.widget_state import keep

SOURCE_HELP = {"best": "corrections where they exist, predictions elsewhere",
               "corrected": "only frames a restorer corrected or accepted",
               "predicted": "the model's proposals only"}


def render(ctx: AppContext) -> None:
    st.title("Export")
    film = choose_film(ctx)
    if film is None:
        return
    source = st.radio("Masks from", export.SOURCES, horizontal=True,
                      format_func=lambda s: f"{s} ({SOURCE_HELP.get(s, '')})", **keep("export_source", "best"))
    fmt = st.radio("Matte format", list(export.FORMATS), horizontal=True, **keep("export_format"))
    if st.button("Prepare export", type="primary"):
        with st.spinner("Writing mattes..."):
            archive = matte_zip(ctx.store, film, fmt, source)
        st.session_state["export_ready"] = ((film.id, source, fmt), archive)
    key, archive = st.session_state.get("export_ready") or (None, None)
    if key == (film.id, source, fmt):
        missing = archive.missing
        st.success(f"{archive.written} mattes ready" + (f"; {len(missing)} of them black: those frames have no "
                                                        "mask from this source yet" if missing else ""))
        # Download names from the archive's safe stem, never film.name (a name stored before names were
        # checked may hold "/" or a newline).
        st.download_button("Download mattes (zip)", archive.zip_bytes, file_name=f"{archive.stem}-mattes-{source}.zip",
                           mime="application/zip")
        st.download_button("Download COCO JSON", archive.coco, file_name=f"{archive.stem}-{source}.coco.json",
                           mime="application/json")
    else:
        st.caption("Prepare the export to download the mattes and the COCO run-length JSON.")


render(app_context())
