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

Each producer is ``(config, first) -> list[Row]``; ``PRODUCERS`` is what
``roundtrips`` runs for the ``graph`` backend (the calendar adds its own).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

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
    from bench.roundtrips import Row
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


PRODUCERS: list[Callable[[Config, date], list]] = [intake_rows]


def run_graph(config: Config, first: date) -> list:
    return [row for producer in PRODUCERS for row in producer(config, first)]
