"""Process-wide resources of the web app: settings read from CORRELNET_* at the entry point and
one Store per process (st.cache_resource), shared by every session and page."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from db.store import Store
from studio.settings import Settings
from webapp.widget_state import keep, remember


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    store: Store


@st.cache_resource(show_spinner=False)
def _open_store(settings: Settings) -> Store:
    # Keyed by the settings, so a test that points CORRELNET_DATA_DIR elsewhere gets its own store.
    return Store.open(settings)


def app_context() -> AppContext:
    """Settings from the environment and the store they name (opened once per process)."""
    settings = Settings.from_env()
    return AppContext(settings=settings, store=_open_store(settings))


def author() -> str:
    """Who is correcting: the name typed in the sidebar, else "restorer"."""
    return (st.session_state.get("author") or "restorer").strip() or "restorer"


def choose_film(ctx: AppContext):
    """Sidebar film picker shared by Review, Training and Export; None (with a hint) when the store is empty.
    The widget's key is "film_id" (st.session_state["film_id"] is the film shown); the choice survives
    page switches, the Films page (no picker) included (webapp/widget_state.py)."""
    from studio.films import ready_films  # lazy: keeps this module cheap for tests of other pages

    films = ready_films(ctx.store)  # every page run: no per-film counts here
    if not films:
        st.info("No film in the store yet: import one on the Films page.")
        return None
    ids = [f.id for f in films]
    names = {f.id: f.name for f in films}
    chosen = st.sidebar.selectbox("Film", ids, format_func=lambda i: f"{names[i]} (id {i})",
                                  **keep("film_id", ids[0], allowed=ids))
    remember("film_id", chosen)  # stays on this film when films imported later sort before it
    return next(f for f in films if f.id == chosen)
