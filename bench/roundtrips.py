"""Round trips per calendar operation, beside the protocol minimum (issue 4 item 6).

Run from the repository root: ``python -m bench.roundtrips [--from YYYY-MM-DD]``.

Scenarios, for the shipped configuration (``config/sparring.toml``):

* publish a year of both series: the weekly series as one recurring event
  with its cancelled sessions as exceptions, the monthly series as single
  events (no RRULE expresses "first even-ISO-week Wednesday");
* the same year with every session a single event;
* free/busy for 150 people over 6 months;
* Graph: intake of 1,000 mails (``bench/graph.py``), requests per mail.

Each backend is a function ``(sessions, people, start) -> list[Row]``
registered in ``BACKENDS``; the EWS one runs exchangelib against the fake
EWS server from the tests, in-process; the Graph ones (``bench/graph.py``:
GraphCalendar, GraphSource) the fake Graph server (HTTPS, in-process); the
CalDAV one a Radicale it starts on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

from bench.graph import run_graph
from bench.meetings import HALF_YEAR, PEOPLE, Row, exdate_count, year_meetings
from scheduler.config import Config, load_config

# -- EWS -------------------------------------------------------------------------


def run_ews(config: Config, first: date) -> list[Row]:
    from exchangelib.protocol import Protocol

    from scheduler.config import ExchangeConfig
    from scheduler.exchange.account import build_account
    from scheduler.exchange.calendar import ExchangeCalendar
    from tests.servers.ews import EwsServer

    rows = []
    with EwsServer() as server:
        fake = server.fake
        ews = ExchangeConfig(service_endpoint=server.url, mailbox=config.service.mailbox,
                             username=fake.user, auth="basic")

        def measure(action: Callable[[ExchangeCalendar], None]) -> Counter:
            Protocol.clear_cache()
            calendar = ExchangeCalendar(build_account(ews, fake.password, timezone=config.service.timezone),
                                        config.tz)
            calendar.account.calendar  # warm-up: version guess and folder lookup, once per process
            fake.reset()
            action(calendar)
            return Counter(op for op, _ in fake.requests)

        for recurring, label in ((True, "publish a year: weekly recurring + monthly singles"),
                                 (False, "publish a year: every session a single event")):
            meetings = year_meetings(config, first, recurring=recurring)
            made = measure(lambda cal: cal.put_many(meetings))
            minimum = Counter(CreateItem=math.ceil(len(meetings) / 100))
            if exdate_count(meetings):
                minimum["DeleteItem"] = math.ceil(exdate_count(meetings) / 100)
            rows.append(Row("ews", label, made, minimum,
                            f"{len(meetings)} items, {exdate_count(meetings)} cancelled occurrences"))

        people = [f"person{n:03d}@{config.service.mailbox.split('@')[1]}" for n in range(PEOPLE)]
        fake.availability.update({p: [] for p in people})
        start = datetime.combine(first, time(0), tzinfo=config.tz)
        made = measure(lambda cal: cal.free_busy(people, start, start + HALF_YEAR))
        windows = math.ceil(HALF_YEAR / timedelta(days=42))
        minimum = Counter(GetUserAvailability=math.ceil(PEOPLE / 100) * windows)
        rows.append(Row("ews", f"free/busy: {PEOPLE} people over 183 days", made, minimum,
                        f"{windows} windows of at most 42 days"))
    return rows


# -- CalDAV ----------------------------------------------------------------------


def run_caldav(config: Config, first: date) -> list[Row]:
    """Radicale on 127.0.0.1, started here; requests counted at the client."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from scheduler.calendars.caldav import CaldavCalendar
    from tests.servers.radicale import free_port, wait_until_up, write_config

    rows = []
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(write_config(Path(root), port))],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
        url = f"http://127.0.0.1:{port}/"
        try:
            if not wait_until_up(url, process):
                raise SystemExit(f"Radicale did not start on {url}")
            for recurring, label in ((True, "publish a year: weekly recurring + monthly singles"),
                                     (False, "publish a year: every session a single event")):
                meetings = year_meetings(config, first, recurring=recurring)
                calendar = CaldavCalendar(url, "sparring", "x", f"bench-{int(recurring)}", config.tz)
                calendar.calendar()  # finding or making the calendar is not part of the count
                sent: Counter = Counter()
                original = calendar.client.request

                def counting(target, method="GET", *args, _original=original, _sent=sent, **kwargs):
                    _sent[method.upper()] += 1
                    return _original(target, method, *args, **kwargs)

                calendar.client.request = counting
                calendar.put_many(meetings)
                objects = len({m.uid for m in meetings})
                minimum = Counter(PUT=objects, REPORT=math.ceil(objects / 100))
                rows.append(Row("caldav", label, sent, minimum,
                                f"{len(meetings)} events in {objects} calendar objects"))
            rows.append(_caldav_free_busy(config, first, url))
        finally:
            process.terminate()
            process.wait(timeout=10)
    return rows


def _caldav_free_busy(config: Config, first: date, url: str) -> Row:
    """150 people, each with a calendar on the server: one free-busy REPORT per calendar."""
    import caldav

    from scheduler.calendars.caldav import CaldavCalendar

    domain = config.service.mailbox.split("@")[1]
    people = [f"person{n:03d}@{domain}" for n in range(PEOPLE)]
    for person in people:  # each person's own calendar, as their principal would have it
        client = caldav.DAVClient(url=f"{url}{person}/", username=person, password="x")
        client.principal().make_calendar(name="calendar")
    calendar = CaldavCalendar(url, "sparring", "x", "bench-fb", config.tz)
    calendar.calendar()
    sent: Counter = Counter()
    original = calendar.client.request

    def counting(target, method="GET", *args, **kwargs):
        sent[method.upper()] += 1
        return original(target, method, *args, **kwargs)

    calendar.client.request = counting
    start = datetime.combine(first, time(0), tzinfo=config.tz)
    busy = calendar.free_busy(people, start, start + HALF_YEAR)
    unknown = sum(1 for spans in busy.values() if any(b.kind.value == "unknown" for b in spans))
    # Without a scheduling outbox (Radicale has none) the minimum is one PROPFIND
    # to find a person's calendars and one free-busy REPORT per calendar.
    return Row("caldav", f"free/busy: {PEOPLE} people over 183 days", sent,
               Counter(PROPFIND=PEOPLE, REPORT=PEOPLE),
               f"one calendar each, {unknown} unknown; the extra REPORT is sparring's own calendar")


BACKENDS: dict[str, Callable[[Config, date], list[Row]]] = {"ews": run_ews, "caldav": run_caldav, "graph": run_graph}


def report(rows: list[Row]) -> str:
    lines = [f"{'backend':8} {'scenario':55} {'made':>5} {'minimum':>8}  requests (made / minimum)"]
    for row in rows:
        ops = sorted(set(row.made) | set(row.minimum))
        detail = ", ".join(f"{op} {row.made[op]}/{row.minimum[op]}" for op in ops)
        lines.append(f"{row.backend:8} {row.scenario:55} {sum(row.made.values()):>5} "
                     f"{sum(row.minimum.values()):>8}  {detail}")
        if row.note:
            lines.append(f"{'':8} {'  ' + row.note}")
    lines.append("EWS: extra FindItem requests are the UID lookups that make a re-publish idempotent "
                 "(one per 100 UIDs); GetServerTimeZones is read once per year and cached.")
    lines.append("Graph: requests over HTTPS to the fake Graph server; $batch(...) names what a batch carries. "
                 "The calendar's extra $batch requests are the UID lookups (by extended property, 20 to a "
                 "batch) that make a re-publish from a fresh data directory idempotent.")
    lines.append("CalDAV: one multiget REPORT per 100 objects reads what is stored, then one PUT per "
                 "calendar object (the weekly series with its exceptions is one object).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/sparring.toml")
    parser.add_argument("--from", dest="first", type=date.fromisoformat, default=date.today())
    parser.add_argument("--backend", choices=sorted(BACKENDS), action="append")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    rows = [row for name in (args.backend or sorted(BACKENDS)) for row in BACKENDS[name](config, args.first)]
    print(report(rows))


if __name__ == "__main__":
    main()
