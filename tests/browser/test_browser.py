"""Issue 16.6: the web pages in a real browser (headless Chromium, Selenium).

After a simulated quarter, ``sparring serve`` shows each page (a screenshot
of each in test-output/screenshots/); the statistics shown equal those
counted from the database here; the CSV download equals the table; no page
holds a CPR-like number; axe-core finds nothing serious or critical; and the
statistics page works with JavaScript off.
"""

from __future__ import annotations

import csv
import io
import re
import urllib.request

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from scheduler.cpr import has_cpr
from tests.browser import expected
from tests.browser.examples import quarter
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.servers

# name: (path, words the page's h1 holds)
PAGES = {
    "overview": ("/", "Overblik"),
    "statistik": (f"/statistik?period={quarter.PERIOD}", "Statistik"),
    "statistics-en": (f"/statistik?period={quarter.PERIOD}&lang=en", "Statistics"),
    "statistik-empty": ("/statistik?period=2026-Q1", "Statistik"),
}
STATISTICS = {"statistik": (quarter.FIRST, quarter.LAST), "statistics-en": (quarter.FIRST, quarter.LAST),
              "statistik-empty": (quarter.FIRST.replace(year=2026), quarter.LAST.replace(year=2026))}
CPR_PLAIN = re.compile(r"\d{6}[-\s]?\d{4}")  # any run of 10 digits too: an independent check
MASKED = re.compile(r"\d{6}-?x{4}", re.IGNORECASE)  # the masked form receipts carry is personal data too
CELLS = """return [...document.querySelectorAll('#statistics td[data-measure][data-group]')]
    .map(c => [c.dataset.measure, c.dataset.group, c.innerText.trim()]);"""
ROWS = """return [...document.querySelectorAll('#statistics tr')]
    .map(r => [...r.querySelectorAll('th, td')].map(c => c.innerText.trim()));"""
AXE_RUN = """const done = arguments[arguments.length - 1];
axe.run(document).then(r => done(r.violations), e => done([{id: 'axe-error', impact: 'critical',
    help: String(e), nodes: []}]));"""


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode("utf-8-sig")


@pytest.fixture(scope="module")
def tallies(quarter_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SPARRING_SECRET_KEY", raising=False)  # the demo key in the data directory
        return {name: expected.counted(quarter_dir, *span) for name, span in STATISTICS.items()}


def open_page(browser, server, name: str) -> None:
    browser.get(server + PAGES[name][0])


@pytest.mark.parametrize("name", PAGES)
def test_each_page_renders_with_its_heading_and_a_screenshot(browser, server, name):
    path, heading = PAGES[name]
    status, _ = fetch(server + path)
    assert status == 200
    open_page(browser, server, name)
    assert heading in browser.find_element(By.TAG_NAME, "h1").text
    assert screenshot(browser, name).stat().st_size > 10_000


@pytest.mark.parametrize("name", STATISTICS)
def test_the_numbers_shown_equal_those_counted_from_the_database(browser, server, tallies, name):
    open_page(browser, server, name)
    shown = {(m, g): text for m, g, text in browser.execute_script(CELLS)}
    groups = tuple(sorted({g for _, g in shown} - {"total"}))
    assert groups in (("15-17", "18-29", "30+"), ("0-14", "15-17", "18-29", "30+")), groups
    assert shown == tallies[name].shown(groups)
    if name != "statistik-empty":  # the quarter's own facts, from its mails
        assert shown[("decision:start", "total")] == "8", "eight agendas answered, each with one opstart"
        assert shown[("acute", "total")] == "5" and int(shown[("brought", "total")]) > 40
        assert shown[("wait_decision_joint", "total")], "the eight agreed cases' fællessamtaler"
    else:
        assert set(shown.values()) <= {"0", ""}


def test_the_default_period_is_the_quarter_holding_now(browser, server):
    browser.get(server + "/statistik")
    default = browser.execute_script(CELLS)
    open_page(browser, server, "statistik")
    assert default == browser.execute_script(CELLS)


@pytest.mark.parametrize("name", ["statistik", "statistics-en"])
def test_the_csv_download_equals_the_table(browser, server, name):
    open_page(browser, server, name)
    link = browser.find_element(By.CSS_SELECTOR, "a[href*='statistik.csv']").get_attribute("href")
    status, text = fetch(link)
    assert status == 200
    table = [row for row in browser.execute_script(ROWS) if row]
    assert list(csv.reader(io.StringIO(text))) == table


@pytest.mark.parametrize("name", PAGES)
def test_no_page_holds_a_cpr_like_number(browser, server, name):
    numbers = [n for raw in quarter.mails().values() for n in re.findall(rb"CPR: (\S+)", raw)]
    assert numbers and all(has_cpr(n.decode()) and CPR_PLAIN.search(n.decode()) for n in numbers), \
        "the detectors find the quarter's own numbers"
    _, html = fetch(server + PAGES[name][0])
    open_page(browser, server, name)
    texts = [html, browser.page_source, browser.find_element(By.TAG_NAME, "body").text]
    if name in STATISTICS:
        texts.append(fetch(browser.find_element(By.CSS_SELECTOR, "a[href*='statistik.csv']")
                           .get_attribute("href"))[1])
    for text in texts:
        assert not has_cpr(text), "the project's detector finds a CPR-like number"
        for pattern in (CPR_PLAIN, MASKED):
            assert not pattern.search(text), pattern.search(text)[0]


def axe(browser, source: str) -> list[dict]:
    """axe-core's violations on the page loaded (all its rules: WCAG 2.1 A and AA, best practice)."""
    browser.execute_script(source)
    violations = browser.execute_async_script(AXE_RUN)
    for v in violations:
        print(f"axe: {v['id']} ({v['impact']}): {v['help']}; "
              + ", ".join(" ".join(n["target"]) for n in v["nodes"]))
    return violations


@pytest.mark.parametrize("name", PAGES)
def test_axe_finds_no_serious_or_critical_violation(axe_source, browser, server, name):
    open_page(browser, server, name)
    bad = [v["id"] for v in axe(browser, axe_source) if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe-core on {name} (the violations printed above): {bad}"


def test_axe_does_see_a_violation(axe_source, browser, server):
    open_page(browser, server, "overview")
    browser.execute_script("document.querySelector('main').append(document.createElement('img'))")
    assert "image-alt" in {v["id"] for v in axe(browser, axe_source) if v["impact"] == "critical"}


def test_the_statistics_page_works_without_javascript(browser_without_js, server):
    driver = browser_without_js
    driver.get("data:text/html,<title>off</title><script>document.title='on'</script>")
    assert driver.title == "off", "JavaScript is really off in this browser"
    open_page(driver, server, "statistik")
    field = driver.find_element(By.CSS_SELECTOR, "form input[name='period']")
    field.clear()
    field.send_keys("2027-02")
    driver.find_element(By.CSS_SELECTOR, "form [type='submit']").click()
    WebDriverWait(driver, 10).until(lambda d: "period=2027-02" in d.current_url)
    caption = driver.find_element(By.CSS_SELECTOR, "#statistics caption").text
    assert "2027-02" in caption
    cells = driver.find_elements(By.CSS_SELECTOR, "#statistics td[data-measure='brought'][data-group='total']")
    assert cells and cells[0].text not in ("", "0"), "February's sessions are counted"
