"""Correl-Net Studio web app: `streamlit run webapp/app.py` (scripts/app.sh does it for you).

One Streamlit app with four pages (webapp/app_pages/): Films, Review (with Correct), Training, Export.
Settings come from CORRELNET_* environment variables (studio.settings.Settings.from_env) and the
store is opened once per process (webapp/context.py); the pages call `studio` use cases only.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

# Not "pages/": a pages/ folder beside the entry script switches Streamlit to its old multipage mode,
# which ignores st.navigation.
PAGES = Path(__file__).resolve().parent / "app_pages"


# The browser tab's icon. Without one, Streamlit makes the current page's ":material/..." icon the
# favicon and fetches it from fonts.gstatic.com on every page run; an emoji is drawn locally (a data: SVG),
# so the app makes no request outside itself and works offline.
FAVICON = "🎞️"


def main() -> None:
    st.set_page_config(page_title="Correl-Net Studio", page_icon=FAVICON, layout="wide")
    st.sidebar.text_input("Your name (recorded with each correction)", key="author", value=st.session_state.get("author", "restorer"))
    navigation = st.navigation([
        st.Page(PAGES / "films.py", title="Films", icon=":material/movie:", default=True),  # served at /
        st.Page(PAGES / "review.py", title="Review", icon=":material/brush:", url_path="review"),
        st.Page(PAGES / "training.py", title="Training", icon=":material/model_training:", url_path="training"),
        st.Page(PAGES / "export.py", title="Export", icon=":material/download:", url_path="export"),
    ])
    navigation.run()


main()
