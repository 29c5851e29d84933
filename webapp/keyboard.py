"""Keyboard shortcuts for Streamlit pages, which have no key bindings of their own.

A tiny script (st.html with JavaScript, run in the app's document) listens for keys and clicks the
button whose visible label matches, so a shortcut does exactly what clicking does, server side
included. Keys typed into a text field, slider or the drawing canvas's text tool are ignored.
The listener is installed once per browser tab; re-rendering only updates the key map.
"""

from __future__ import annotations

import json

import streamlit as st

# key (KeyboardEvent.key) -> button label on the Review page
REVIEW_KEYS = {
    "ArrowRight": "Next ▶", "j": "Next ▶",
    "ArrowLeft": "◀ Previous", "k": "◀ Previous",
    "d": "Next with detections",
    "s": "Next suggested",
    "a": "Accept frame as is",
    "u": "Undo",
}

_SCRIPT = """
<script>
(function () {
  window.__correlnetKeys = %s;
  if (window.__correlnetKeysInstalled) { return; }
  window.__correlnetKeysInstalled = true;
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) { return; }
    const target = event.target;
    const tag = (target && target.tagName) || "";
    if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || (target && target.isContentEditable)) { return; }
    const label = (window.__correlnetKeys || {})[event.key];
    if (!label) { return; }
    const button = Array.from(document.querySelectorAll("button")).find(
      (b) => b.innerText.trim() === label && !b.disabled);
    if (button) { event.preventDefault(); button.click(); }
  });
})();
</script>
"""


def install(keys: dict[str, str]) -> None:
    """Bind keys (KeyboardEvent.key -> button label) on the current page."""
    st.html(_SCRIPT % json.dumps(keys), unsafe_allow_javascript=True)


def legend(keys: dict[str, str]) -> str:
    """Readable list of the shortcuts, for a caption."""
    by_label: dict[str, list[str]] = {}
    for key, label in keys.items():
        by_label.setdefault(label, []).append(key.replace("Arrow", "").replace("Right", "→").replace("Left", "←"))
    return " · ".join(f"{'/'.join(ks)}: {label}" for label, ks in by_label.items())
