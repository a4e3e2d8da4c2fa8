"""Browser latency of the heads dashboard: Run -> heatmap drawn, head click -> pattern drawn, edit tick -> comparison drawn.

Serves the app (as ``headscope dashboard`` does, on a thread) and drives Debian's headless Chromium
with Selenium. Times are taken inside the page: a capturing ``click`` listener stamps the user's click
(``performance.now()``) and each graph's ``plotly_afterplot`` event stamps its first draw after it,
so the figures include everything between the click and the drawn figure (callbacks, jobs, polls,
JSON, plotly) and nothing of Selenium's own round trips.

Each round uses a new prompt of the asked length (a cold capture), then clicks a head (cached) and
ticks ACT calibration (a new edited capture), and unticks it. Reports the median and the range.

Usage:
    python benchmarks/dashboard/bench_browser.py [--model smollm2-135m] [--tokens 64 512] [--rounds 5]

Needs chromium, chromium-driver and selenium (see tests/apps/browser.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.heads_dashboard.app import create_app  # noqa: E402
from apps.heads_dashboard.layout import ID  # noqa: E402
from apps.heads_dashboard.settings import DashboardSettings  # noqa: E402
from probe.model_names import DEFAULT_MODEL  # noqa: E402
from probe.models import load_model  # noqa: E402
from tests.apps.browser import chromium, served  # noqa: E402

BASE = ("The committee met on a grey morning to review the harbour plans. Each engineer brought drawings of "
        "the new pier, the breakwater and the lighthouse, and argued about costs, tides and the winter storms "
        "that had damaged the old wall. ")

ARM = """
const id = arguments[0];
window.__clicked = null; window.__draws = [];
document.addEventListener('click', () => { if (window.__clicked === null) window.__clicked = performance.now(); },
                          {capture: true, once: true});
const gd = document.querySelector('#' + id + ' .js-plotly-plot');
if (!gd.__benchHooked) {
  gd.on('plotly_afterplot', () => {
    const title = (gd.layout && gd.layout.title && gd.layout.title.text) || '';
    if (window.__clicked !== null) window.__draws.push([performance.now(), title]);
  });
  gd.__benchHooked = true;
}
"""


def prompt_of(tokenizer, n_tokens: int, round_: int) -> str:
    """A fresh prompt (round number first, so no capture is cached) of about ``n_tokens`` tokens."""
    text = f"Report {round_} of {time.time_ns()}. " + BASE * (n_tokens // 30 + 2)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    special = len(tokenizer("a")["input_ids"]) - len(tokenizer("a", add_special_tokens=False)["input_ids"])
    return tokenizer.decode(ids[: n_tokens - special])


def timed(driver, graph_id: str, act, wanted, timeout: float = 120.0) -> float:
    """Seconds from the click ``act()`` makes to the first draw of ``graph_id`` after it whose title
    satisfies ``wanted(title)`` (placeholders such as "computing…" drawn meanwhile do not count)."""
    driver.execute_script(ARM, graph_id)
    act()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clicked, draws = driver.execute_script("return [window.__clicked, window.__draws];")
        done = [t for t, text in draws if wanted(text)]
        if clicked is not None and done:
            return (done[0] - clicked) / 1000.0
        time.sleep(0.02)
    raise TimeoutError(f"#{graph_id} was not drawn within {timeout:.0f} s")


def set_prompt(driver, text: str) -> None:
    box = driver.find_element("id", ID.PROMPT)
    driver.execute_script(
        "const el = arguments[0]; const set = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;"
        "set.call(el, arguments[1]); el.dispatchEvent(new Event('input', {bubbles: true}));", box, text)


def click_cell(driver, layer: int, head: int, n_layers: int, n_heads: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    area = driver.find_element("css selector", f"#{ID.GRID} .nsewdrag")
    w, h = area.size["width"], area.size["height"]
    ActionChains(driver).move_to_element_with_offset(
        area, int((head + 0.5) / n_heads * w - w / 2), int((layer + 0.5) / n_layers * h - h / 2)).click().perform()


def title(driver, graph_id: str) -> str:
    found = driver.find_elements("css selector", f"#{graph_id} .gtitle")
    return found[0].text if found else ""


def wait_for(condition, timeout: float = 60.0) -> None:
    """Poll ``condition`` (an element not rendered yet, or replaced by a redraw, counts as false)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (NoSuchElementException, StaleElementReferenceException):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not settle")
        time.sleep(0.05)


def one_round(driver, tokenizer, n_tokens: int, round_: int, geometry) -> dict[str, float]:
    n_layers, n_heads = geometry
    text = prompt_of(tokenizer, n_tokens, round_)
    set_prompt(driver, text)
    run = timed(driver, ID.GRID, lambda: driver.find_element("id", ID.RUN).click(), lambda text: "share" in text)
    wait_for(lambda: "tokens" in driver.find_element("id", ID.PROMPT_INFO).text)
    layer, head = (round_ * 7 + 3) % n_layers, (round_ * 3 + 1) % n_heads
    head_s = timed(driver, ID.HEAD_GRAPH, lambda: click_cell(driver, layer, head, n_layers, n_heads),
                   lambda text: f"layer {layer}, head {head}" in text)
    box = driver.find_element("css selector", f"#{ID.EDIT_ACT} input[type=checkbox]")
    edit = timed(driver, ID.EDIT_COMPARE, box.click, lambda text: "before / after" in text)
    wait_for(lambda: "before / after" in title(driver, ID.EDIT_COMPARE))
    driver.find_element("css selector", f"#{ID.EDIT_ACT} input[type=checkbox]").click()
    wait_for(lambda: "before / after" not in title(driver, ID.EDIT_COMPARE))
    time.sleep(0.5)
    return {"run": run, "head": head_s, "edit": edit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sync-tokens", type=int, default=DashboardSettings.sync_tokens)
    args = parser.parse_args(argv)
    loaded = {}

    def loader(name: str):
        loaded["model"] = load_model(name)
        return loaded["model"]

    app = create_app(DashboardSettings(model=args.model, sync_tokens=args.sync_tokens), loader=loader)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; model {args.model}; "
          f"sync_tokens {args.sync_tokens}")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with served(app) as url, chromium() as driver:
        driver.get(url)
        wait_for(lambda: "layers x" in driver.find_element("id", ID.MODEL_STATUS).text, 600)
        holder_model = loaded["model"]
        geometry = (holder_model.geometry.n_layers, holder_model.geometry.n_heads)
        one_round(driver, holder_model.tokenizer, 16, 99, geometry)  # warm-up: first figures, plotly code
        for n_tokens in args.tokens:
            rows = [one_round(driver, holder_model.tokenizer, n_tokens, r, geometry) for r in range(args.rounds)]
            shown = driver.find_element("id", ID.PROMPT_INFO).text
            for name, what in (("run", "Run -> heatmap drawn (new prompt)"), ("head", "head click -> pattern drawn"),
                               ("edit", "ACT tick -> comparison drawn")):
                values = [r[name] for r in rows]
                print(f"{n_tokens:4d} tokens ({shown.split(' ·')[0]}): {what:36s} median {statistics.median(values):.3f} s"
                      f"  (min {min(values):.3f}, max {max(values):.3f}, {len(values)} rounds)")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
