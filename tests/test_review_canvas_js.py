"""The review canvas's own JavaScript (webapp/frontend/review_canvas.js, as webapp/review_canvas.py
serves it), run in Node against a small stub of the document: space + drag pans also with a tool radio
focused, a stroke stays drawn until the picture that shows it is decoded, nothing is drawn on another
frame's picture, a stroke across a change of canvas size is dropped, the send counter never falls
behind the server's, pictures travel once, and neighbours sent after the canvas are taken in.
Skips where `node` is absent."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from webapp.review_canvas import component_js

NODE = shutil.which("node") or shutil.which("nodejs")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js to run the canvas's JavaScript")

# A stub document with what the canvas touches. Images decode when the scenario says so
# (`decode(key)`); the 2-d context records what is painted since the last clear (`painted()`).
HARNESS = r"""
const fs = require("fs");
const { pathToFileURL } = require("url");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
let painted = [];
const ctx = new Proxy({}, { get(target, name) {
  if (name in target) { return target[name]; }
  if (name === "clearRect") { return () => { painted = []; }; }
  if (["stroke", "fill", "fillRect", "strokeRect"].includes(name)) { return () => painted.push(name); }
  return () => {};
}, set(target, name, value) { target[name] = value; return true; } });
class ClassList {
  constructor() { this.names = new Set(); }
  add(c) { this.names.add(c); }
  toggle(c, on) { if (on === undefined) { on = !this.names.has(c); } if (on) { this.names.add(c); } else { this.names.delete(c); } return on; }
  contains(c) { return this.names.has(c); }
}
class El {
  constructor(tag) { this.tagName = tag.toUpperCase(); this.children = []; this.style = {}; this.dataset = {};
    this.classList = new ClassList(); this.listeners = {}; this.text = ""; this.width = 0; this.height = 0; }
  set className(v) { String(v).split(/\s+/).filter(Boolean).forEach((c) => this.classList.add(c)); }
  appendChild(c) { this.children.push(c); return c; }
  append(...xs) { xs.forEach((x) => (typeof x === "string" ? (this.text += x) : this.appendChild(x))); }
  replaceChild(n, o) { this.children[this.children.indexOf(o)] = n; return o; }
  set textContent(v) { this.children = []; this.text = String(v); }
  get textContent() { return this.children.map((c) => c.textContent).join("") + this.text; }
  get isConnected() { return true; }
  addEventListener(t, f) { (this.listeners[t] = this.listeners[t] || []).push(f); }
  removeEventListener(t, f) { this.listeners[t] = (this.listeners[t] || []).filter((g) => g !== f); }
  dispatch(t, e) { (this.listeners[t] || []).slice().forEach((f) => f(e)); }
  getBoundingClientRect() { return { left: 0, top: 0, width: parseFloat(this.style.width) || 0 }; }
  setPointerCapture() {}
  getContext() { return ctx; }
}
const decodes = {};
class Image extends El {
  constructor() { super("img"); this.naturalWidth = 0; }
  decode() { return new Promise((resolve) => { (decodes[this.dataset.key] = decodes[this.dataset.key] || []).push(
    () => { this.naturalWidth = 100; resolve(); }); }); }
}
global.Image = Image;
global.document = { createElement: (tag) => new El(tag) };
global.window = new El("window");
window.devicePixelRatio = 1;
const root = new El("div");
const sent = [];
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
const view = () => root.children[0].children[1];
const ink = () => view().children[1];
const picture = () => view().children[0];
let mod = null;
function mount(data) {
  mod.default({ parentElement: root, data, setStateValue: (name, value) => sent.push(JSON.parse(JSON.stringify(value))) });
}
async function decode(key) { (decodes[key] || []).splice(0).forEach((done) => done()); await tick(); }
function pointer(type, x, y, button = 0) {
  ink().dispatch(type, { clientX: x, clientY: y, button, shiftKey: false, pointerId: 1, preventDefault() {} });
}
function drag(a, b) { pointer("pointerdown", ...a); pointer("pointermove", ...b); pointer("pointerup", ...b); }
function key(type, k, target) { window.dispatch(type, { key: k, target, preventDefault() {} }); }
function wheel(x, y, deltaY) { view().dispatch("wheel", { clientX: x, clientY: y, deltaY, preventDefault() {} }); }
const drawings = () => sent.flatMap((s) => s.drawings);
fs.writeFileSync(input.path, input.js);
import(pathToFileURL(input.path).href).then(async (m) => {
  mod = m;
  const run = new Function("ctx", `return (async () => { const { mount, decode, tick, pointer, drag, key, wheel, view,
    picture, sent, drawings, painted, api } = ctx; ${input.scenario} })();`);
  const out = await run({ mount, decode, tick, pointer, drag, key, wheel, view, picture, sent, drawings,
    painted: () => painted.length, api: () => window.__correlnetCanvas });
  process.stdout.write(JSON.stringify(out));
});
"""

TOOL = {"label": "Add brush", "mode": "freedraw", "colour": "rgba(255,0,255,0.5)", "brush": 8, "radius": 4}


def frame(index: int, pic: str, url: bool = True, gen: int = 0, size: str = "200x100") -> dict:
    picture = {"key": pic, "url": f"data:image/jpeg;base64,{pic}"} if url else {"key": pic}
    return {"index": index, "number": index + 1, "status": "model's proposal (orange)",
            "token": f"1.{index}.{index + 10}.{gen}.{size}", "picture": picture}


def data(frames: list[dict], index: int = 0, ack: int = 0, run: int = 1, canvas=(200, 100)) -> dict:
    return {"film": 1, "count": 10, "index": index, "ack": ack, "run": run, "canvas": list(canvas),
            "image": [400, 200], "tool": TOOL, "magnifier": None, "frames": frames}


def _run(tmp_path, scenario: str, **values) -> dict:
    for name, value in values.items():
        scenario = f"const {name} = {json.dumps(value)};\n" + scenario
    payload = json.dumps({"js": component_js(), "path": str(tmp_path / "review_canvas.mjs"), "scenario": scenario})
    out = subprocess.run([NODE, "-e", HARNESS], input=payload, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_space_and_drag_pans_with_a_tool_radio_focused_and_draws_nothing(tmp_path):
    out = _run(tmp_path, """
        mount(first); await decode("a");
        const radio = {tagName: "INPUT", type: "radio"}, text = {tagName: "INPUT", type: "text"};
        view().dispatch("pointerenter", {});
        wheel(100, 50, -500);  // zoomed in: there is room to pan
        const before = Number(view().dataset.ox);
        key("keydown", " ", radio);
        drag([100, 50], [60, 30]);
        key("keyup", " ", radio);
        const panned = Number(view().dataset.ox) - before;
        key("keydown", " ", text);  // a space typed into a text field is text: the drag draws
        drag([100, 50], [60, 30]);
        key("keyup", " ", text);
        return {panned, zoom: Number(view().dataset.zoom), drawings: drawings().length};
        """, first=data([frame(0, "a")]))
    assert out["panned"] == pytest.approx(40 / out["zoom"])
    assert out["drawings"] == 1, "only the drag with the space typed into a text field is a stroke"


def test_a_saved_stroke_stays_drawn_until_the_picture_showing_it_is_decoded(tmp_path):
    out = _run(tmp_path, """
        mount(first); await decode("a");
        drag([20, 20], [80, 20]);
        const stroke = painted();
        mount(saved);  // the server saved it: a new token, and a picture not decoded yet
        const meanwhile = {painted: painted(), dimmed: view().classList.contains("rc-loading"),
                           shown: picture().dataset.key};
        await decode("b");
        return {stroke, meanwhile, after: painted(), shown: picture().dataset.key};
        """, first=data([frame(0, "a")]), saved=data([frame(0, "b", gen=1)], ack=1))
    assert out["stroke"] == 1
    assert out["meanwhile"] == {"painted": 1, "dimmed": False, "shown": "a"}  # no flash, no dimming
    assert out["after"] == 0 and out["shown"] == "b"  # the stroke is in the picture now


def test_another_frames_picture_is_dimmed_and_takes_no_drawing(tmp_path):
    out = _run(tmp_path, """
        mount(first); await decode("a");
        api().step(1);  // frame 1's picture is not decoded yet: frame 0's stays, dimmed
        const dimmed = view().classList.contains("rc-loading");
        drag([20, 20], [80, 20]);
        const early = drawings().length;
        await decode("b");
        drag([20, 20], [80, 20]);
        return {dimmed, early, late: drawings().map((d) => d.token),
                undimmed: !view().classList.contains("rc-loading")};
        """, first=data([frame(0, "a"), frame(1, "b")]))
    assert out["dimmed"] and out["early"] == 0 and out["undimmed"]
    assert out["late"] == ["1.1.11.0.200x100"]


def test_a_stroke_across_a_change_of_canvas_size_is_dropped(tmp_path):
    out = _run(tmp_path, """
        mount(first); await decode("a");
        pointer("pointerdown", 20, 20);
        mount(zoomed);  // a zoom chosen meanwhile: the canvas is another size
        pointer("pointermove", 80, 20); pointer("pointerup", 80, 20);
        const across = drawings().length;
        await decode("a2");
        drag([20, 20], [80, 20]);
        return {across, after: drawings().map((d) => d.token)};
        """, first=data([frame(0, "a")]),
        zoomed=data([frame(0, "a2", size="400x200")], canvas=(400, 200)))
    assert out["across"] == 0
    assert out["after"] == ["1.0.10.0.400x200"]


def test_the_send_counter_never_falls_behind_the_servers_ack(tmp_path):
    """A canvas mounted with an old run's ack (its sends were those of an instance before it) must not
    send seqs the server has applied already: they would be skipped."""
    out = _run(tmp_path, """
        mount(first);
        mount(later);  // the server has applied seq 8 meanwhile
        api().step(1);
        return sent.map((s) => s.seq);
        """, first=data([frame(0, "a"), frame(1, "b")], ack=5), later=data([frame(0, "a"), frame(1, "b")], ack=8))
    assert out == [9]


def test_pictures_travel_once_and_a_missing_one_is_asked_for_again(tmp_path):
    out = _run(tmp_path, """
        mount(first); await decode("a"); await decode("b");
        api().step(1);
        const have = sent[0].have.slice().sort();
        mount(byKey);  // the server sent a (held) by key, c (not held) by key too, as after an eviction
        await tick();
        return {have, asked: sent.length > 1 ? sent[sent.length - 1].have.slice().sort() : null,
                shown: picture().dataset.key};
        """, first=data([frame(0, "a"), frame(1, "b")]),
        byKey=data([frame(0, "a", url=False), frame(1, "b", url=False), frame(2, "c", url=False)], index=1, ack=1))
    assert out["have"] == ["a", "b"]
    assert out["asked"] == ["a", "b"], "the canvas asks again, saying it lacks c"
    assert out["shown"] == "b"


def test_neighbours_sent_after_the_canvas_are_taken_in_for_their_run_only(tmp_path):
    out = _run(tmp_path, """
        mount(first); mount(firstMore); await decode("a"); await decode("x");
        mount(next);  // a new run: the last run's neighbours are gone with it
        mount(firstMore);  // and one arriving late is not taken
        api().step(1);
        const meanwhile = {shown: picture().dataset.key, dimmed: view().classList.contains("rc-loading")};
        mount(nextMore); await decode("b");
        return {meanwhile, shown: picture().dataset.key, index: picture().dataset.index};
        """, first=data([frame(0, "a")], run=6), firstMore={"more": True, "run": 6, "frames": [frame(1, "x")]},
        next=data([frame(0, "a")], run=7), nextMore={"more": True, "run": 7, "frames": [frame(1, "b")]})
    assert out["meanwhile"] == {"shown": "a", "dimmed": True}
    assert (out["shown"], out["index"]) == ("b", "1")
