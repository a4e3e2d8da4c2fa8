"""End to end in a real browser: Debian's chromium driven by Selenium against a live server.

The server runs in a thread on 127.0.0.1 (a free port) with the tiny random model, so the
whole module takes seconds; set ``HEADSCOPE_DASHBOARD_MODEL=smollm2-135m`` to drive the real
model instead (slower on CPU). Screenshots of each view go to ``artifacts/screenshots/``
(git-ignored; ``HEADSCOPE_SCREENSHOTS`` overrides) for a person to look at.

Needs: ``apt-get install -y chromium chromium-driver`` and ``pip install selenium``; without
them the module is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from tests.apps.browser import SCREENSHOTS, chromium, require_browser, served

webdriver = require_browser()

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from apps.heads_dashboard.app import create_app  # noqa: E402
from apps.heads_dashboard.layout import ID  # noqa: E402
from apps.heads_dashboard.settings import DashboardSettings  # noqa: E402
from probe import load_model  # noqa: E402
from tests.apps.conftest import tiny_model  # noqa: E402

MODEL = os.environ.get("HEADSCOPE_DASHBOARD_MODEL", "tiny")
PROMPT = "When Mary and John went to the store, John gave a drink to"
LONG_TOKENS = 40  # summary views above this (small, so the long-input case stays cheap)
TIMEOUT = 120 if MODEL != "tiny" else 45
SLOW_TOKENS, SLOW_SECONDS = 150, 60.0
"""Forwards of more than SLOW_TOKENS tokens sleep SLOW_SECONDS first: the deliberately long job."""
SLOW_PROMPT = "Once upon a time the river ran backwards. " * 20


def slow_on_long_inputs(model):
    """``model`` whose forward sleeps first on inputs longer than SLOW_TOKENS (in the job process)."""
    def pause(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[-1] > SLOW_TOKENS:
            time.sleep(SLOW_SECONDS)

    model.hf.register_forward_pre_hook(pause, with_kwargs=True)
    return model


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    loader = (lambda _: slow_on_long_inputs(tiny_model())) if MODEL == "tiny" else load_model
    app = create_app(DashboardSettings(model=MODEL, long_input_tokens=LONG_TOKENS), loader=loader,
                     job_folder=tmp_path_factory.mktemp("dashboard-jobs"))
    with served(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def page(browser, server_url):
    """The dashboard open in the browser, with its model loaded."""
    browser.get(server_url)
    _wait_text(browser, ID.MODEL_STATUS, "layers x")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return browser


def _el(browser, element_id: str):
    return browser.find_element(By.ID, element_id)


def _wait(browser, condition, what: str):
    """Poll ``condition``; plotly redraws replace elements, so a stale reference means "again"."""
    return WebDriverWait(browser, TIMEOUT, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message=f"waiting for {what}")


def _texts(browser, selector: str) -> list[str]:
    """Texts of every element matching ``selector``, read in one script call (no stale handles)."""
    return browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);", selector)


def _wait_text(browser, element_id: str, text: str):
    _wait(browser, lambda d: text in _el(d, element_id).text, f"{text!r} in #{element_id}")


def _graph_title(browser, graph_id: str) -> str:
    titles = browser.find_elements(By.CSS_SELECTOR, f"#{graph_id} .gtitle")
    return titles[0].text if titles else ""


def _wait_title(browser, graph_id: str, text: str):
    _wait(browser, lambda d: text in _graph_title(d, graph_id), f"{text!r} in the title of #{graph_id}")


def _shoot(browser, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    assert browser.save_screenshot(str(path)), f"could not save {path}"
    return path


def _run_prompt(browser, text: str):
    box = _el(browser, ID.PROMPT)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if text:
        browser.execute_script(  # send_keys of hundreds of words is slow; set the value as React sees it
            "const el = arguments[0]; const set = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;"
            "set.call(el, arguments[1]); el.dispatchEvent(new Event('input', {bubbles: true}));", box, text)
    _el(browser, ID.RUN).click()


def _set_number(browser, element_id: str, value):
    """Replace a box's text with ``value`` ("" empties it) and commit it (Enter)."""
    box = _el(browser, element_id)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(str(value), Keys.ENTER)


def _job_processes() -> set[int]:
    """Pids of this test process's live forked children (background jobs share its command line;
    chromium does not)."""
    me = psutil.Process()
    pids = set()
    for child in me.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline() == me.cmdline():
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def _occurrences(browser, text: str) -> int:
    return browser.execute_script("return document.body.innerText.split(arguments[0]).length - 1;", text)


def _click_cell(browser, layer: int, head: int, n_layers: int, n_heads: int):
    """Click the heatmap cell of (layer, head): heads run left to right, layers top to bottom."""
    area = browser.find_element(By.CSS_SELECTOR, f"#{ID.GRID} .nsewdrag")
    width, height = area.size["width"], area.size["height"]
    dx = (head + 0.5) / n_heads * width - width / 2
    dy = (layer + 0.5) / n_layers * height - height / 2
    ActionChains(browser).move_to_element_with_offset(area, int(dx), int(dy)).click().perform()


def _geometry(server_url_model: str) -> tuple[int, int]:
    return (3, 5) if server_url_model == "tiny" else (30, 9)


def test_prompt_heatmap_head_pattern_and_edit_comparison(page):
    n_layers, n_heads = _geometry(MODEL)
    _run_prompt(page, PROMPT)
    _wait_text(page, ID.PROMPT_INFO, "tokens · full patterns")
    assert page.find_elements(By.CSS_SELECTOR, f"#{ID.GRID} .hm, #{ID.GRID} image"), "no heatmap drawn"
    assert _el(page, ID.PROMPT_MESSAGE).text == ""
    _shoot(page, "1_heatmap")

    layer, head = n_layers - 1, n_heads - 2
    _click_cell(page, layer, head, n_layers, n_heads)
    _wait_title(page, ID.HEAD_GRAPH, f"layer {layer}, head {head}")
    assert _el(page, ID.LAYER).get_attribute("value") == str(layer)
    assert _el(page, ID.HEAD).get_attribute("value") == str(head)
    ticks = [t.text for t in page.find_elements(By.CSS_SELECTOR, f"#{ID.HEAD_GRAPH} .xtick text")]
    assert "Mary" in " ".join(ticks), f"key tick labels are not the tokens: {ticks}"
    spans = _el(page, ID.HEAD_TOKENS).find_elements(By.TAG_NAME, "span")
    assert "".join(s.text for s in spans).replace(" ", "") == PROMPT.replace(" ", "")
    _shoot(page, "2_head_pattern")

    page.find_element(By.CSS_SELECTOR, f"#{ID.EDIT_ACT} input[type=checkbox]").click()
    _wait_title(page, ID.EDIT_COMPARE, "before / after ACT calibration")
    _wait_title(page, ID.EDIT_NEXT, "next-token probability")
    legend = [t.text for t in page.find_elements(By.CSS_SELECTOR, f"#{ID.EDIT_NEXT} .legendtext")]
    assert legend == ["before", "after: ACT calibration"]
    subplots = page.find_elements(By.CSS_SELECTOR, f"#{ID.EDIT_COMPARE} .subplot")
    assert len(subplots) == 3, "before, after and their difference"
    assert "every head of layers 2 and up" in _el(page, ID.EDIT_ACT_NOTE).text
    page.execute_script("document.getElementById(arguments[0]).scrollIntoView()", ID.EDIT_MESSAGE)
    _shoot(page, "3_edit_comparison")
    page.find_element(By.CSS_SELECTOR, f"#{ID.EDIT_ACT} input[type=checkbox]").click()  # edits off again
    page.execute_script("window.scrollTo(0, 0)")


def test_act_head_picker_typed_and_from_a_search_file(page, tmp_path):
    n_layers, n_heads = _geometry(MODEL)
    _run_prompt(page, PROMPT)
    _wait_text(page, ID.PROMPT_INFO, "full patterns")
    page.find_element(By.CSS_SELECTOR, f"#{ID.EDIT_ACT} input[type=checkbox]").click()
    _set_number(page, ID.EDIT_ACT_HEADS, f"{n_layers - 1}.{n_heads - 1}")
    _wait_title(page, ID.EDIT_COMPARE, f"ACT on L{n_layers - 1}.H{n_heads - 1}")

    result = tmp_path / "act_search.jsonl"  # the format `headscope act search --out` writes
    result.write_text("\n".join(json.dumps(r) for r in [
        {"kind": "baseline", "accuracy": 0.5, "logprob": -1.0, "n": 8},
        {"layer": 1, "head": 2, "accuracy": 0.75, "logprob": -0.9, "skipped": False},
        {"kind": "selected", "heads": [[1, 2], [2, 0]], "seconds": 1.0, "resumed": 0}]) + "\n")
    page.find_element(By.CSS_SELECTOR, f"#{ID.EDIT_ACT_FILE} input[type=file]").send_keys(str(result))
    _wait(page, lambda d: _el(d, ID.EDIT_ACT_HEADS).get_attribute("value") == "1.2, 2.0", "the file's heads in the box")
    _wait_title(page, ID.EDIT_COMPARE, "ACT on L1.H2, L2.H0")
    assert _el(page, ID.EDIT_MESSAGE).text == ""
    page.execute_script("document.getElementById(arguments[0]).scrollIntoView()", ID.EDIT_ACT)
    _shoot(page, "7_act_heads_from_search")

    _set_number(page, ID.EDIT_ACT_HEADS, "")
    page.find_element(By.CSS_SELECTOR, f"#{ID.EDIT_ACT} input[type=checkbox]").click()  # edits off again
    page.execute_script("window.scrollTo(0, 0)")


def test_bad_input_shows_a_message_and_the_server_keeps_serving(page):
    n_layers, n_heads = _geometry(MODEL)
    _run_prompt(page, PROMPT)
    _wait_text(page, ID.PROMPT_INFO, "full patterns")

    _set_number(page, ID.HEAD, n_heads + 2)
    _wait_text(page, ID.HEAD_MESSAGE, f"head {n_heads + 2} does not exist")
    _shoot(page, "4_bad_head")

    _run_prompt(page, "")
    _wait_text(page, ID.PROMPT_MESSAGE, "the prompt is empty")

    context = 300 if MODEL == "tiny" else 8192
    _run_prompt(page, "word " * (context + 10))
    _wait_text(page, ID.PROMPT_MESSAGE, "longer than the model's context window")
    assert _occurrences(page, "longer than the model's context window") == 1, "the error is shown once"
    assert "context window" not in _el(page, ID.HEAD_MESSAGE).text
    _shoot(page, "5_prompt_too_long")

    _set_number(page, ID.EDIT_HEADS, "1.2")
    _set_number(page, ID.EDIT_FACTOR, "nan")
    _el(page, ID.EDIT_APPLY).click()
    _wait_text(page, ID.EDIT_MESSAGE, "the factor must be a finite number")
    assert _occurrences(page, "the factor must be a finite number") == 1
    _set_number(page, ID.EDIT_HEADS, "")
    _set_number(page, ID.EDIT_FACTOR, "0")

    _set_number(page, ID.HEAD, 1)
    _run_prompt(page, PROMPT)  # still serving: a good prompt works again, and the stale message goes
    _wait_text(page, ID.PROMPT_INFO, "full patterns")
    _wait(page, lambda d: _el(d, ID.PROMPT_MESSAGE).text == "" and _el(d, ID.HEAD_MESSAGE).text == "", "messages cleared")


def test_a_short_prompt_is_not_held_up_by_a_long_one_and_cancel_stops_it(page, browser):
    """Two sessions (tabs): one runs a deliberately slow capture, the other a short prompt."""
    if MODEL != "tiny":
        pytest.skip("the slow job is the tiny model's deliberately slow forward")
    long_tab = browser.current_window_handle
    earlier_jobs = _job_processes()
    _run_prompt(page, SLOW_PROMPT)
    try:
        _wait_text(page, ID.PROGRESS, "capturing")
        assert not _el(page, ID.RUN).is_enabled() and _el(page, ID.CANCEL).is_enabled()
        _shoot(page, "8_long_capture_running")
        long_jobs = _job_processes() - earlier_jobs
        assert len(long_jobs) == 1, f"one job process for the long capture, found {long_jobs}"

        url = browser.current_url
        browser.switch_to.new_window("tab")
        browser.get(url)
        _wait_text(browser, ID.MODEL_STATUS, "layers x")
        started = time.monotonic()
        _run_prompt(browser, "a short prompt of a few words")
        _wait_text(browser, ID.PROMPT_INFO, "tokens · full patterns")
        short_s = time.monotonic() - started
        assert short_s < SLOW_SECONDS / 3, f"the short prompt took {short_s:.1f} s beside a {SLOW_SECONDS:.0f} s job"
        _shoot(browser, "9_short_prompt_beside_long")
        browser.close()
        browser.switch_to.window(long_tab)
        assert "capturing" in _el(page, ID.PROGRESS).text, "the long job still runs"
    finally:
        browser.switch_to.window(long_tab)
        if _el(page, ID.CANCEL).is_enabled():
            _el(page, ID.CANCEL).click()
    _wait_text(page, ID.PROMPT_MESSAGE, "cancelled")
    _wait(page, lambda d: _el(d, ID.RUN).is_enabled() and _el(d, ID.PROGRESS).text == "", "Run enabled again")
    _wait(page, lambda d: not (long_jobs & _job_processes()), "the cancelled job's process gone")
    _shoot(page, "10_cancelled")


def test_long_inputs_show_summary_views(page):
    _run_prompt(page, "The old lighthouse keeper watched the storm roll in over the grey sea. " * 5)
    _wait_text(page, ID.PROMPT_INFO, "summary views (long input)")
    _set_number(page, ID.LAYER, 1)
    _set_number(page, ID.HEAD, 2)
    _wait_title(page, ID.HEAD_GRAPH, "(summary: long input)")
    wanted = ("mean attention received per key (keys seen by < 4 queries blank: 3)", "entropy per query (nats)")
    # Fails with a TimeoutException naming what was missing.
    _wait(page, lambda d: set(wanted) <= set(_texts(d, f"#{ID.HEAD_GRAPH} .annotation-text")),
          "the summary subplot titles, with the few-query guard's count")
    _shoot(page, "6_long_input_summary")


def _pick(browser, dropdown_id: str, label: str):
    """Choose ``label`` in a dcc.Dropdown (Dash 4: a button that opens a list of role=option items)."""
    _el(browser, dropdown_id).click()
    option = _wait(browser, lambda d: [o for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                                       if o.text == label and o.is_displayed()], f"option {label!r}")[0]
    browser.execute_script("arguments[0].click();", option)  # the list's search box may lie over it while it opens
    _wait(browser, lambda d: label in _el(d, dropdown_id).text, f"{label!r} chosen")
    browser.find_element(By.TAG_NAME, "h2").click()  # close the list


def _radio(browser, radio_id: str, label: str):
    for item in browser.find_elements(By.CSS_SELECTOR, f"#{radio_id} label"):
        if item.text.strip() == label:
            item.click()
            return
    raise AssertionError(f"no {label!r} in #{radio_id}")


def _tick(browser, checklist_id: str):
    browser.find_element(By.CSS_SELECTOR, f"#{checklist_id} input[type=checkbox]").click()


def _scroll_to(browser, element_id: str):
    browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()", element_id)


def test_researcher_features_end_to_end(page, server_url):
    """Issue 20's features in one page, in sequence (screenshots 11-17)."""
    n_layers, n_heads = _geometry(MODEL)
    _run_prompt(page, PROMPT)
    _wait_text(page, ID.PROMPT_INFO, "tokens · full patterns")

    # 1. target and foil: the logit difference before/after an edit, DLA and ablation as heatmap metrics
    _set_number(page, ID.TARGET, " Mary")
    _set_number(page, ID.FOIL, " John")
    _wait_title(page, ID.LOGIT_DIFF, "logit(' Mary') − logit(' John')")
    _tick(page, ID.EDIT_ACT)
    _wait_title(page, ID.LOGIT_DIFF, "→")  # before → after the edit
    _el(page, ID.SCORES_RUN).click()
    _wait(page, lambda d: _el(d, ID.SCORES_RUN).is_enabled() and _el(d, ID.SCORES_PROGRESS).text == "", "scores done")
    _pick(page, ID.METRIC, "direct logit attribution (target − foil)")
    _wait_title(page, ID.GRID, "direct logit attribution: logit(' Mary') − logit(' John') under ACT")
    assert _el(page, ID.SCORES_MESSAGE).text == ""
    _shoot(page, "11_target_foil_dla")
    _pick(page, ID.METRIC, "ablation effect (zero or mean, target − foil)")
    _wait_title(page, ID.GRID, "zero-ablation effect")
    _tick(page, ID.EDIT_ACT)  # edits off
    page.execute_script("window.scrollTo(0, 0)")

    # 2. token-conditioned: click a key token -> attention query -> key per head; shade from the hovered query
    spans = _el(page, ID.HEAD_TOKENS).find_elements(By.TAG_NAME, "span")
    mary = next(i for i, s in enumerate(spans) if s.text.strip() == "Mary")
    spans[mary].click()
    _wait_title(page, ID.GRID, f"({mary})")
    assert "attention" in _graph_title(page, ID.GRID) and f"key ' Mary' ({mary})" in _el(page, ID.QK_INFO).text
    _radio(page, ID.SHADE, "attention from a token")
    area = page.find_element(By.CSS_SELECTOR, f"#{ID.HEAD_GRAPH} .nsewdrag")
    n_tokens = len(spans)
    query = 4  # hover over query row 4: later tokens cannot be attended to
    dy = (query + 0.5) / n_tokens * area.size["height"] - area.size["height"] / 2
    ActionChains(page).move_to_element_with_offset(area, 0, int(dy)).perform()
    _wait(page, lambda d: "transparent" in (_el(d, ID.HEAD_TOKENS).find_elements(By.TAG_NAME, "span")[query + 1]
                                            .get_attribute("style")), "tokens after the hovered query unshaded")
    _shoot(page, "12_token_conditioned")
    # hover on the strip itself (shaded in the browser): attention from token 2, so token 3 goes blank
    strip = lambda d: _el(d, ID.HEAD_TOKENS).find_elements(By.TAG_NAME, "span")  # noqa: E731
    served_colour = strip(page)[3].get_attribute("style")
    assert "transparent" not in served_colour  # row 4 shades token 3

    def hovered_token_2(d):  # re-hover each poll: a late strip redraw from the figure's hover may land first
        ActionChains(d).move_to_element(strip(d)[1]).move_to_element(strip(d)[2]).perform()
        return "transparent" in strip(d)[3].get_attribute("style")

    _wait(page, hovered_token_2, "tokens after the hovered strip token unshaded")
    _shoot(page, "12b_strip_hover")
    ActionChains(page).move_to_element(_el(page, ID.QK_INFO)).perform()
    _wait(page, lambda d: "transparent" not in strip(d)[3].get_attribute("style"), "the server's shading back")
    _radio(page, ID.SHADE, "attention received")

    # 3. all heads of the layer (log scale), and after minus before
    _radio(page, ID.VIEW, "all heads of the layer")
    _radio(page, ID.SCALE, "log")
    _wait_title(page, ID.HEAD_GRAPH, "all heads (log scale)")
    assert len(page.find_elements(By.CSS_SELECTOR, f"#{ID.HEAD_GRAPH} .subplot")) >= n_heads
    _shoot(page, "13_layer_grid_log")
    _radio(page, ID.SCALE, "linear")
    _tick(page, ID.EDIT_ACT)
    _radio(page, ID.VIEW, "after − before (edit)")
    _wait_title(page, ID.HEAD_GRAPH, "after − before")
    _shoot(page, "14_diff_view")
    _tick(page, ID.EDIT_ACT)
    _radio(page, ID.VIEW, "this head")
    _pick(page, ID.METRIC, "first-token share")

    # 5. long inputs: guarded summary, hide the first token, a windowed full pattern
    _run_prompt(page, "The old lighthouse keeper watched the storm roll in over the grey sea. " * 5)
    _wait_text(page, ID.PROMPT_INFO, "summary views (long input)")
    _tick(page, ID.HIDE_FIRST)
    _set_number(page, ID.WINDOW_RANGE, "-8:")
    _el(page, ID.WINDOW_RUN).click()
    _wait_title(page, ID.WINDOW_GRAPH, "(window): queries")
    _wait(page, lambda d: any("blank:" in t for t in _texts(d, f"#{ID.HEAD_GRAPH} .annotation-text")), "the guard")
    _scroll_to(page, ID.HEAD_GRAPH)
    _shoot(page, "15_long_input_window")
    _tick(page, ID.HIDE_FIRST)
    page.execute_script("window.scrollTo(0, 0)")

    # 4. a data set: the 48 IOI prompts, attention END -> IO averaged over prompts
    _el(page, ID.DATASET_EXAMPLE).click()
    _wait_text(page, ID.DATASET_INFO, "48 prompts")
    _el(page, ID.DATASET_RUN).click()
    _wait_title(page, ID.DATASET_GRAPH, "mean attention END → IO over 48 prompts")
    _scroll_to(page, ID.DATASET_INFO)
    _shoot(page, "16_dataset_ioi")
    page.execute_script("window.scrollTo(0, 0)")

    # 6. the page state in the URL: reload restores prompt, metric, head, edits, target/foil
    _run_prompt(page, PROMPT)
    _wait_text(page, ID.PROMPT_INFO, "full patterns")
    _set_number(page, ID.LAYER, n_layers - 1)
    _set_number(page, ID.HEAD, 1)
    _pick(page, ID.METRIC, "mean entropy (nats)")
    _set_number(page, ID.EDIT_ACT_HEADS, "1.2")
    _tick(page, ID.EDIT_ACT)
    _wait_title(page, ID.EDIT_COMPARE, "ACT on L1.H2")
    _radio(page, ID.SHADE, "attention to a token")
    _set_number(page, ID.WINDOW_RANGE, "-5:")
    _wait(page, lambda d: all(part in d.current_url for part in ("act_heads=1.2", "metric=mean_entropy", "shade=to",
                                                                 "window=-5%3A", "dataset=ioi")), "state in the URL")
    link = page.current_url
    page.get(link)
    _wait_text(page, ID.PROMPT_INFO, "full patterns")
    _wait_title(page, ID.EDIT_COMPARE, f"layer {n_layers - 1}, head 1: before / after ACT on L1.H2")
    assert _el(page, ID.PROMPT).get_attribute("value") == PROMPT
    assert _el(page, ID.TARGET).get_attribute("value") == " Mary" and _el(page, ID.FOIL).get_attribute("value") == " John"
    assert "mean entropy" in _graph_title(page, ID.GRID)
    assert _el(page, ID.WINDOW_RANGE).get_attribute("value") == "-5:"
    assert page.find_element(By.CSS_SELECTOR, f"#{ID.SHADE} input[value='to']").is_selected()
    _wait_text(page, ID.DATASET_INFO, "48 prompts")  # the IOI example opened again
    _shoot(page, "17_url_restored")
    _tick(page, ID.EDIT_ACT)
    _radio(page, ID.SHADE, "attention received")
    _set_number(page, ID.EDIT_ACT_HEADS, "")
