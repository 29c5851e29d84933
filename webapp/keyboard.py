"""Keyboard shortcuts for Streamlit pages, which have no key bindings of their own.

A tiny script (st.html with JavaScript, run in the app's document) listens for keys and clicks the
button whose visible label matches, so a shortcut does exactly what clicking does, server side
included. The listener is installed once per browser tab; re-rendering only updates the key map.

- Keys typed into a text field (a text or number input, a select's search box, a text area) are
  ignored. A focused radio, checkbox, slider or button does not swallow them: letter keys still work
  after clicking a tool, and the arrow keys stay with a focused radio group or slider, which uses them.
  The rule is webapp/frontend/typing.js, which the review canvas's space + drag follows too.
- Presses are queued and clicked one at a time, each once the app has finished the run the previous
  one started. Two clicks of one button that reach the server before it starts a run count as one
  (Streamlit merges button triggers), so "k" pressed 9 times 80 ms apart moved 4-5 frames.
- Next and previous frame (`STEPS`) are no clicks where the review canvas is on the page
  (webapp/review_canvas.py, `window.__correlnetCanvas`): the canvas shows the frame at once and tells
  the server which frame it is on now (an absolute index, so no press is merged away). A step waits
  in the queue only behind an earlier button press, and a button press waits until the canvas's
  sends are applied, so keys act in the order they were pressed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import streamlit as st

# Button labels the keys click (the Review page draws buttons with these labels).
PREVIOUS, NEXT = "◀ Previous", "Next ▶"
PREVIOUS_SHOT, NEXT_SHOT = "◀ Shot", "Shot ▶"
OVERLAY = "Overlay on/off"

# key (KeyboardEvent.key) -> button label on the Review page
REVIEW_KEYS = {
    "ArrowRight": NEXT, "j": NEXT,
    "ArrowLeft": PREVIOUS, "k": PREVIOUS,
    "]": NEXT_SHOT, "[": PREVIOUS_SHOT,
    "d": "Next with detections",
    "s": "Next suggested",
    "a": "Accept frame as is",
    "u": "Undo",
    "o": OVERLAY,
}

# Labels whose keys the review canvas handles itself: the frame step it takes.
STEPS = {NEXT: +1, PREVIOUS: -1}

# How long the queue waits for the run a click starts to show (then assumes it was too quick to see),
# and how long at most for that run to end (a stuck app must not swallow the keys forever).
START_WAIT_MS, RUN_WAIT_MS = 400, 15_000

SCRIPT = """
<script>
(function () {
  window.__correlnetKeys = %(keys)s;
  window.__correlnetSteps = %(steps)s;
  if (window.__correlnetKeysInstalled) { return; }
  window.__correlnetKeysInstalled = true;
%(typing)s
  function usesArrows(target) {
    if (!target) { return false; }
    const role = target.getAttribute ? target.getAttribute("role") : null;
    return target.type === "radio" || role === "slider" || role === "radio";
  }
  function runState() {
    const app = document.querySelector('[data-testid="stApp"]');
    return app ? app.getAttribute("data-test-script-state") : null;
  }
  function canvas() {
    const c = window.__correlnetCanvas;
    return c && c.connected() ? c : null;
  }
  function busy() {
    const s = runState();
    const c = canvas();
    return s === "running" || s === "rerunRequested" || (c !== null && c.busy());
  }
  const queue = [];
  let pumping = false;
  function waitUntil(done, limitMs, then) {
    const start = Date.now();
    (function poll() {
      if (done() || Date.now() - start > limitMs) { then(); } else { setTimeout(poll, 20); }
    })();
  }
  function pump() {
    if (pumping) { return; }
    pumping = true;
    waitUntil(function () { return !busy(); }, %(run_ms)d, function () {
      const label = queue.shift();
      const next = function () { pumping = false; if (queue.length) { pump(); } };
      if (typeof label === "number") {  // a frame step queued behind a button press
        const c = canvas();
        if (c) { c.step(label); }
        next();
        return;
      }
      const button = Array.from(document.querySelectorAll("button")).find(
        (b) => b.innerText.trim() === label && !b.disabled);
      if (!button) { next(); return; }
      button.click();
      waitUntil(busy, %(start_ms)d, function () {
        waitUntil(function () { return !busy(); }, %(run_ms)d, next);
      });
    });
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) { return; }
    const target = event.target;
    if (typing(target)) { return; }
    if (event.key.startsWith("Arrow") && usesArrows(target)) { return; }
    const label = (window.__correlnetKeys || {})[event.key];
    if (!label) { return; }
    event.preventDefault();
    const step = (window.__correlnetSteps || {})[label];
    const c = canvas();
    if (step && c) {
      if (!pumping && !queue.length) { c.step(step); } else { queue.push(step); pump(); }
      return;
    }
    queue.push(label);
    pump();
  });
})();
</script>
"""


@functools.cache
def typing_js() -> str:
    """webapp/frontend/typing.js: which focused element types text (its keys are no shortcut); the key
    listener and the review canvas share it."""
    return (Path(__file__).resolve().parent / "frontend" / "typing.js").read_text()


def script(keys: dict[str, str], steps: dict[str, int] | None = None) -> str:
    """The listener's HTML for keys (KeyboardEvent.key -> button label); steps (label -> frame step):
    the labels a review canvas on the page takes itself."""
    return SCRIPT % {"keys": json.dumps(keys), "steps": json.dumps(steps or {}), "start_ms": START_WAIT_MS,
                     "run_ms": RUN_WAIT_MS, "typing": typing_js()}


def install(keys: dict[str, str], steps: dict[str, int] | None = None) -> None:
    """Bind keys (KeyboardEvent.key -> button label) on the current page; see `script`."""
    st.html(script(keys, steps), unsafe_allow_javascript=True)


def legend(keys: dict[str, str]) -> str:
    """Readable list of the shortcuts, as Markdown for a caption (brackets escaped)."""
    by_label: dict[str, list[str]] = {}
    for key, label in keys.items():
        shown = key.replace("Arrow", "").replace("Right", "→").replace("Left", "←")
        by_label.setdefault(label, []).append(shown.replace("[", "\\[").replace("]", "\\]"))
    return " · ".join(f"{'/'.join(ks)}: {label}" for label, ks in by_label.items())
