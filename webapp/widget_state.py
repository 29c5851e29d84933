"""Widget values that survive page switches (issue 14, item 3).

Streamlit drops a widget's state at the end of a run that does not draw it, so switching pages resets
every widget of the page left behind: the film picker went back to the first film (then retraining or
export acted on the wrong film), and the tool, zoom and filters of the Review page came back at their
defaults. Streamlit's documented remedy: keep the value under a key of our own, hand it back to the
widget before drawing it, and keep every change the restorer makes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import streamlit as st

_PREFIX = "kept:"


def _store(key: str) -> None:
    st.session_state[_PREFIX + key] = st.session_state[key]


def keep(key: str, default: Any = None, allowed: Collection | None = None) -> dict[str, Any]:
    """Keyword arguments (key, on_change, args) for a widget whose value must outlive page switches.

    Call it right before drawing the widget, and draw the widget without a default of its own (no
    value= or index=): `default` is its value until the restorer changes it. A kept value that is no
    longer in `allowed` (a film deleted since) falls back to `default`.
    """
    value = st.session_state.get(_PREFIX + key, default)
    if allowed is not None and value not in allowed:
        value = default
    if value is not None:
        st.session_state[key] = value
    return {"key": key, "on_change": _store, "args": (key,)}


def remember(key: str, value: Any) -> None:
    """Keep `value` for widget `key` as if the restorer had chosen it (a value the page corrected)."""
    st.session_state[_PREFIX + key] = value
