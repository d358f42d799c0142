"""Booking by free/busy through ``sparring book`` on the embedded default.

People's calendars are ``<data-dir>/freebusy/<address>.ics`` files, as an
export from Outlook would give them.
"""

from __future__ import annotations

import contextlib
import email
import io
import json
import re

import pytest
from pathlib import Path

from icalendar import Calendar

from scheduler.cli import main
from scheduler.store.keys import new_key

CONFIG = str(Path(__file__).parent.parent / "config" / "sparring.toml")
A, B, C = "anne@kommune.example", "bo@kommune.example", "carl@kommune.example"


def busy_file(data: Path, address: str, *spans: tuple[str, str]) -> None:
    folder = data / "freebusy"
    folder.mkdir(parents=True, exist_ok=True)
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:{address}-{n}\r\nDTSTAMP:20270101T000000Z\r\n"
        f"DTSTART;TZID=Europe/Copenhagen:{start}\r\nDTEND;TZID=Europe/Copenhagen:{end}\r\n"
        f"SUMMARY:Optaget\r\nEND:VEVENT\r\n"
        for n, (start, end) in enumerate(spans)
    )
    (folder / f"{address}.ics").write_text(
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//\r\n{events}END:VCALENDAR\r\n"
    )


def run(data: Path, *argv: str, now: str = "2027-01-28T08:00") -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["--config", CONFIG, "--data-dir", str(data), "--now", now, *argv])
    return code, out.getvalue()


def setup(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    busy_file(tmp_path, A, ("20270201T090000", "20270201T120000"))
    busy_file(tmp_path, B, ("20270201T120000", "20270201T150000"), ("20270202T090000", "20270202T100000"))
    busy_file(tmp_path, C, ("20270202T100000", "20270202T110000"))
    return tmp_path


def test_dry_run_finds_earliest_common_slot_json_contract(tmp_path, monkeypatch):
    data = setup(tmp_path, monkeypatch)
    code, out = run(data, "book", "network", "--from", "2027-02-01", "--to", "2027-02-05", "--duration", "60",
                    "--required", f"{A},{B}", "--optional", C, "--dry-run", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"start", "end", "required_free", "optional_free", "invited", "warnings"}
    # 1 Feb: A busy 9-12, B busy 12-15 -> nothing. 2 Feb: B busy 9-10, C 10-11: earliest is 10:00
    # but C (optional) is free from 11:00 the same day -> most optional free wins within the day.
    assert result["start"] == "2027-02-02T11:00:00+01:00" and result["end"] == "2027-02-02T12:00:00+01:00"
    assert result["required_free"] is True and result["optional_free"] == 1
    assert result["invited"] == [A, B, C] and result["warnings"] == []
    assert not (data / "outbox").exists() or not list((data / "outbox").iterdir())


def test_no_slot_exit_3_with_danish_reason(tmp_path, monkeypatch):
    data = setup(tmp_path, monkeypatch)
    code, out = run(data, "book", "network", "--from", "2027-02-01", "--to", "2027-02-01", "--duration", "60",
                    "--required", f"{A},{B}", "--json")
    assert code == 3
    result = json.loads(out)
    assert result["start"] is None and "påkrævede deltagere" in result["reason"]


def test_unknown_free_busy_is_a_warning_not_silently_free(tmp_path, monkeypatch):
    data = setup(tmp_path, monkeypatch)
    code, out = run(data, "book", "network", "--from", "2027-02-03", "--to", "2027-02-03", "--duration", "30",
                    "--required", f"{A},nobody@kommune.example", "--dry-run", "--json")
    assert code == 0
    assert any("nobody@kommune.example" in w for w in json.loads(out)["warnings"])


def test_coordination_booking_invites_with_joint_plan_and_offers_joint_conversation(tmp_path, monkeypatch):
    data = setup(tmp_path, monkeypatch)
    code, out = run(data, "book", "coordination", "--from", "2027-02-02", "--to", "2027-02-05", "--duration", "45",
                    "--required", f"{A},{B}", "--external", "mor@example.org", "--joint", "--json")
    assert code == 0
    result = json.loads(out)
    assert "joint_conversation" in result
    assert result["joint_conversation"]["start"] >= result["end"]
    invitations = [email.message_from_bytes(p.read_bytes()) for p in sorted((data / "outbox").glob("*invitation*"))]
    assert invitations
    calendars = []
    for message in invitations:
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                calendars.append(Calendar.from_ical(part.get_payload(decode=True)))
    events = [e for cal in calendars for e in cal.walk("VEVENT")]
    coordination = [e for e in events if str(e["SUMMARY"]) == "Koordineringsmøde"]
    assert coordination
    description = str(coordination[0]["DESCRIPTION"])
    for heading in ("Indsatser og formål", "Hvem gør hvad", "Periode", "Parallelt eller i rækkefølge",
                    "Rammen for samarbejdet", "Opfølgning"):
        assert heading in description
    attendees = {str(a).lower().removeprefix("mailto:") for a in coordination[0].get("ATTENDEE")}
    assert attendees == {A, B, "mor@example.org"}
    assert any(str(e["SUMMARY"]) == "Fællessamtale med borgeren" for e in events)
    assert list((data / "calendar").glob("*.ics"))


def test_bad_arguments_are_one_sentence(tmp_path, monkeypatch, capsys):
    data = setup(tmp_path, monkeypatch)
    code, _ = run(data, "book", "network", "--from", "2027-02-05", "--to", "2027-02-01", "--duration", "60",
                  "--required", A)
    assert code == 1


@pytest.mark.parametrize("title", ["Møde om 120502-4127", "Møde om 120502\u20134127", "Møde om 1205024127",
                                   "Hej\r\nBcc: evil@x.org", "Hej\nBcc: evil@x.org"])
def test_a_title_with_a_cpr_or_a_line_break_is_refused_in_one_sentence(tmp_path, monkeypatch, title):
    data = setup(tmp_path, monkeypatch)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", CONFIG, "--data-dir", str(data), "--now", "2027-01-28T08:00", "book", "network",
                     "--from", "2027-02-01", "--to", "2027-02-05", "--duration", "60", "--required", f"{A},{B}",
                     "--title", title])
    assert code == 1 and "booked" not in out.getvalue()
    assert err.getvalue().startswith("sparring: book: --title ") and err.getvalue().count("\n") == 1
    assert "4127" not in err.getvalue()
    assert not (data / "outbox").exists() or not list((data / "outbox").iterdir())


def test_a_hostile_title_past_the_command_line_is_still_one_header_and_masked(tmp_path, monkeypatch):
    """The composer and the meeting are the last guards: a title that reached
    the booker unchecked writes no Bcc and no CPR into the invitation."""
    from datetime import date, timedelta

    from scheduler.services.booking import Booker, BookingRequest
    from tests.appkit import build

    setup(tmp_path, monkeypatch)
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    request = BookingRequest(kind="network", first=date(2027, 2, 1), last=date(2027, 2, 5),
                             duration=timedelta(minutes=60), required=(A, B),
                             title="Møde om 120502\u20134127\r\nBcc: evil@x.org")
    assert Booker(app, dispatcher.calendar).book(request).meeting is not None
    report = dispatcher.run_once()
    assert report.failed == 0 and report.sent >= 2
    files = list((tmp_path / "outbox").glob("*.eml")) + list((tmp_path / "calendar").glob("*.ics"))
    for path in files:
        raw = path.read_bytes()
        assert b"\r\nBcc:" not in raw.partition(b"\r\n\r\n")[0]
        message = email.message_from_bytes(raw, policy=email.policy.default)
        texts = [str(message["Subject"] or "")] + [
            part.get_payload(decode=True).decode("utf-8") for part in message.walk() if not part.is_multipart()]
        assert not any(re.search(r"120502[^0-9x]{0,6}4127", text) for text in texts), path.name
        assert "Bcc" not in str(message.keys())
