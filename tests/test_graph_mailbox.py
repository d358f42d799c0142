"""GraphSource and GraphTransport against the fake Graph server: what the
contract suites do not say: the delta link in the database, resuming
mid-round, a link Graph forgot, request counts, MIME byte for byte."""

from __future__ import annotations

import base64
import logging
from datetime import datetime, timedelta, timezone

import pytest

from scheduler.config import GraphConfig
from scheduler.graph.auth import TokenProvider
from scheduler.graph.client import GraphClient
from scheduler.graph.mailbox import GraphSource, GraphTransport, delta_key
from scheduler.ports import Disposition, OutgoingMail, PermanentError
from tests.appkit import FOLDERS, build
from tests.servers.graph import MAILBOX, SECRET
from tests.test_source_contract import T0, mail


def graph_client(server, sleep=lambda seconds: None) -> GraphClient:
    tokens = TokenProvider(GraphConfig(**server.config()), environ={"SPARRING_GRAPH_SECRET": SECRET})
    return GraphClient(server.fake.endpoint, tokens, ca_file=server.ca_file, sleep=sleep, mailbox=MAILBOX)


def state(tmp_path, monkeypatch):
    """The database a source keeps its delta link in: a real App's."""
    app, _ = build(tmp_path / "app", "2025-01-06T08:00", monkeypatch)
    return app


@pytest.fixture
def app(tmp_path, monkeypatch):
    return state(tmp_path, monkeypatch)


def source(graph_server, app, batch_size=2) -> GraphSource:
    return GraphSource(graph_client(graph_server), MAILBOX, FOLDERS, app, batch_size=batch_size)


def deliver(graph, count: int, first: int = 0) -> list[str]:
    return [graph.deliver(mail(n), T0 + timedelta(hours=n)) for n in range(first, first + count)]


def test_a_restart_mid_round_resumes_at_the_stored_link(graph_server, graph, app):
    deliver(graph, 6)
    first = source(graph_server, app)
    batch = first.fetch(limit=2)  # one page of two: the round is not over
    first.settle({Disposition.PROCESSED: [m.ref for m in batch]})
    link = app.get_meta(delta_key(MAILBOX))
    assert "$skiptoken=" in link

    graph.requests.clear()
    again = source(graph_server, app).fetch(limit=10)
    assert [m.raw for m in again] == [mail(n) for n in range(2, 6)]
    first_delta = next(r for r in graph.requests if "/delta" in r.path)
    assert "$skiptoken" in first_delta.query  # resumed, not started over


def test_the_delta_link_is_kept_only_once_everything_it_passed_is_settled(graph_server, graph, app):
    deliver(graph, 3)
    src = source(graph_server, app, batch_size=10)
    fetched = src.fetch(limit=10)
    assert app.get_meta(delta_key(MAILBOX)) is None  # three fetched, none settled
    src.settle({Disposition.PROCESSED: [m.ref for m in fetched[:2]]})
    assert app.get_meta(delta_key(MAILBOX)) is None  # one still open
    src.settle({Disposition.REJECTED: [fetched[2].ref]})
    assert "$deltatoken=" in app.get_meta(delta_key(MAILBOX))
    graph.requests.clear()
    assert source(graph_server, app, batch_size=10).fetch(limit=10) == []  # only the moves: @removed
    assert graph.count("GET", "/delta$") == 1 and graph.count("POST", r"\$batch") == 0


def test_a_forgotten_delta_link_reads_the_inbox_afresh(graph_server, graph, app):
    deliver(graph, 2)
    src = source(graph_server, app, batch_size=10)
    src.settle({Disposition.PROCESSED: [src.fetch(limit=10)[0].ref]})
    graph.fail_next("GET", "/delta$", 410, code="SyncStateNotFound")
    fresh = source(graph_server, app, batch_size=10)
    assert [m.raw for m in fresh.fetch(limit=10)] == [mail(1)]


def test_requests_per_batch_one_delta_page_one_mime_batch_one_move_batch(graph_server, graph, app):
    deliver(graph, 40)
    src = source(graph_server, app, batch_size=50)
    graph.requests.clear()
    fetched = src.fetch(limit=50)
    src.settle({Disposition.PROCESSED: [m.ref for m in fetched]})
    outer = [(r.method, r.path) for r in graph.http_requests()]
    assert outer.count(("GET", f"/users/{MAILBOX}/mailFolders/inbox/messages/delta")) == 1
    assert outer.count(("POST", "/$batch")) == 4  # MIME 20 + 20, moves 20 + 20
    assert graph.count("POST", "/childFolders$") == 4  # the Danish folders, made once
    assert graph.count("GET", r"/\$value$", batched=True) == 40
    assert len(graph.in_folder("Behandlet")) == 40 and graph.in_folder("inbox") == []


def test_a_mail_moved_away_by_a_person_meanwhile_is_dropped(graph_server, graph, app):
    refs = deliver(graph, 2)
    src = source(graph_server, app)
    assert len(src.fetch(limit=10)) == 2  # then not settled: a failed batch
    box = graph.mailbox()
    graph.move(box, box.messages[refs[0]], box.folder("deleteditems"))
    assert [m.raw for m in src.fetch(limit=10)] == [mail(1)]  # its $value answers 404


def test_a_missing_permission_is_named(graph_server, graph, app):
    graph.permissions.discard("Mail.ReadWrite")
    with pytest.raises(PermanentError, match=r"Mail\.ReadWrite.*sparring@kommune\.example"):
        source(graph_server, app).fetch(limit=10)


def test_mail_content_stays_out_of_logs_and_errors(graph_server, graph, app, caplog):
    caplog.set_level(logging.DEBUG)
    raw = mail(1).replace(b"Punkt nummer 1", b"CPR 010190-1234, helbred: fiktivt")
    graph.deliver(raw, T0)
    graph.fail_next("POST", r"/\$batch", 429, retry_after=0)
    [got] = source(graph_server, app).fetch(limit=10)
    assert got.raw == raw
    assert "010190" not in caplog.text and base64.b64encode(raw).decode()[:40] not in caplog.text


def test_purge_deletes_settled_mail_older_than_the_cutoff(graph_server, graph, app):
    refs = deliver(graph, 3)
    src = source(graph_server, app)
    src.settle({Disposition.PROCESSED: refs})
    assert src.purge_settled(T0 + timedelta(hours=1, minutes=30)) == 2
    assert [m.received for m in graph.in_folder("Behandlet")] == [T0 + timedelta(hours=2)]


def outgoing(*recipients: str, to: str = "koordinator@kommune.example") -> OutgoingMail:
    message = (f"From: Sparringsforum <{MAILBOX}>\r\nTo: {to}\r\nSubject: Dagsorden\r\n"
               "Message-ID: <a1@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\nDagsorden: æøå.\r\n").encode()
    return OutgoingMail(MAILBOX, recipients or (to,), message, kind="agenda")


def test_send_posts_the_mime_byte_for_byte_in_one_request(graph_server, graph):
    mail_ = outgoing()
    GraphTransport(graph_client(graph_server), MAILBOX).send(mail_)
    [sent] = graph.mailbox().sent
    assert sent.mime == mail_.message and sent.bcc == []
    [post] = graph.http_requests()
    assert post.path == f"/users/{MAILBOX}/sendMail" and post.headers["content-type"] == "text/plain"
    assert base64.b64decode(post.body) == mail_.message


def test_recipients_the_headers_do_not_name_go_as_bcc(graph_server, graph):
    mail_ = outgoing("koordinator@kommune.example", "sagsbehandler@kommune.example")
    GraphTransport(graph_client(graph_server), MAILBOX).send(mail_)
    [sent] = graph.mailbox().sent
    assert sent.mime == mail_.message and sent.bcc == ["sagsbehandler@kommune.example"]
    assert graph.mailbox().folder("drafts") and not [m for m in graph.mailbox().messages.values() if m.draft]


def test_send_without_mail_send_names_it(graph_server, graph):
    graph.permissions.discard("Mail.Send")
    with pytest.raises(PermanentError, match=r"Mail\.Send"):
        GraphTransport(graph_client(graph_server), MAILBOX).send(outgoing())


def test_received_time_is_graphs_not_the_date_header(graph_server, graph, app):
    raw = b"Date: Mon, 06 Jan 2025 06:00:00 +0100\r\n" + mail(3)
    graph.deliver(raw, datetime(2025, 1, 6, 11, 5, tzinfo=timezone.utc))
    [got] = source(graph_server, app).fetch(limit=10)
    assert got.received_at == datetime(2025, 1, 6, 11, 5, tzinfo=timezone.utc)


class Waits(list):
    """The daemon's stop event, recording how long it was asked to wait."""

    def wait(self, timeout: float) -> bool:
        self.append(timeout)
        return False

    def is_set(self) -> bool:
        return False


def test_the_daemon_stays_away_as_long_as_graph_asks(graph_server, graph, tmp_path, monkeypatch):
    from scheduler.daemon import Daemon
    from scheduler.services.intake import Intake

    app, _ = build(tmp_path / "daemon", "2025-01-06T08:00", monkeypatch)
    daemon = Daemon(app, poll_seconds=5)
    daemon.stopping = Waits()
    graph.fail_next("GET", "/delta$", 429, retry_after=600)
    assert daemon._intake_once(Intake(app), source(graph_server, app)) is False
    assert daemon.stopping == [600]  # not the 5 s poll: Graph would answer 429 again


def test_the_copy_in_sent_items_is_erased_by_message_id_and_purged_after_the_retention(graph_server, graph, app):
    src, transport = source(graph_server, app), GraphTransport(graph_client(graph_server), MAILBOX)
    for n in (1, 2, 3):
        transport.send(OutgoingMail(MAILBOX, ("karen@kommune.example",), mail(n), kind="receipt"))
    for message, days in zip(graph.in_folder("sentitems"), (0, 1, 30)):
        message.received = T0 + timedelta(days=days)  # when Exchange stored the copy

    assert src.erase_settled(["<kontrakt-1@kommune.example>"]) == 1
    assert src.purge_settled(T0 + timedelta(days=2)) == 1  # the copy of day 1; day 30's is within the period
    assert [m.internet_message_id for m in graph.in_folder("sentitems")] == ["<kontrakt-3@kommune.example>"]
