"""The vision panel in a real browser (Debian's chromium through Selenium) on synth-llava.

The page's main model is the tiny random Llama (the panel does not need it); the panel loads
synth-llava on its first run (about 15 s; its first load on a machine also assembles and caches
it). A bad upload is refused with one message and no model work; then a world scene runs and the
overlay (image and heatmap) and the caption are drawn. Screenshots go to
``artifacts/screenshots/`` (``HEADSCOPE_SCREENSHOTS`` overrides): ``7_vision_bad_upload.png``,
``8_vision_panel.png``, ``9_vision_paint.png`` (PAINT chosen: its tokens framed, the captions before
and after).

Needs: ``apt-get install -y chromium chromium-driver`` and ``pip install selenium``; without
them the module is skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apps.browser import SCREENSHOTS, chromium, require_browser, served

webdriver = require_browser()

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from apps.heads_dashboard.app import create_app  # noqa: E402
from apps.heads_dashboard.panels.vision import VID  # noqa: E402
from apps.heads_dashboard.settings import DashboardSettings  # noqa: E402
from probe import load_model  # noqa: E402
from tests.apps.conftest import tiny_model  # noqa: E402

pytestmark = pytest.mark.real_model

TIMEOUT = 180  # the first run loads synth-llava and runs a capture, a lockstep pass and a caption


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    app = create_app(DashboardSettings(model="tiny"), loader=lambda _: tiny_model(), vision_loader=load_model)
    with served(app) as url, chromium() as driver:
        driver.get(url)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        yield driver


def _wait(browser, condition, what: str):
    return WebDriverWait(browser, TIMEOUT, poll_frequency=0.25,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message=f"waiting for {what}")


def _text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _shoot(browser, element_id: str, name: str) -> Path:
    browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()", element_id)
    path = SCREENSHOTS / f"{name}.png"
    assert browser.save_screenshot(str(path)), f"could not save {path}"
    return path


def test_a_bad_upload_is_one_message_and_a_world_scene_draws_overlay_and_caption(page, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"this is not a picture")
    _wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{VID.UPLOAD} input[type=file]"), "the panel to render")
    page.find_element(By.CSS_SELECTOR, f"#{VID.UPLOAD} input[type=file]").send_keys(str(not_an_image))
    _wait(page, lambda d: "uploaded: notes.png" in _text(d, VID.UPLOAD_NAME), "the upload's name")
    page.find_element(By.ID, VID.RUN).click()
    _wait(page, lambda d: "'notes.png' is not an image PIL can read" in _text(d, VID.MESSAGE), "the bad-upload message")
    _shoot(page, VID.MESSAGE, "7_vision_bad_upload")

    page.find_element(By.CSS_SELECTOR, f"#{VID.SOURCE} input[value=world]").click()
    index = page.find_element(By.ID, VID.INDEX)
    index.send_keys(Keys.CONTROL, "a")
    index.send_keys("3", Keys.ENTER)
    page.find_element(By.ID, VID.RUN).click()
    _wait(page, lambda d: "world:heldout:3" in _text(d, VID.INFO), "the run's info line")
    _wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{VID.OVERLAY} .gtitle")
          and "attention to the image" in d.find_element(By.CSS_SELECTOR, f"#{VID.OVERLAY} .gtitle").text,
          "the overlay's title")
    assert page.find_elements(By.CSS_SELECTOR, f"#{VID.OVERLAY} .layer-above image, #{VID.OVERLAY} image"), "no image drawn"
    assert page.find_elements(By.CSS_SELECTOR, f"#{VID.OVERLAY} .hm, #{VID.OVERLAY} .heatmaplayer"), "no heatmap drawn"
    caption = _text(page, "vision-caption-before")
    assert caption.endswith(".") and page.find_elements(By.CSS_SELECTOR, "#vision-caption-before .vision-object")
    assert _text(page, VID.MESSAGE) == ""
    _shoot(page, VID.OVERLAY, "8_vision_panel")

    page.find_element(By.ID, VID.EDIT).click()  # PAINT: its tokens framed, the captions side by side
    _wait(page, lambda d: [o for o in d.find_elements(By.XPATH, "//*[@role='option']") if o.text.strip() == "PAINT"],
          "the edit menu")[0].click()
    page.find_element(By.ID, VID.RUN).click()
    _wait(page, lambda d: d.find_elements(By.ID, "vision-caption-after"), "the caption after PAINT")
    legend = [t.text for t in page.find_elements(By.CSS_SELECTOR, f"#{VID.OVERLAY} .legendtext")]
    assert any(t.startswith("PAINT local") for t in legend) and any(t.startswith("PAINT summary") for t in legend)
    assert "after: PAINT" in _text(page, VID.CAPTIONS)
    _shoot(page, VID.OVERLAY, "9_vision_paint")
