"""A week of real-looking mail through ``sparring ingest`` on the embedded default.

Each mail arrives at its Date header's time (``--now``); the test then reads
what a coordinator and a caseworker would see: the JSON outcomes, the
receipts, alerts and invitations in ``var/outbox/``, the agenda, and the
database file's bytes.
"""

from __future__ import annotations

import email
import json
import re
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from scheduler.cli import main
from tests.mails import EXPECTED, week_one

CONFIG = str(Path(__file__).parent.parent / "config" / "sparring.toml")
CPR_FULL = re.compile(r"(?<!\d)\d{6}-?\d{4}(?!\d)")
HEALTH_WORDS = ("Angst", "Rygskade", "Depression", "Alkohol", "ADHD", "Selvmordstanker", "Spiseforstyrrelse")


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    data = tmp_path_factory.mktemp("var")
    mails = week_one()
    folder = tmp_path_factory.mktemp("mails")
    outcomes = {}
    order = sorted(mails, key=lambda n: parsedate_to_datetime(email.message_from_bytes(mails[n])["Date"]))
    for name in order:
        path = folder / f"{name}.eml"
        path.write_bytes(mails[name])
        when = parsedate_to_datetime(email.message_from_bytes(mails[name])["Date"]).isoformat()
        out = _run(["--config", CONFIG, "--data-dir", str(data), "--demo", "--now", when,
                    "ingest", "--eml", str(path), "--json"])
        outcomes[name] = json.loads(out.strip().splitlines()[-1])
    return data, outcomes


def _run(argv: list[str]) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    assert code == 0, buffer.getvalue()
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_mail_gets_the_outcome_a_coordinator_expects(week, name):
    _, outcomes = week
    outcome, series, day = EXPECTED[name]
    got = outcomes[name]
    assert got["outcome"] == outcome, got
    assert got["series"] == series
    assert (got["session_start"] or "")[:10] == (day or "")
    if outcome in ("rejected",):
        assert got["reason"] and "\n" not in got["reason"]
    assert got["acute"] == (name == "08-acute")


def _outbox(data: Path) -> list[email.message.Message]:
    return [email.message_from_bytes(p.read_bytes()) for p in sorted((data / "outbox").glob("*.eml"))]


def _text(message) -> str:
    parts = [p.get_payload(decode=True) for p in message.walk() if not p.is_multipart()]
    return "\n".join(p.decode("utf-8", "replace") for p in parts if p)


def test_every_person_gets_exactly_one_receipt(week):
    data, outcomes = week
    receipts = [m for m in _outbox(data) if m["In-Reply-To"]]
    answered = sorted(m["In-Reply-To"] for m in receipts)
    people = [n for n, (outcome, _, _) in EXPECTED.items() if outcome not in ("duplicate", "ignored", "quarantined")]
    expected = sorted(f"<e{name[:2]}@mail.kommune.example>" for name in people)
    assert answered == expected
    assert all(m["Auto-Submitted"] == "auto-replied" for m in receipts)


def test_receipts_and_invitations_hold_no_cpr_or_health_text(week):
    data, _ = week
    for message in _outbox(data):
        if message["Subject"] and "Dagsorden" in message["Subject"]:
            continue
        if "AKUT" in (message["Subject"] or ""):
            continue  # the coordinators' alert carries the item, checked below
        text = _text(message) + str(message["Subject"])
        hit = CPR_FULL.search(text.replace("xxxx", ""))
        assert not hit, (message["Subject"], hit.group(0))
        assert not [word for word in HEALTH_WORDS if word in text], message["Subject"]


def test_acute_alert_goes_to_coordinators_without_health_text_in_subject(week):
    data, _ = week
    alerts = [m for m in _outbox(data) if "AKUT" in (m["Subject"] or "")]
    assert len(alerts) == 1
    alert = alerts[0]
    assert "koordinator.social@kommune.example" in alert["To"]
    assert "Selvmordstanker" not in alert["Subject"] and "Selvmordstanker" in _text(alert)


def test_caseworkers_get_slot_invitations(week):
    data, _ = week
    invitations = [m for m in _outbox(data) if any(p.get_content_type() == "text/calendar" for p in m.walk())]
    assert invitations
    for message in invitations:
        part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
        body = part.get_payload(decode=True).decode()
        assert f"METHOD:{part.get_param('method')}" in body


def test_agenda_shows_slots_in_order_acute_first(week):
    data, _ = week
    out = _run(["--config", CONFIG, "--data-dir", str(data), "--demo", "--now", "2027-01-07T08:00:00+01:00",
                "agenda", "--series", "unge", "--session", "2027-01-07", "--format", "json"])
    agenda = json.loads(out)
    assert [i["acute"] for i in agenda["items"]] == [True]
    assert agenda["items"][0]["start"].startswith("2027-01-07T10:00")
    assert agenda["items"][0]["cpr"] == "150303-xxxx"
    text = _run(["--config", CONFIG, "--data-dir", str(data), "--demo", "--now", "2027-01-07T08:00:00+01:00",
                 "agenda", "--series", "voksne", "--next"])
    assert "020280-xxxx" in text and "171072-xxxx" in text and "Se lægeerklæring." in text


def test_database_file_holds_no_cpr_or_health_text(week):
    data, _ = week
    raw = b"".join(p.read_bytes() for p in data.glob("sparring.db*"))
    for cpr in ("150303-4321", "1503034321", "020280-1234", "0202801234", "110698", "171072", "0507015555"):
        assert cpr.encode() not in raw
    for word in HEALTH_WORDS:
        assert word.encode() not in raw


def test_inbox_files_given_with_eml_are_left_alone(week, tmp_path):
    data, _ = week
    assert not (data / "processed").exists() or not list((data / "processed").iterdir())
