"""``sparring run --once`` and ``sparring book`` with all three ports on Graph
(intake, outbox and calendar), against the fake Graph server: mail taken in
and answered, the sessions published in the forum mailbox's calendar (Exchange
mails the invitations, so sparring sends none of its own), the caseworker
invited to her slot, the agenda sent at the deadline, and a network meeting
booked by getSchedule."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email import message_from_bytes

from scheduler import wiring
from scheduler.cli import main
from scheduler.graph.events import parse_time
from scheduler.store.keys import new_key
from tests.appkit import TZ, item_mail
from tests.servers.graph import SECRET
from tests.servers.graph_calendar import calendar_of
from tests.test_graph_e2e import graph_toml

A, B = "anne@kommune.example", "bo@kommune.example"


def test_the_whole_cycle_runs_on_exchange_online(tmp_path, graph_server, graph, graph_calendar, monkeypatch,
                                                 capsys):
    monkeypatch.setattr(wiring, "_graph_clients", {})
    monkeypatch.setenv("SPARRING_GRAPH_SECRET", SECRET)
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    config = graph_toml(graph_server, tmp_path, calendar="graph")
    data = tmp_path / "var"

    def sparring(now: str, *argv: str) -> int:
        return main(["--config", str(config), "--data-dir", str(data), "--now", now, *argv])

    graph.deliver(item_mail("150303-4321", "g1"), datetime(2027, 1, 4, 9, 5, tzinfo=timezone.utc))
    assert sparring("2027-01-04T10:30", "run", "--once") == 0
    assert graph.in_folder("inbox") == [] and len(graph.in_folder("Behandlet")) == 1
    series = [e for e in graph_calendar.events.values() if e.data.get("recurrence")]
    assert len(series) == 1 and len(graph_calendar.events) > 1  # the weekly series, the monthly singles
    [slot] = [e for e in graph_calendar.events.values() if "karen@kommune.example" in e.attendees]
    assert parse_time(slot.data["start"], TZ).date().isoformat() == "2027-01-07"
    sent = [message_from_bytes(m.mime) for m in graph.mailbox().sent]
    assert any(m["To"] == "karen@kommune.example" for m in sent)  # the receipt
    assert not [p for m in sent for p in m.walk() if p.get_content_type() == "text/calendar"]

    assert sparring("2027-01-04T12:30", "run", "--once") == 0  # the deadline has passed: the agenda
    agendas = [message_from_bytes(m.mime) for m in graph.mailbox().sent[len(sent):]]
    assert any("koordinator.unge@kommune.example" in (m["To"] or "") for m in agendas)

    for person in (A, B):
        graph.mailbox(person)
    day = datetime(2027, 1, 11, tzinfo=TZ)
    calendar_of(graph, A).availability = [(day + timedelta(hours=9), day + timedelta(hours=11), "busy")]
    calendar_of(graph, B).availability = [(day + timedelta(hours=11), day + timedelta(hours=12), "tentative")]
    capsys.readouterr()
    code = sparring("2027-01-05T08:00", "book", "network", "--from", "2027-01-11", "--to", "2027-01-15",
                    "--duration", "60", "--required", f"{A},{B}", "--json")
    assert code == 0
    booked = json.loads(capsys.readouterr().out)
    assert booked["start"] == "2027-01-11T12:00:00+01:00"
    [meeting] = [e for e in graph_calendar.events.values() if A in e.attendees]
    assert set(meeting.attendees) == {A, B}
