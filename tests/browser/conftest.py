"""A simulated quarter served by ``sparring serve``, and headless Chromium to look at it.

Once per module: ``sparring --demo simulate`` over 2027-Q1 on the mails of
``quarter.py``, then ``sparring --demo serve`` on a free port with ``--now``
in that quarter. Chromium and its driver come from Debian (Selenium is told
where they are and never downloads one); axe-core from npm, fetched by
scripts/install-test-deps.sh into .cache/axe-core. Missing, they fail the
tests in CI and skip them elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.browser import expected
from tests.browser.examples import quarter
from tests.daemonkit import ROOT, Proc, cli, environment, wait_for

NOW = "2027-03-31T18:00"  # after the quarter's last session; the statistics page defaults to 2027-Q1
AXE = ROOT / ".cache" / "axe-core" / "package" / "axe.min.js"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
WINDOW = (1280, 1024)
INSTALL = "run scripts/install-test-deps.sh"


def missing(what: str) -> None:
    """Fail in CI (the browser tests must run there), skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"The browser tests need {what}, not found on this machine; {INSTALL}.", pytrace=False)
    pytest.skip(f"{what} is missing ({INSTALL})")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # any status: it is serving
    except OSError:
        return False
    return True


def simulate(data_dir: Path, first, last) -> None:
    done = cli(data_dir, "simulate", "--from", first.isoformat(), "--to", last.isoformat(),
               env=environment(None), now=f"{first}T00:00", demo=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def quarter_dir(tmp_path_factory) -> Path:
    """A data directory after ``simulate`` over the quarter (demo key inside)."""
    data_dir = tmp_path_factory.mktemp("quarter")
    quarter.write_inbox(data_dir, quarter.mails())
    simulate(data_dir, quarter.FIRST, quarter.SPLIT)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SPARRING_SECRET_KEY", raising=False)  # the demo key in the data directory
        cases = expected.open_cases(data_dir)
    assert len(cases) == 8, "one opstart on each agenda of January and February"
    quarter.write_inbox(data_dir, quarter.agreements(cases))
    simulate(data_dir, quarter.SPLIT + timedelta(days=1), quarter.LAST)
    return data_dir


@pytest.fixture(scope="module")
def server(quarter_dir, tmp_path_factory):
    """``sparring serve`` on the quarter's data: its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = Proc(quarter_dir, "serve", "--listen", f"127.0.0.1:{port}", env=environment(None), log_path=log,
                now=NOW, demo=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.running():
            raise AssertionError(f"sparring serve exited ({proc.popen.returncode}):\n{proc.log()[-2000:]}")
        return _answers(f"{base}/healthz")

    try:
        wait_for(up, 60, "sparring serve to answer /healthz", interval=0.2)
        yield base
    finally:
        proc.close()


def _driver(javascript: bool):
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        missing("Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    prefs = {"intl.accept_languages": "da,en"}  # a Danish desktop (headless Chromium asks for en-US)
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    options.add_experimental_option("prefs", prefs)
    # The driver named explicitly: Selenium Manager never looks for (or downloads) one.
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    browser.set_page_load_timeout(30)
    browser.set_script_timeout(60)
    return browser


@pytest.fixture(scope="module")
def browser():
    driver = _driver(javascript=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def browser_without_js():
    driver = _driver(javascript=False)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        missing(f"axe-core ({AXE.relative_to(ROOT)})")
    return AXE.read_text(encoding="utf-8")


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # The whole page: the window grown to the document's height.
    height = driver.execute_script("return document.documentElement.scrollHeight") or WINDOW[1]
    driver.set_window_size(WINDOW[0], max(WINDOW[1], min(int(height), 8000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)
    print(f"screenshot: {path}")
    return path
