"""Graph rows for ``bench.roundtrips``: requests against the fake Graph
server from the tests (in-process, HTTPS on 127.0.0.1), beside the
protocol minimum.

Intake of 1,000 mails: ``GraphSource`` fetches and settles the whole
inbox in the daemon's batches (``Intake.run``'s limit of 500). The
minimum: the delta round in pages of ``graph.batch_size`` and one more
request that finds nothing new, the MIME of
every mail in ``$batch`` requests of 20, every move in ``$batch`` requests
of 20, one listing of the inbox's child folders, one token. Creating the
four folders (first run only) is counted but not part of the minimum.

The calendar (``calendar_rows``): publishing a year of both series and
free/busy of 150 people over six months with GraphCalendar; ``made`` counts
HTTP round trips, the note what the batches carried.

Each producer is ``(config, first) -> list[Row]``; ``PRODUCERS`` is what
``roundtrips`` runs for the ``graph`` backend.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone

from scheduler.config import Config

MAILS = 1000
INTAKE_LIMIT = 500  # Intake.run's default batch


class _Meta(dict):
    """The source's StateStore: the database in production, a dict here."""

    def get_meta(self, key: str) -> str | None:
        return self.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self[key] = value


def _operation(request) -> str:
    """A request's name in the table: the last path segment, $batch split by what it carries."""
    if request.path == "/$batch":
        inner = (request.json or {}).get("requests", [])
        kind = "move" if inner and inner[0]["url"].endswith("/move") else "$value"
        return f"$batch({kind})"
    return request.path.rsplit("/", 1)[-1]


def intake_rows(config: Config, first: date) -> list:
    from bench.meetings import Row
    from scheduler.graph.auth import TokenProvider
    from scheduler.graph.client import GraphClient
    from scheduler.graph.mailbox import GraphSource
    from scheduler.ports import Disposition
    from tests.servers.graph import SECRET, GraphServer

    with GraphServer() as server:
        fake = server.fake
        graph = config.graph.model_copy(update=server.config())
        mailbox = config.graph_mailbox
        fake.mailbox(mailbox)
        arrival = datetime.combine(first, datetime.min.time(), tzinfo=timezone.utc)
        for n in range(MAILS):
            fake.deliver(f"Message-ID: <bench-{n}@kommune.example>\r\n\r\nPunkt {n}\r\n".encode(),
                         arrival + timedelta(seconds=n), mailbox=mailbox)
        tokens = TokenProvider(graph, environ={graph.client_secret_env: SECRET})
        client = GraphClient(graph.endpoint, tokens, ca_file=graph.ca_file, mailbox=mailbox)
        source = GraphSource(client, mailbox, {d: d.value for d in Disposition}, _Meta(),
                             batch_size=graph.batch_size)
        taken = 0
        while batch := source.fetch(INTAKE_LIMIT):
            source.settle({Disposition.PROCESSED: [m.ref for m in batch]})
            taken += len(batch)
        assert taken == MAILS and not fake.in_folder("inbox", mailbox)
        made = Counter(_operation(r) for r in fake.http_requests())
        made["token"] = len(fake.token_requests)
    minimum = Counter({"delta": math.ceil(MAILS / graph.batch_size) + 1, "$batch($value)": math.ceil(MAILS / 20),
                       "$batch(move)": math.ceil(MAILS / 20), "childFolders": 1, "token": 1})
    per_mail = sum(made.values()) / MAILS
    return [Row("graph", f"intake: {MAILS} mails (delta, $value, move)", made, minimum,
                f"{per_mail:.3f} requests per mail (minimum {sum(minimum.values()) / MAILS:.3f}); "
                f"delta pages of {graph.batch_size}, $batch of 20; the 4 folder creations are first-run only")]


def _calendar_operation(request) -> str:
    """A Graph request by what it does: ``$batch``, or the inner operation."""
    path = request.path
    for suffix in ("/cancel", "/instances", "/getSchedule"):
        if path.endswith(suffix):
            return f"{request.method} {suffix[1:]}"
    if path.endswith("/events"):
        return "GET events (lookup)" if request.method == "GET" else "POST events"
    return f"{request.method} {'event' if '/events/' in path else path}"


def calendar_rows(config: Config, first: date) -> list:
    """GraphCalendar against the fake Graph server of the tests, in-process over HTTPS.

    ``made`` counts HTTP round trips to Graph ($batch and single requests;
    the token, once per hour, is not counted); the note lists the
    operations inside the batches.
    """
    from bench.meetings import HALF_YEAR, PEOPLE, Row, exdate_count, year_meetings
    from scheduler.config import GraphConfig
    from scheduler.graph.auth import TokenProvider
    from scheduler.graph.calendar import GraphCalendar
    from scheduler.graph.client import GraphClient
    from tests.servers.graph import SECRET, GraphServer
    from tests.servers.graph_calendar import register

    rows = []
    with GraphServer() as server:
        fake = server.fake
        mailbox = config.service.mailbox

        def measure(action: Callable[[GraphCalendar], None]) -> tuple[Counter, Counter]:
            fake.reset()
            register(fake)
            fake.mailbox(mailbox)
            tokens = TokenProvider(GraphConfig(**server.config()), environ={"SPARRING_GRAPH_SECRET": SECRET})
            tokens.token()  # the hourly token is not part of the count
            action(GraphCalendar(GraphClient(fake.endpoint, tokens, ca_file=server.ca_file, mailbox=mailbox),
                                 mailbox, config.tz))
            trips = Counter("$batch" if r.path == "/$batch" else _calendar_operation(r) for r in fake.http_requests())
            inner = Counter(_calendar_operation(r) for r in fake.requests if r.batched)
            return trips, inner

        for recurring, label in ((True, "publish a year: weekly recurring + monthly singles"),
                                 (False, "publish a year: every session a single event")):
            meetings = year_meetings(config, first, recurring=recurring)
            made, inner = measure(lambda cal: cal.put_many(meetings))
            cancelled = exdate_count(meetings)
            # Creates 20 to a $batch; a cancelled occurrence needs its id (instances), then its cancel.
            minimum = Counter({"$batch": math.ceil(len(meetings) / 20) + 2 * math.ceil(cancelled / 20)})
            rows.append(Row("graph", label, made, minimum, f"{len(meetings)} events, {cancelled} cancelled "
                            f"occurrences; inside: {_ops(inner)}"))

        domain = mailbox.split("@")[1]
        people = [f"person{n:03d}@{domain}" for n in range(PEOPLE)]
        start = datetime.combine(first, time(0), tzinfo=config.tz)

        def free_busy(cal: GraphCalendar) -> None:
            for person in people:
                fake.mailbox(person)
            cal.free_busy(people, start, start + HALF_YEAR)

        made, inner = measure(free_busy)
        requests = math.ceil(PEOPLE / 20) * math.ceil(HALF_YEAR / timedelta(days=41))
        rows.append(Row("graph", f"free/busy: {PEOPLE} people over 183 days", made,
                        Counter({"$batch": math.ceil(requests / 20)}),
                        f"{requests} getSchedule of <= 20 people and < 42 days; inside: {_ops(inner)}"))
    return rows


def _ops(counts: Counter) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))


PRODUCERS: list[Callable[[Config, date], list]] = [calendar_rows, intake_rows]


def run_graph(config: Config, first: date) -> list:
    return [row for producer in PRODUCERS for row in producer(config, first)]
