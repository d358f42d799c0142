"""The overview and statistics pages (issue 16, items 1-3 and the routes of 5).

Starlette's TestClient over a real ``App`` on a temporary database, items
taken in by the real intake; a fake clock only.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import re
from datetime import timedelta

import pytest
from lxml import html
from starlette.testclient import TestClient

from scheduler.config import load_config
from scheduler.errors import ConfigError, UserError
from scheduler.cpr import CPR_IN_TEXT
from scheduler.planning.statistics import Period
from scheduler.services import metrics, statistics
from scheduler.store.tables import ExtraSession, Lease
from scheduler.web import make_web_app
from scheduler.web.auth import check_password, hash_password
from scheduler.web.i18n import CATALOGUE, choose
from scheduler.web.server import _PathOnly, bind
from tests.appkit import CONFIG, at, build, ingest, item_mail

CPRS = ("0101054234", "0202114234", "0303704234")  # born 2005, 2011, 1970: ages 22, 16, 57 in 2027


@pytest.fixture
def app(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-04T09:00", monkeypatch)
    for n, cpr in enumerate(CPRS):
        ingest(app, item_mail(cpr, f"m{n}", subject="Akut sparring" if n == 0 else "Sparring"),
               f"2027-01-04T09:0{n}")
    return app


def client(app, **options) -> TestClient:
    return TestClient(make_web_app(app), **options)


def with_web(app, **web):
    config = app.config.model_copy(update={"web": app.config.web.model_copy(update=web)})
    app.config = config
    return app


def test_overview_shows_fill_levels_acute_deadline_cases_and_health_in_danish(app):
    page = client(app).get("/")
    assert page.status_code == 200 and page.headers["content-language"] == "da"
    doc = html.fromstring(page.text)
    assert doc.get("lang") == "da"
    first_unge = doc.xpath('//tr[@data-session="unge/2027-01-07"]')[0]
    taken = first_unge.xpath('.//td[@data-taken]')[0]
    assert (taken.get("data-taken"), taken.get("data-capacity")) == ("2", "6")
    assert first_unge.xpath('.//td[@data-acute]')[0].get("data-acute") == "1"
    assert "2 af 6" in taken.text_content()
    assert len(doc.xpath('//table[@data-series="unge"]//tr[@data-session]')) == 6
    deadline = doc.xpath('//section[@data-series="unge"]//dd[@data-fact="next-deadline"]')[0].text_content()
    assert "mandag den 4. januar 2027 kl. 12.00" in deadline and "0 d. 2 t. 58 min. tilbage" in deadline
    assert doc.xpath('//td[@data-stage="decided"]')[0].text == "0"
    assert doc.xpath('//dd[@data-fact="outbox"]')[0].get("data-failed") == "0"
    assert "kører ikke" in doc.xpath('//dd[@data-fact="daemon"]')[0].text_content()
    # The landmarks and the skip link, for keyboard and screen-reader users.
    assert doc.xpath("//header") and doc.xpath("//nav[@aria-label]") and doc.xpath('//main[@id="main"]')
    assert doc.xpath('//a[@href="#main"]') and [h.tag for h in doc.xpath("//h1")] == ["h1"]


def test_the_overview_shows_an_extra_session_another_process_added(app):
    """``serve`` runs apart from the daemon: an extra session the daemon adds later is shown too."""
    web = client(app)
    assert web.get("/").status_code == 200
    with app.transaction() as repo:  # what the daemon's process writes on a coordinator's "Ekstra møde: ja"
        repo.db.add(ExtraSession(session_key="unge/2027-01-05", series_id="unge", start=at("2027-01-05T10:00"),
                                 created_at=app.now(), source_message="<ja@kommune.example>",
                                 added_by="koordinator.social@kommune.example"))
    doc = html.fromstring(web.get("/").text)
    assert "ekstra" in doc.xpath('//tr[@data-session="unge/2027-01-05"]/td[last()]')[0].text_content()


def test_the_time_left_to_the_deadline_counts_real_hours_across_the_summer_time_switch(app):
    app.clock.set(at("2027-03-27T12:00"))  # Saturday; the clocks go forward in the night to Sunday (Easter)
    doc = html.fromstring(client(app).get("/").text)
    deadline = doc.xpath('//section[@data-series="unge"]//dd[@data-fact="next-deadline"]')[0].text_content()
    assert "mandag den 5. april 2027 kl. 12.00" in deadline and "8 d. 23 t. 0 min. tilbage" in deadline


def test_a_cancelled_session_and_a_passed_deadline_are_marked(app):
    app.clock.set(app.now() + timedelta(hours=4))  # past the unge deadline of Monday 12:00
    doc = html.fromstring(client(app).get("/?lang=en").text)
    state = doc.xpath('//tr[@data-session="unge/2027-01-07"]/td[last()]')[0].text_content()
    assert "closed for new items" in state
    next_deadline = doc.xpath('//section[@data-series="unge"]//dd[@data-fact="next-deadline"]')[0]
    assert "Monday 11 January 2027 at 12:00" in next_deadline.text_content()


@pytest.mark.parametrize("how", [{"params": {"lang": "en"}}, {"headers": {"Accept-Language": "en-GB,da;q=0.5"}}])
def test_english_by_query_or_accept_language(app, how):
    for path in ("/", "/statistik"):
        page = client(app).get(path, **how)
        doc = html.fromstring(page.text)
        assert doc.get("lang") == "en" and page.headers["content-language"] == "en"
        switch = doc.xpath('//a[@hreflang="da"]')[0]
        assert switch.text == "Dansk" and "lang=da" in switch.get("href")
    assert "Coming sessions" in client(app).get("/", **how).text


def test_language_choice():
    assert choose(None, None, "da") == "da"
    assert choose("en", "da", "da") == "en"
    assert choose(None, "de-DE, en;q=0.8, da;q=0.9", "en") == "da"
    assert choose(None, "fr, de;q=0.5", "en") == "en"
    assert choose("xx", "en;q=0", "da") == "da"
    assert all(len(pair) == 2 and all(pair) for pair in CATALOGUE.values())


def test_the_statistics_table_carries_the_cells_and_the_csv_equals_them(app):
    app.clock.set(app.now() + timedelta(days=14))  # the sessions have been held
    period = Period.parse("2027-Q1")
    cells = statistics.table(app, period).cells("da")
    page = client(app).get("/statistik")  # default: the quarter holding now
    assert page.status_code == 200
    doc = html.fromstring(page.text)
    table = doc.get_element_by_id("statistics")
    assert table.get("data-period") == "2027-Q1" and table.xpath("caption")
    assert all(th.get("scope") in ("col", "row") for th in table.xpath(".//th"))
    shown = [[c.text_content() for c in row.xpath("th|td")] for row in table.xpath(".//tr")]
    assert shown == cells
    brought = table.xpath('.//td[@data-measure="brought"][@data-group="total"]')[0].text
    assert brought == "<5"  # three citizens: suppressed
    assert table.xpath('.//td[@data-measure="brought"][@data-group="15-17"]')[0].text == "<5"
    link = doc.xpath('//a[starts-with(@href, "/statistik.csv")]')[0].get("href")
    download = client(app).get(link)
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == 'attachment; filename="sparring-statistik-2027-Q1.csv"'
    assert download.content.startswith(b"\xef\xbb\xbf")  # Excel reads "æøå" as UTF-8
    assert list(csv.reader(io.StringIO(download.content.decode("utf-8-sig")))) == cells
    assert "Sager bragt på et møde" in download.content.decode("utf-8-sig")


def test_the_form_labels_its_controls_and_the_charts_are_named_svg_without_script(app):
    doc = html.fromstring(client(app).get("/statistik?period=2027&lang=en").text)
    for control in doc.xpath("//form//input[not(@type='hidden')]|//form//select"):
        assert doc.xpath(f'//label[@for="{control.get("id")}"]')
    assert doc.xpath("//form")[0].get("method") == "get"
    svgs = doc.xpath("//figure//svg")
    assert len(svgs) == 2
    assert all(svg.get("role") == "img" and "Chart:" in svg.get("aria-label") for svg in svgs)
    assert not doc.xpath("//script") and "http://pygal" not in html.tostring(doc, encoding="unicode")
    assert doc.xpath("//figcaption")[0].text.strip() == "Items brought to a session by age group"


def test_one_series_and_a_month(app):
    page = client(app).get("/statistik?period=2027-01&series=unge")
    doc = html.fromstring(page.text)
    assert doc.get_element_by_id("statistics").get("data-period") == "2027-01"
    assert doc.xpath('//option[@value="unge"]')[0].get("selected") is not None


# "２０２７": digits of another script are not a period (they reached the CSV's file name header: a 500).
@pytest.mark.parametrize("query", ["period=2027-Q5", "period=010105-4234", "series=nowhere", "period=２０２７"])
def test_a_bad_period_or_series_is_one_sentence_and_400(app, query):
    page = client(app).get(f"/statistik?{query}")
    assert page.status_code == 400
    error = html.fromstring(page.text).get_element_by_id("error").text
    assert error.count(".") == 1 and "Traceback" not in page.text
    assert "010105" not in page.text  # the input is not echoed
    assert client(app).get(f"/statistik.csv?{query}").status_code == 400


def test_no_page_shows_a_cpr_number(app):
    app.clock.set(app.now() + timedelta(days=14))
    web = client(app)
    for path in ("/", "/?lang=en", "/statistik", "/statistik?lang=en", "/statistik.csv", "/metrics",
                 "/statistik?period=2027-01&series=unge", "/static/sparring.css"):
        page = web.get(path)
        assert page.status_code == 200, path
        assert not CPR_IN_TEXT.search(page.text), path
        assert "Angst" not in page.text and "Gæld" not in page.text, path


def test_a_query_parameter_the_page_does_not_read_is_not_echoed_in_its_links(app):
    """The language switch keeps the period and the series shown, nothing else a visitor typed."""
    for path in ("/?note=010105-4234", "/statistik?period=2027-Q1&note=010105-4234"):
        page = client(app).get(path)
        assert page.status_code == 200 and "010105" not in page.text, path
    switch = html.fromstring(client(app).get("/statistik?period=2027-01&series=unge&x=1").text)
    assert switch.xpath('//a[@hreflang="en"]')[0].get("href") == "/statistik?period=2027-01&series=unge&lang=en"


def test_healthz_fails_until_the_daemon_runs_and_metrics_scrape(app):
    web = client(app)
    page = web.get("/healthz")
    assert (page.status_code, page.text) == (503, "daemon: the daemon has never run\n")
    # The lease on the fake clock's timeline, as health reads it (lease.acquire takes the wall clock).
    with app.transaction() as repo:
        repo.db.add(Lease(name="daemon", holder="host.kommune.example:4242",
                          expires_at=app.now() + timedelta(seconds=30)))
    for job in ("daemon", "intake", *metrics.ALLOWED):
        metrics.heartbeat(app, job, force=True)
    assert (web.get("/healthz").status_code, web.get("/healthz").text) == (200, "ok\n")
    scrape = web.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain; version=")
    assert 'sparring_mails_total{outcome="accepted"} 3.0' in scrape.text


def test_basic_auth_lets_in_a_user_with_the_right_password_only(app, tmp_path):
    users = tmp_path / "users"
    users.write_text(f"# coordinators\nkaren:{hash_password('hemmeligt æøå')}\n", encoding="utf-8")
    web = client(with_web(app, auth="basic", users_file=str(users)))
    assert web.get("/").status_code == 401 and "Basic" in web.get("/").headers["www-authenticate"]
    assert web.get("/", auth=("karen", "forkert")).status_code == 401
    assert web.get("/", auth=("ole", "hemmeligt æøå")).status_code == 401
    garbled = {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()}
    assert web.get("/", headers=garbled).status_code == 401
    assert web.get("/", auth=("karen", "hemmeligt æøå")).status_code == 200
    assert web.get("/statistik.csv", auth=("karen", "hemmeligt æøå")).status_code == 200
    assert web.get("/healthz").status_code in (200, 503)  # open: a load balancer asks it


def test_an_unknown_name_costs_the_same_scrypt_as_a_wrong_password(app, tmp_path, monkeypatch):
    """Else the answer's speed tells which names exist (no hash: answered at once)."""
    import hashlib

    from scheduler.web import auth

    users = tmp_path / "users"
    users.write_text(f"karen:{hash_password('hemmeligt')}\n", encoding="utf-8")
    web = client(with_web(app, auth="basic", users_file=str(users)))
    web.get("/", auth=("ole", "forkert"))  # the first may also make the decoy hash
    costs, scrypt = [], hashlib.scrypt
    monkeypatch.setattr(auth.hashlib, "scrypt", lambda *a, **k: costs.append(k["n"]) or scrypt(*a, **k))
    assert web.get("/", auth=("karen", "forkert")).status_code == 401
    assert web.get("/", auth=("ole", "forkert")).status_code == 401
    assert len(costs) == 2 and costs[0] == costs[1]


def test_header_auth_believes_the_user_header_only_from_a_trusted_proxy(app):
    with_web(app, auth="header", trusted_proxies=("127.0.0.1", "10.1.0.0/16"))
    named = {"X-Remote-User": "karen"}
    assert client(app, client=("127.0.0.1", 40000)).get("/", headers=named).status_code == 200
    assert client(app, client=("10.1.2.3", 40000)).get("/statistik", headers=named).status_code == 200
    # On a dual-stack socket ([::]:8765) an IPv4 proxy's address comes as ::ffff:10.1.2.3.
    assert client(app, client=("::ffff:10.1.2.3", 40000)).get("/", headers=named).status_code == 200
    assert client(app, client=("::ffff:192.168.1.9", 40000)).get("/", headers=named).status_code == 403
    refused = client(app, client=("192.168.1.9", 40000)).get("/", headers=named)
    assert refused.status_code == 403 and "proxy" in refused.text
    assert client(app, client=("127.0.0.1", 40000)).get("/").status_code == 403  # no user named


def test_passwords_are_scrypt_hashes_that_check():
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert check_password("s3cret", stored) and not check_password("s3cret ", stored)
    assert hash_password("s3cret") != stored  # salted
    assert not check_password("s3cret", "scrypt$garbage")


def _config(tmp_path, web: str):
    path = tmp_path / "sparring.toml"
    path.write_text(CONFIG.read_text(encoding="utf-8").replace(
        '[web]                               #', f'[web]\n{web}\n#', 1).replace(
        '\nlisten = "127.0.0.1:8765"', "\n", 1).replace('\nauth = "none"', "\n", 1), encoding="utf-8")
    return path


def test_a_listen_address_beyond_loopback_without_auth_is_refused_at_load(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_config(_config(tmp_path, 'listen = "0.0.0.0:8765"\nauth = "none"'))
    text = str(refused.value)
    assert "web" in text and "0.0.0.0:8765" in text and "auth" in text and "\n" not in text
    assert load_config(_config(tmp_path, 'listen = "[::1]:8765"\nauth = "none"')).web.listen == "[::1]:8765"
    with pytest.raises(ConfigError, match="users_file or basic_users"):
        load_config(_config(tmp_path, 'listen = "0.0.0.0:8765"\nauth = "basic"'))
    with pytest.raises(UserError, match="reachable from other machines"):
        bind("0.0.0.0:8765", "none")  # --listen is checked as [web] listen is
    with pytest.raises(UserError, match="not HOST:PORT"):
        bind("localhost", "none")


@pytest.mark.parametrize("users", ['"karen:hemmeligt"', '{ karen = "hemmeligt" }'])
def test_a_password_in_clear_in_basic_users_is_refused_without_echoing_it(tmp_path, users):
    """basic_users holds hashes: a password written there instead is one sentence that does not repeat it."""
    with pytest.raises(ConfigError) as refused:
        load_config(_config(tmp_path, f'listen = "0.0.0.0:8765"\nauth = "basic"\nbasic_users = {users}'))
    text = str(refused.value)
    assert "basic_users" in text and "web-passwd" in text and "hemmeligt" not in text and "\n" not in text


def test_the_access_log_keeps_the_path_without_its_query():
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/statistik?period=2027-Q1&lang=en", "1.1", 200), None)
    _PathOnly().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /statistik HTTP/1.1" 200'


@pytest.mark.parametrize("values", [[0, None, None], [0, 0, 0, 0], [0, 3, 7], [None, 12, 5], [5, 6, 7, 8], [113, 0, 29], [None, None, None]])
def test_a_chart_has_no_digit_run_a_cpr_detector_would_flag(values):
    """pygal's raw coordinates (96.56410256410257) are rounded and its random UUID (digits in a row,
    now and then) replaced: a page never holds a CPR-like number."""
    from scheduler.web.charts import bar

    svg = bar("probe", "T", [str(n) for n in range(len(values))], values, "alt")
    assert svg.startswith('<svg role="img" aria-label="alt"') and not CPR_IN_TEXT.search(svg)
    assert "<script" not in svg and 'id="chart-probe"' in svg


def test_a_full_session_is_marked_and_the_queue_counts_it(app):
    for n in range(5):  # with the two already in it: seven young citizens for a session of six
        ingest(app, item_mail(f"0{n + 1}0606{4230 + n}", f"q{n}"), f"2027-01-04T09:1{n}")
    doc = html.fromstring(client(app).get("/").text)
    first, second = doc.xpath('//table[@data-series="unge"]//tr[@data-session]')[:2]
    assert first.xpath(".//td[@data-taken]")[0].get("data-taken") == "6"
    assert "fuld" in first.xpath("td[last()]")[0].text_content()
    assert second.xpath(".//td[@data-taken]")[0].get("data-taken") == "1"
    queue = doc.xpath('//section[@data-series="unge"]//dd[@data-fact="queue"]')[0]
    assert queue.get("data-value") == "1" and "fulde møder i træk fra det næste: 1" in queue.text_content()


def test_a_failing_page_answers_500_and_logs_its_place_not_its_text(app, monkeypatch, caplog):
    from scheduler.services import overview

    def broken(_app):
        raise ValueError("CPR 010105-4234 in a message")

    monkeypatch.setattr(overview, "overview", broken)
    with caplog.at_level(logging.ERROR, logger="sparring.web"):
        page = client(app).get("/")
    assert page.status_code == 500 and "010105" not in page.text and "Traceback" not in page.text
    (message,) = caplog.messages
    assert re.fullmatch(r"page failed path=/ error=ValueError at \w+\.py:\d+", message)
    assert not any(record.exc_info for record in caplog.records)


def test_basic_auth_checks_a_browsers_repeated_credentials_once_and_bounds_checks_at_once(
        app, tmp_path, monkeypatch):
    """A page and its stylesheet cost one scrypt; wrong passwords are never remembered,
    and however many arrive together, at most CHECKS_AT_ONCE scrypts (16 MiB each) run."""
    import hashlib
    import threading
    import time as clock

    from scheduler.web import auth

    users = tmp_path / "users"
    users.write_text(f"karen:{hash_password('hemmeligt')}\n", encoding="utf-8")
    web = client(with_web(app, auth="basic", users_file=str(users)))
    web.get("/", auth=("ole", "forkert"))  # the decoy hash made
    running, most, lock, scrypt = [0], [0], threading.Lock(), hashlib.scrypt

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        clock.sleep(0.05)
        try:
            return scrypt(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    calls = []
    monkeypatch.setattr(auth.hashlib, "scrypt", lambda *a, **k: calls.append(1) or counted(*a, **k))
    assert web.get("/", auth=("karen", "hemmeligt")).status_code == 200
    assert web.get("/static/sparring.css", auth=("karen", "hemmeligt")).status_code == 200
    assert len(calls) == 1, "the same credentials again: remembered"
    for _ in range(2):
        assert web.get("/", auth=("karen", "forkert")).status_code == 401
    assert len(calls) == 3, "a wrong password is checked every time"
    threads = [threading.Thread(target=web.get, args=("/",), kwargs={"auth": ("karen", f"gæt{n}")})
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 11 and most[0] <= auth.CHECKS_AT_ONCE == 2, most
