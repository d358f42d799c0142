"""Shared test set-up. Server fixtures live in tests/servers/, one per server.

The wall clock is travelled. No test may depend on today's date or time, so
every test not marked ``servers`` runs with the wall clock (``time.time``,
``datetime.now``, ``date.today``; not ``time.monotonic``, not file times the
kernel writes) moved by time-machine to a moment derived from its node id,
still ticking. The moments are spread over every weekday and hour of 2026 to
2028, with the moments that broke code before among them: Monday 11:59 and
12:00 (the weekly deadline), Thursday 14:00, the DST switches, New Year. So CI
is the same whatever day it runs on, and a test that reads the real clock
fails on some moment, not on some weekday. A failing test's report shows its
moment (section "wallclock").

* ``SPARRING_TEST_WALLCLOCK=real`` turns travelling off.
* ``SPARRING_TEST_WALLCLOCK=2027-01-06T13:00`` pins every test to that moment
  (Europe/Copenhagen unless an offset is given): run the suite at several
  such moments to find a test that depends on the real date.

Tests that use a real server or start ``sparring`` as a process are marked
``servers`` (those using a server fixture automatically): the server, its
TLS library and child processes read the real clock, so they are not
travelled and must fake time through ``--now`` and explicit file mtimes.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

pytest_plugins = [
    "tests.servers.dovecot",
    "tests.servers.smtp",
    "tests.servers.postgres",
    "tests.servers.radicale",
    "tests.servers.ews",
    "tests.servers.graph",
    "tests.servers.graph_calendar",
    "tests.servers.faults",
]

TZ = ZoneInfo("Europe/Copenhagen")
SERVER_FIXTURES = {"dovecot", "ews_server", "graph_server", "postgres_server", "radicale_server", "smtp_server"}
# Contract suites take their server through getfixturevalue, named by a parameter.
SERVER_BACKENDS = {"imap", "smtp", "ews", "exchange", "graph", "caldav", "postgresql"}
# Moments that have broken code before, local time; the rest are spread by hash.
SPECIAL = (
    datetime(2027, 1, 4, 11, 59, tzinfo=TZ),  # Monday, a minute before the weekly deadline
    datetime(2027, 1, 4, 12, 0, tzinfo=TZ),  # Monday, the deadline
    datetime(2027, 1, 7, 14, 0, tzinfo=TZ),  # Thursday, after the weekly session
    datetime(2027, 3, 28, 1, 59, 30, tzinfo=TZ),  # half a minute before the spring DST switch
    datetime(2027, 10, 31, 2, 30, fold=1, tzinfo=TZ),  # the repeated hour of the autumn switch
    datetime(2026, 12, 31, 23, 59, 30, tzinfo=TZ),  # New Year's Eve
    datetime(2027, 1, 1, 0, 0, tzinfo=TZ),  # New Year
)
FIRST_MONDAY = datetime(2026, 1, 5, tzinfo=TZ)
WEEKS = 156  # 2026 to 2028


def moment_for(node_id: str) -> datetime:
    """A fixed moment for one test: a special one, or a weekday and hour of some week."""
    digest = int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:8], "big")
    pick = digest % (len(SPECIAL) + 7 * 24)
    if pick < len(SPECIAL):
        return SPECIAL[pick]
    day, hour = divmod(pick - len(SPECIAL), 24)
    week = (digest >> 16) % WEEKS
    minute = (digest >> 32) % 60
    local = (FIRST_MONDAY + timedelta(weeks=week, days=day)).replace(hour=hour, minute=minute)
    return local.astimezone(TZ)  # a spring-forward gap hour normalised


def _pinned() -> datetime | None | str:
    text = os.environ.get("SPARRING_TEST_WALLCLOCK", "").strip()
    if not text:
        return None
    if text == "real":
        return "real"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=TZ)


def pytest_report_header(config) -> str:
    pinned = _pinned()
    if pinned == "real":
        return "wall clock: real (SPARRING_TEST_WALLCLOCK=real)"
    if pinned is not None:
        return f"wall clock: pinned to {pinned.isoformat()} (SPARRING_TEST_WALLCLOCK)"
    return "wall clock: travelled per test to a moment from its node id (SPARRING_TEST_WALLCLOCK)"


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = {v for v in callspec.params.values() if isinstance(v, str)} if callspec else set()
        if SERVER_FIXTURES & set(item.fixturenames) or SERVER_BACKENDS & params:
            item.add_marker(pytest.mark.servers)


@pytest.fixture(autouse=True)
def travelled_wall_clock(request):
    pinned = _pinned()
    if pinned == "real" or request.node.get_closest_marker("servers"):
        yield None
        return
    moment = pinned or moment_for(request.node.nodeid)
    request.node.add_report_section("call", "wallclock", f"{moment.isoformat()} ({moment:%A})")
    with time_machine.travel(moment, tick=True):
        yield moment
