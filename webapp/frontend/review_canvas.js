// The Review page's canvas (webapp/review_canvas.py): a Streamlit components-v2 module, vanilla
// JavaScript, no build step. One instance stays mounted across frames (a stable key), so a new frame is
// an image swapped in place, never a new component.
//
// From the server (`data`, every run): the film, its frame count, the frame shown and the last state seq
// it processed (`ack`), the run it comes from (`run`), the canvas size in CSS px (`canvas`: what stroke
// coordinates are measured in) and the film's (`image`), the tool, and `frames`: the shown frame and
// those of its neighbours the server had ready, each with its index, number, status line, the token a
// drawing on it is sent with, and its picture {key, url} (a JPEG data URL; the shown frame may add a
// full-resolution `detail`). The url is left out for a picture this canvas said it holds (`have`).
// The other neighbours come later in the same run, from a second instance of this component with data
// {more: true, run, frames} (webapp/review_canvas.py `mount_more`), which hands them over.
//
// To the server (state "review", the whole object each time, so a state a rerun skips loses nothing):
//   {seq, film, target, nav, drawings: [{token, seq, objects}], magnify: {x, y, n} | null, have: [key]}
// `target` is the frame index the restorer navigated to (absolute: 20 presses that reach the server in
// one rerun still move 20 frames); `nav` the seq of the last navigation; `drawings` the objects drawn
// under each token not yet acknowledged, in the fabric-style JSON webapp/canvas.py composites (Path of
// M/L commands, Rect, Polygon, Circle; canvas px, strokeWidth in canvas px); `magnify` the image point
// last shift-clicked, for the Magnifier section; `have` the pictures held.
//
// A stroke the server saved stays drawn until the picture that shows it is decoded (no flash of the
// frame without it), and the frame is dimmed only while the picture shown is another frame's. Nothing
// is drawn on another frame's picture, and a stroke across a change of the canvas size is dropped.
//
// The view: wheel zooms around the pointer (wheel down on the unzoomed frame scrolls the page, so the
// magnifier below stays in reach), the middle button (or space + left button) pans; strokes stay in
// canvas px whatever the zoom, so they land where they were drawn at full resolution.

const INSTANCES = new WeakMap();
const ZOOM_MAX = 32;
const WHEEL_RATE = 0.002; // zoom factor per wheel delta unit: exp(-deltaY * rate)
const CLOSE_PX = 8; // a polygon closes on a click this near its first vertex (screen px)
const KEEP_IMAGES = 8; // decoded pictures kept beyond those the last data names (a few frames back)
const RETIRE_AFTER = 8; // a saved drawing this many frames from the one shown goes, picture or not
// typing(target), the rule for which keys are typed text, comes first in this module (webapp/frontend/typing.js).

function element(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) { node.className = className; }
  if (parent) { parent.appendChild(node); }
  return node;
}

class ReviewCanvas {
  constructor(root) {
    this.root = root;
    this.el = element("div", "rc", root);
    const head = element("div", "rc-head", this.el);
    this.label = element("div", "rc-label", head);
    const zoomBox = element("div", "rc-zoombox", head);
    this.zoomText = element("span", "rc-zoom", zoomBox);
    this.fitButton = element("button", "rc-fit", zoomBox);
    this.fitButton.type = "button";
    this.fitButton.textContent = "Fit";
    this.fitButton.title = "Show the whole frame again (the wheel zooms, the middle button or space + drag pans)";
    this.view = element("div", "rc-view", this.el);
    this.picture = element("img", "rc-picture", this.view);
    this.ink = element("canvas", "rc-ink", this.view);
    this.data = null;
    this.more = []; // frames the data's run sent after it (mount_more)
    this.images = new Map(); // picture key -> <img> (decoded once dataset.ready is "1"), oldest first
    this.have = new Set(); // the picture keys last sent as held: kept until the next send
    this.asked = null; // the ack at which pictures missing here were last asked for again
    this.seq = null; // last state seq sent (never below the server's ack)
    this.acked = 0;
    this.target = 0;
    this.navSeq = 0;
    this.drawings = new Map(); // token -> {token, film, index, seq, objects}
    this.magnify = null;
    this.active = null; // {index, size, obj, start} while a stroke or rectangle is drawn
    this.polygon = null; // {index, size, points, hover} while a polygon is open
    this.panning = null;
    this.spaceHeld = false;
    this.hover = false;
    this.zoom = 1;
    this.ox = 0;
    this.oy = 0;
    this.listen();
    window.__correlnetCanvas = this.api = {
      step: (delta) => this.step(delta),
      busy: () => this.seq !== null && this.seq > this.acked,
      connected: () => this.el.isConnected,
      more: (more) => this.receiveMore(more),
    };
  }

  listen() {
    const on = (target, type, fn, options) => {
      target.addEventListener(type, fn, options);
      this.unlisten.push(() => target.removeEventListener(type, fn, options));
    };
    this.unlisten = [];
    on(this.ink, "pointerdown", (e) => this.down(e));
    on(this.ink, "pointermove", (e) => this.move(e));
    on(this.ink, "pointerup", (e) => this.up(e));
    on(this.ink, "pointercancel", () => { this.active = null; this.panning = null; this.draw(); });
    on(this.ink, "auxclick", (e) => e.preventDefault());
    on(this.ink, "contextmenu", (e) => { if (this.panning) { e.preventDefault(); } });
    on(this.view, "wheel", (e) => this.wheel(e), { passive: false });
    on(this.view, "pointerenter", () => { this.hover = true; });
    on(this.view, "pointermove", () => { this.hover = true; });
    on(this.view, "pointerleave", () => { this.hover = false; });
    on(this.fitButton, "click", () => { this.zoom = 1; this.ox = 0; this.oy = 0; this.render(); });
    // Capture: before the focused element (a tool radio) can keep the space to itself.
    on(window, "keydown", (e) => this.key(e, true), true);
    on(window, "keyup", (e) => this.key(e, false), true);
  }

  dispose() {
    this.unlisten.forEach((undo) => undo());
    if (window.__correlnetCanvas === this.api) { delete window.__correlnetCanvas; }
  }

  // --- data from the server -------------------------------------------------------------------------

  update(data) {
    const first = this.data === null;
    const filmChanged = !first && data.film !== this.data.film;
    const sized = first || data.canvas[0] !== this.data.canvas[0] || data.canvas[1] !== this.data.canvas[1];
    this.data = data;
    const pending = window.__correlnetMore; // a later instance's frames may have come first
    this.more = pending && pending.run === data.run ? pending.frames : [];
    this.seq = Math.max(this.seq ?? 0, data.ack); // a fresh instance, or sends the server saw go past
    this.acked = data.ack;
    if (first || filmChanged || this.navSeq <= this.acked) { this.target = data.index; }
    if (filmChanged || sized) { this.zoom = 1; this.ox = 0; this.oy = 0; this.polygon = null; }
    if (sized) { this.resize(); }
    this.preload();
    this.render();
  }

  receiveMore(more) {
    if (!this.data || more.run !== this.data.run) { return; } // a run the server has gone past
    this.more = more.frames;
    this.preload();
    this.render();
  }

  frames() {
    return this.data ? [...this.data.frames, ...this.more] : [];
  }

  ready(frame) { // whether one of the frame's pictures is decoded
    return [frame.detail, frame.picture].some((pic) => {
      const img = pic && this.images.get(pic.key);
      return Boolean(img) && img.dataset.ready === "1";
    });
  }

  retire() {
    // A drawing the server has (acknowledged) under a token it replaced (saved) goes once the frame's
    // new picture, which shows it, is decoded; until then it is drawn over the old picture.
    const live = new Set(this.frames().map((f) => f.token).filter(Boolean));
    for (const [token, drawing] of this.drawings) {
      if (drawing.seq > this.acked || live.has(token)) { continue; }
      const frame = drawing.film === this.data.film ? this.frameAt(drawing.index) : null;
      const far = drawing.film !== this.data.film || Math.abs(drawing.index - this.data.index) > RETIRE_AFTER;
      if (far || (frame && this.ready(frame))) { this.drawings.delete(token); }
    }
  }

  resize() {
    const [w, h] = this.data.canvas;
    const dpr = window.devicePixelRatio || 1;
    this.view.style.width = `${w}px`;
    this.view.style.height = `${h}px`;
    this.ink.style.width = `${w}px`;
    this.ink.style.height = `${h}px`;
    this.ink.width = Math.round(w * dpr);
    this.ink.height = Math.round(h * dpr);
  }

  preload() {
    const wanted = this.wanted();
    let missing = false;
    for (const frame of this.frames()) {
      for (const pic of [frame.picture, frame.detail]) {
        if (!pic) { continue; }
        if (this.images.has(pic.key)) {
          const img = this.images.get(pic.key);
          this.images.delete(pic.key);
          this.images.set(pic.key, img); // most recently named last
          continue;
        }
        if (!pic.url) { missing = true; continue; } // sent by key, but no longer here: ask again below
        const img = new Image();
        img.className = "rc-picture";
        img.dataset.key = pic.key;
        img.dataset.ready = "0";
        img.src = pic.url;
        // Decoded before it is shown, so swapping it in costs no decode on the key press.
        img.decode().catch(() => null).then(() => { img.dataset.ready = "1"; this.render(); });
        this.images.set(pic.key, img);
      }
    }
    this.evict(wanted, this.have); // never one the last send said is here: the server may name it by key
    if (missing && this.asked !== this.acked) { // once per answer: the next one brings the urls
      this.asked = this.acked;
      setTimeout(() => this.send(), 0);
    }
  }

  evict(wanted, keep) { // the oldest pictures beyond KEEP_IMAGES that the frames do not name
    let excess = this.images.size - wanted.size - KEEP_IMAGES;
    for (const key of [...this.images.keys()]) {
      if (excess <= 0) { break; }
      if (!wanted.has(key) && !keep.has(key)) { this.images.delete(key); excess -= 1; }
    }
  }

  wanted() {
    return new Set(this.frames().flatMap((f) => [f.picture, f.detail]).filter(Boolean).map((pic) => pic.key));
  }

  frameAt(index) {
    return this.frames().find((f) => f.index === index) || null;
  }

  // --- what is shown --------------------------------------------------------------------------------

  render() {
    if (!this.data) { return; }
    this.retire();
    const frame = this.frameAt(this.target);
    this.label.textContent = "";
    const bold = element("b", null, this.label);
    if (frame) {
      bold.textContent = `Frame ${frame.number}`;
      this.label.append(` (index ${frame.index}) - ${frame.status}`);
    } else {
      bold.textContent = "Frame …";
      this.label.append(` (index ${this.target}) - loading`);
    }
    this.showPicture(frame);
    this.zoomText.textContent = `${this.zoom.toFixed(1)}x`;
    this.view.dataset.zoom = String(this.zoom);
    this.view.dataset.ox = String(this.ox);
    this.view.dataset.oy = String(this.oy);
    this.view.dataset.index = String(this.target);
    this.view.dataset.tool = this.data.tool.label; // the tool the server last sent (tests wait on it)
    this.draw();
  }

  showPicture(frame) {
    let img = null;
    for (const pic of frame ? [frame.detail, frame.picture] : []) {
      const candidate = pic && this.images.get(pic.key);
      if (candidate && candidate.dataset.ready === "1") { img = candidate; break; }
    }
    if (img !== null) {
      if (img !== this.picture) {
        this.view.replaceChild(img, this.picture);
        this.picture = img;
      }
      this.picture.dataset.index = String(frame.index);
      this.picture.dataset.film = String(this.data.film);
    }
    // The previous picture stays until the new one is decoded: dimmed only when it is another frame's.
    this.view.classList.toggle("rc-loading", !this.showing(this.target));
    const [w, h] = this.data.canvas;
    const natural = this.picture.naturalWidth || w;
    this.picture.style.width = `${w}px`;
    this.picture.style.height = `${h}px`;
    this.picture.style.transform = `scale(${this.zoom}) translate(${-this.ox}px, ${-this.oy}px)`;
    // Pixels stay sharp squares once one covers more than a screen pixel (as in the magnifier).
    this.picture.style.imageRendering = (w * this.zoom) / natural >= 1 ? "pixelated" : "auto";
  }

  showing(index) { // whether the picture shown is frame `index`'s (of this film)
    return this.picture.dataset.index === String(index) && this.picture.dataset.film === String(this.data.film);
  }

  draw() {
    const ctx = this.ink.getContext("2d");
    const dpr = this.ink.width / this.data.canvas[0];
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.ink.width, this.ink.height);
    const s = dpr * this.zoom;
    ctx.setTransform(s, 0, 0, s, -this.ox * s, -this.oy * s);
    const frame = this.frameAt(this.target);
    for (const drawing of this.drawings.values()) { // saved ones not yet in the picture, then the current
      if (drawing.film !== this.data.film || drawing.index !== this.target) { continue; }
      for (const obj of drawing.objects) { this.drawObject(ctx, obj); }
    }
    if (this.active && this.active.index === this.target) { this.drawObject(ctx, this.active.obj); }
    if (this.polygon && this.polygon.index === this.target) { this.drawOpenPolygon(ctx); }
    if (frame && frame.index === this.data.index && this.data.magnifier) { this.drawMagnifier(ctx); }
  }

  drawObject(ctx, obj) {
    ctx.fillStyle = obj.fill || obj.stroke;
    ctx.strokeStyle = obj.stroke;
    ctx.beginPath();
    if (obj.type === "Path") {
      const points = obj.path.map((cmd) => [cmd[1], cmd[2]]);
      if (points.length === 1) {
        ctx.arc(points[0][0], points[0][1], obj.strokeWidth / 2, 0, 2 * Math.PI);
        ctx.fillStyle = obj.stroke;
        ctx.fill();
        return;
      }
      ctx.lineWidth = obj.strokeWidth;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
    } else if (obj.type === "Rect") {
      ctx.fillRect(obj.left, obj.top, obj.width, obj.height);
    } else if (obj.type === "Polygon") {
      obj.points.forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
      ctx.closePath();
      ctx.fill();
    } else if (obj.type === "Circle") {
      ctx.arc(obj.left + obj.radius, obj.top + obj.radius, obj.radius, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  drawOpenPolygon(ctx) {
    const { points, hover } = this.polygon;
    const colour = this.data.tool.colour;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = 1.5 / this.zoom;
    ctx.beginPath();
    [...points, ...(hover ? [hover] : [])].forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(points[0].x, points[0].y, CLOSE_PX / this.zoom, 0, 2 * Math.PI);
    ctx.stroke();
  }

  drawMagnifier(ctx) {
    const { x, y, size } = this.data.magnifier;
    const [sx, sy] = this.scale();
    const box = [(x - size / 2) / sx, (y - size / 2) / sy, size / sx, size / sy];
    ctx.lineWidth = 1 / this.zoom;
    ctx.setLineDash([4 / this.zoom, 4 / this.zoom]);
    ctx.strokeStyle = "#000";
    ctx.strokeRect(...box);
    ctx.lineDashOffset = 4 / this.zoom;
    ctx.strokeStyle = "#fff";
    ctx.strokeRect(...box);
    ctx.setLineDash([]);
    ctx.lineDashOffset = 0;
  }

  // --- the restorer's input -------------------------------------------------------------------------

  scale() { // canvas px -> image px
    return [this.data.image[0] / this.data.canvas[0], this.data.image[1] / this.data.canvas[1]];
  }

  point(e) { // pointer -> canvas px (floats: no rounding, so strokes keep full resolution)
    const rect = this.view.getBoundingClientRect();
    const css = this.data.canvas[0] / rect.width; // 1 unless the page itself is scaled
    return { x: this.ox + ((e.clientX - rect.left) * css) / this.zoom, y: this.oy + ((e.clientY - rect.top) * css) / this.zoom };
  }

  clampView() {
    const [w, h] = this.data.canvas;
    this.ox = Math.min(Math.max(this.ox, 0), w - w / this.zoom);
    this.oy = Math.min(Math.max(this.oy, 0), h - h / this.zoom);
  }

  wheel(e) {
    if (!this.data) { return; }
    if (this.zoom === 1 && e.deltaY > 0) { return; } // not zoomed in: the page scrolls on down past it
    e.preventDefault();
    const p = this.point(e);
    const zoom = Math.min(Math.max(this.zoom * Math.exp(-e.deltaY * WHEEL_RATE), 1), ZOOM_MAX);
    // The canvas point under the pointer stays under it.
    this.ox = p.x - (p.x - this.ox) * (this.zoom / zoom);
    this.oy = p.y - (p.y - this.oy) * (this.zoom / zoom);
    this.zoom = zoom;
    this.clampView();
    this.render();
  }

  key(e, pressed) {
    if (e.key === " " && !typing(e.target)) {
      if (pressed ? !this.hover : !this.spaceHeld) { return; }
      e.preventDefault(); // over the canvas, space pans instead of scrolling the page
      this.spaceHeld = pressed;
      this.view.classList.toggle("rc-pan", pressed);
    } else if (pressed && e.key === "Escape" && this.polygon) {
      this.polygon = null;
      this.draw();
    }
  }

  down(e) {
    if (!this.data) { return; }
    if (e.button === 1 || (e.button === 0 && this.spaceHeld)) {
      e.preventDefault();
      this.ink.setPointerCapture(e.pointerId);
      this.panning = { x: e.clientX, y: e.clientY, ox: this.ox, oy: this.oy };
      return;
    }
    if (e.button !== 0) { return; }
    const p = this.point(e);
    if (e.shiftKey) {
      const [sx, sy] = this.scale();
      this.magnify = { x: p.x * sx, y: p.y * sy, n: this.seq + 1 };
      this.send();
      return;
    }
    const frame = this.frameAt(this.target);
    // A frame not loaded yet (or unreadable) takes no drawing, nor one whose picture is not decoded yet:
    // the stroke would be aimed at the previous frame's picture.
    if (!frame || !frame.token || !this.showing(frame.index)) { return; }
    const { mode, colour, brush, radius } = this.data.tool;
    const index = frame.index;
    const size = this.size();
    if (mode === "polygon") { this.polygonClick(index, size, p, e); return; }
    if (mode === "point") {
      this.commit(index, size, { type: "Circle", left: p.x - radius, top: p.y - radius, width: 2 * radius,
        height: 2 * radius, radius: radius, strokeWidth: 0, stroke: colour, fill: colour });
      return;
    }
    this.ink.setPointerCapture(e.pointerId); // a drag past the edge keeps going (clipped on the server)
    if (mode === "rect") {
      this.active = { index, size, start: p, obj: { type: "Rect", left: p.x, top: p.y, width: 0, height: 0,
        strokeWidth: 0, stroke: colour, fill: colour } };
    } else {
      this.active = { index, size, obj: { type: "Path", stroke: colour, fill: null, strokeWidth: brush,
        path: [["M", p.x, p.y]] } };
    }
    this.draw();
  }

  size() { // the canvas size a shape's coordinates are in
    return this.data.canvas.join("x");
  }

  polygonClick(index, size, p, e) {
    if (!this.polygon || this.polygon.index !== index) {
      this.polygon = { index, size, points: [p], hover: null };
    } else {
      const first = this.polygon.points[0];
      const near = Math.hypot(first.x - p.x, first.y - p.y) * this.zoom <= CLOSE_PX;
      if (near && this.polygon.points.length >= 3) {
        const { colour } = this.data.tool;
        const points = this.polygon.points;
        this.polygon = null;
        this.commit(index, size, { type: "Polygon", points, strokeWidth: 0, stroke: colour, fill: colour });
        return;
      }
      this.polygon.points.push(p);
    }
    e.preventDefault();
    this.draw();
  }

  move(e) {
    if (!this.data) { return; }
    if (this.panning) {
      const rect = this.view.getBoundingClientRect();
      const css = this.data.canvas[0] / rect.width / this.zoom;
      this.ox = this.panning.ox - (e.clientX - this.panning.x) * css;
      this.oy = this.panning.oy - (e.clientY - this.panning.y) * css;
      this.clampView();
      this.render();
      return;
    }
    const p = this.point(e);
    if (this.polygon) { this.polygon.hover = p; this.draw(); }
    if (!this.active) { return; }
    const obj = this.active.obj;
    if (obj.type === "Rect") {
      const s = this.active.start;
      Object.assign(obj, { left: Math.min(s.x, p.x), top: Math.min(s.y, p.y), width: Math.abs(p.x - s.x),
        height: Math.abs(p.y - s.y) });
    } else {
      obj.path.push(["L", p.x, p.y]);
    }
    this.draw();
  }

  up(e) {
    if (this.panning) { this.panning = null; return; }
    if (this.active) { this.move(e); }
    this.finish();
  }

  finish() {
    if (!this.active) { return; }
    const { index, size, obj } = this.active;
    this.active = null;
    if (obj.type === "Rect" && (obj.width <= 0 || obj.height <= 0)) { this.draw(); return; }
    this.commit(index, size, obj);
  }

  // --- to the server --------------------------------------------------------------------------------

  commit(index, size, obj) {
    // A shape begun at another canvas size (a zoom chosen meanwhile) is in the wrong coordinates: dropped.
    if (size !== this.size()) { this.draw(); return; }
    // The frame's token now: a save on this frame meanwhile gave it a new one (its mask as now stored).
    const frame = this.frameAt(index);
    if (!frame || !frame.token) { this.draw(); return; }
    let drawing = this.drawings.get(frame.token);
    if (!drawing) {
      drawing = { token: frame.token, film: this.data.film, index, seq: 0, objects: [] };
      this.drawings.set(frame.token, drawing);
    }
    drawing.objects.push(obj);
    drawing.seq = this.seq + 1;
    this.send(); // at once, on mouse-up
    this.draw();
  }

  step(delta) {
    if (!this.data) { return; }
    const target = Math.min(Math.max(this.target + delta, 0), this.data.count - 1);
    if (target === this.target) { return; }
    this.finish(); // a stroke still held goes to the frame it was drawn on
    this.target = target;
    this.polygon = null;
    this.navSeq = this.seq + 1;
    this.send();
    this.render(); // the prefetched picture and label now; the server follows
  }

  send() {
    this.seq += 1;
    const drawings = [...this.drawings.values()].filter((d) => d.seq > this.acked)
      .map((d) => ({ token: d.token, seq: d.seq, objects: d.objects }));
    this.evict(this.wanted(), new Set()); // what it says it holds, it keeps until the next send
    this.have = new Set(this.images.keys());
    this.setState("review", { seq: this.seq, film: this.data.film, target: this.target, nav: this.navSeq,
      drawings, magnify: this.magnify, have: [...this.have] });
  }
}

export default function mount(component) {
  const { parentElement, data, setStateValue } = component;
  if (data && data.more) { // the second instance: frames for the canvas, nothing drawn
    window.__correlnetMore = data;
    if (window.__correlnetCanvas) { window.__correlnetCanvas.more(data); }
    return undefined;
  }
  let canvas = INSTANCES.get(parentElement);
  if (!canvas) {
    canvas = new ReviewCanvas(parentElement);
    INSTANCES.set(parentElement, canvas);
  }
  canvas.setState = setStateValue;
  canvas.update(data);
  return () => {
    // Streamlit also calls this for a render a newer one replaced while the element stays: keep the
    // instance (its zoom, its unsent strokes) for as long as its root is in the page.
    setTimeout(() => {
      if (!parentElement.isConnected) {
        canvas.dispose();
        INSTANCES.delete(parentElement);
      }
    }, 0);
  };
}
