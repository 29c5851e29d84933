"""The Review page's latency as a restorer sees it: the real app in Debian Chromium (Playwright), timed
inside the page with performance.now() (`python bench/webapp_latency.py --browser`).

- next: from the keydown of "j" to the first animation frame where the canvas's status line names the
  next frame and its picture element holds that frame's picture, loaded and decoded (the review canvas,
  webapp/review_canvas.py, swaps in a picture it decoded ahead; a frame outside what it holds would wait
  for the server and count here);
- save: from the mouse-up of a brush stroke to the first animation frame showing a new
  "Saved correction N" caption (the canvas sends the stroke at mouse-up).
"""

from __future__ import annotations

from pathlib import Path

BROWSER_STEPS = 20  # frames measured: next then save on each

# In the page: the canvas background's pixels (every 7th, through the components' shadow roots) and
# the two measurements. Each stores its result in window.__latency once the page shows the change.
PROBE = r"""
() => {
  function find(root, selector) {  // the first match, through the components' shadow roots
    const hit = root.querySelector(selector);
    if (hit) { return hit; }
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) { const inner = find(el.shadowRoot, selector); if (inner) { return inner; } }
    }
    return null;
  }
  function shown(index) {  // the picture shown for frame `index`, loaded and decoded, or null
    const img = find(document, ".rc-view img.rc-picture");
    return img && img.dataset.index === String(index) && img.dataset.ready === "1" && img.complete
      && img.naturalWidth > 0 ? img : null;
  }
  function texts(testid) {
    return Array.from(document.querySelectorAll(`[data-testid="${testid}"]`)).map((e) => e.innerText);
  }
  function until(done, then) {
    (function tick() { const t = done(); if (t) { then(t); } else { requestAnimationFrame(tick); } })();
  }
  window.__latencyNext = function (index) {
    window.__latency = null;
    let t0 = null, label = null;
    window.addEventListener("keydown", () => { t0 = performance.now(); }, { capture: true, once: true });
    until(() => {
      if (t0 === null) { return false; }
      const line = find(document, ".rc-label");
      if (label === null && line && line.innerText.includes(`(index ${index})`)) { label = performance.now(); }
      return label !== null && shown(index) !== null && performance.now();
    }, (t1) => { window.__latency = { label: label - t0, image: t1 - t0 }; });
  };
  window.__latencySave = function () {
    window.__latency = null;
    const saved = () => texts("stCaptionContainer").map((t) => (t.match(/Saved correction (\d+)/) || [])[1])
      .find((id) => id !== undefined);
    const before = saved();
    let t0 = null;
    window.addEventListener("mouseup", () => { t0 = performance.now(); }, { capture: true, once: true });
    until(() => t0 !== null && (s => s !== undefined && s !== before)(saved()) && performance.now(),
          (t1) => { window.__latency = { save: t1 - t0 }; });
  };
}
"""


def _settle(page) -> None:
    """Until the app has no run in progress and the canvas's sends are applied, then a little longer
    (a restorer looks at a frame before pressing on)."""
    from tests.browser_fixtures import app_idle, wait_for

    wait_for(lambda: app_idle(page) and not page.evaluate("window.__correlnetCanvas.busy()"), 60,
             "the app to finish its run")
    page.wait_for_timeout(500)


def _shown_index(page) -> int:
    return int(page.locator(".rc-view").get_attribute("data-index"))


def _measured(page, timeout_ms: float = 30_000) -> dict | None:
    """The probe's result, or None when the page never showed the change (a lost press or stroke)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => window.__latency !== null", timeout=timeout_ms)
    except PlaywrightTimeout:
        return None
    return page.evaluate("window.__latency")


def measure_in_browser(ws, tmp: Path, steps: int = BROWSER_STEPS) -> dict[str, list[float]]:
    """Serve the store `ws` (tests.webapp_fixtures.WebStore, >= steps + 1 predicted frames) and time
    `steps` next-frame presses and stroke saves in Chromium: ms per step under "next", "label" and
    "save"; "lost" counts the presses and strokes the page never showed (not timed)."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser_fixtures import drag, launch_chromium, serve_app

    out: dict[str, list[float]] = {"next": [], "label": [], "save": [], "lost": [0.0]}
    with serve_app(ws.env, tmp, worker=False) as url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/review")
        canvas = page.locator("canvas.rc-ink").first
        expect(canvas).to_be_visible(timeout=120_000)
        expect(page.get_by_text("(index 0)")).to_be_visible(timeout=60_000)
        _settle(page)
        page.evaluate(PROBE)
        for k in range(steps):
            page.evaluate(f"window.__latencyNext({_shown_index(page) + 1})")
            page.keyboard.press("j")
            if (result := _measured(page)) is None:
                out["lost"][0] += 1
            else:
                out["next"].append(result["image"])
                out["label"].append(result["label"])
            _settle(page)
            page.evaluate("window.__latencySave()")
            y = 60 + 20 * k
            drag(page, canvas.bounding_box(), (100, y), (400, y))
            if (result := _measured(page)) is None:
                out["lost"][0] += 1
            else:
                out["save"].append(result["save"])
            _settle(page)
        browser.close()
    return out
