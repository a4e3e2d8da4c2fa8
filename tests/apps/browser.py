"""What the browser tests share: the skip when chromium or selenium is missing, a dashboard app
served from a thread, a headless chromium, and where screenshots go.

Import :func:`require_browser` first in a browser-test module: it skips the module (with the fix)
on a machine without Debian's ``chromium`` and ``chromium-driver`` or without ``selenium``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("HEADSCOPE_SCREENSHOTS", REPO / "artifacts" / "screenshots"))
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,2300")


def require_browser():
    """selenium's ``webdriver`` module, or a module-level skip naming what to install."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("browser tests need Debian's chromium and chromium-driver (/usr/bin/chromium, "
                    "/usr/bin/chromedriver): apt-get install -y chromium chromium-driver", allow_module_level=True)
    return pytest.importorskip("selenium.webdriver", reason="browser tests need selenium: pip install selenium")


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """``app`` (a Dash app) served on a free port of 127.0.0.1 from a thread; yields its URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(10)


@contextlib.contextmanager
def chromium():
    """A headless chromium driven by selenium, with a throw-away profile."""
    webdriver = require_browser()
    profile = tempfile.mkdtemp(prefix="headscope-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
