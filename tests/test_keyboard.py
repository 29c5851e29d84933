"""The Review page's key listener (webapp/keyboard.py), run in Node against a stub of the app's document
(issue 14, item 5): every press counts even when presses come faster than the app reruns, keys work
while a tool radio has focus, text fields keep their keys, and with the review canvas on the page its
keys go to the canvas, in order with the button presses. Skips where `node` is absent."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from webapp import keyboard

NODE = shutil.which("node") or shutil.which("nodejs")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js to run the page's JavaScript")

# A stub document: buttons with the Review labels; a click starts a server run 30 ms later lasting
# 150 ms, shown in stApp's data-test-script-state as the real app does. Each click records the run
# state it happened in. Presses: (delay ms after the previous one, key, focused element).
HARNESS = r"""
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const code = input.html.replace(/^\s*<script>/, "").replace(/<\/script>\s*$/, "");
let state = "notRunning";
const clicks = [];
const handlers = {};
let canvasBusyUntil = 0;
const now = () => Number(process.hrtime.bigint() / 1000000n);
const buttons = input.labels.map((label) => ({
  innerText: label, disabled: false,
  click() {
    clicks.push({label: label, state: state, canvasBusy: now() < canvasBusyUntil});
    setTimeout(() => { state = "running"; setTimeout(() => { state = "notRunning"; }, 150); }, 30);
  },
}));
global.window = {};
if (input.canvas) {  // a review canvas whose sends the server applies 120 ms later
  window.__correlnetCanvas = {
    step(delta) { clicks.push({step: delta, state: state}); canvasBusyUntil = now() + 120; },
    busy() { return now() < canvasBusyUntil; },
    connected() { return true; },
  };
}
global.document = {
  addEventListener(type, fn) { handlers[type] = fn; },
  querySelector(sel) { return sel.includes("stApp") ? {getAttribute: () => state} : null; },
  querySelectorAll() { return buttons; },
};
eval(code);
const targets = {
  body: {tagName: "BODY", getAttribute: () => null},
  radio: {tagName: "INPUT", type: "radio", getAttribute: () => null},
  text: {tagName: "INPUT", type: "text", getAttribute: () => null},
  number: {tagName: "INPUT", type: "number", getAttribute: () => null},
};
let t = 0;
for (const [delay, key, target] of input.presses) {
  t += delay;
  setTimeout(() => handlers.keydown({key: key, target: targets[target], ctrlKey: false, metaKey: false,
                                     altKey: false, repeat: false, preventDefault() {}}), t);
}
setTimeout(() => { process.stdout.write(JSON.stringify(clicks)); }, t + input.settle_ms);
"""


def _run(presses: list[tuple[int, str, str]], settle_ms: int, canvas: bool = False) -> list[dict]:
    labels = sorted(set(keyboard.REVIEW_KEYS.values()))
    payload = json.dumps({"html": keyboard.script(keyboard.REVIEW_KEYS, keyboard.STEPS), "labels": labels,
                          "presses": presses, "settle_ms": settle_ms, "canvas": canvas})
    out = subprocess.run([NODE, "-e", HARNESS], input=payload, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_quick_presses_each_click_once_the_previous_run_ended():
    clicks = _run([(80, "k", "body")] * 9 + [(80, "j", "body")], settle_ms=3500)
    assert [c["label"] for c in clicks] == [keyboard.PREVIOUS] * 9 + [keyboard.NEXT]
    assert all(c["state"] == "notRunning" for c in clicks), "a click during a run can be merged with another"


def test_keys_work_while_a_radio_has_focus_but_text_fields_keep_theirs():
    clicks = _run([(0, "a", "radio"), (10, "ArrowRight", "radio"), (10, "j", "text"), (10, "k", "number"),
                   (10, "o", "body")], settle_ms=1500)
    # Letters after clicking a tool work; arrows stay with the radio group; typed text is not a shortcut.
    assert [c["label"] for c in clicks] == ["Accept frame as is", keyboard.OVERLAY]


def test_with_the_canvas_steps_go_to_it_at_once_and_keep_their_order_with_buttons():
    """j and k are the canvas's own (no click, no wait: 20 presses 20 ms apart are 20 steps); a button
    pressed after steps waits until the canvas's sends are applied, and a step pressed after that button
    waits for the button's run, so the accept acts on the frame the steps reached."""
    clicks = _run([(20, "j", "body")] * 20 + [(10, "a", "body"), (10, "k", "body")], settle_ms=2000, canvas=True)
    assert [c.get("step", c.get("label")) for c in clicks] == [1] * 20 + ["Accept frame as is", -1]
    accept, back = clicks[20], clicks[21]
    assert not accept["canvasBusy"] and accept["state"] == "notRunning"
    assert back["state"] == "notRunning"


def test_legend_lists_every_key_and_escapes_brackets():
    text = keyboard.legend(keyboard.REVIEW_KEYS)
    for label in set(keyboard.REVIEW_KEYS.values()):
        assert label in text
    assert "\\[" in text and "\\]" in text and "→/j: Next ▶" in text
