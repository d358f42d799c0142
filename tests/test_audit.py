"""Issue 13: the audit trail, access (art. 15) and erasure (art. 17)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text, update

from scheduler.cli import main
from scheduler.services import deadlines
from scheduler.services.access import access, erase
from scheduler.services.retention import cut_trail, purge
from scheduler.store import audit
from scheduler.store.tables import AuditEntry
from tests.appkit import at, build, ingest, item_mail
from tests.test_services import calendar_part, outbox_messages

CPR = "150303-4321"
OTHER = "020304-4002"


def _trail(app) -> list:
    with app.connection() as connection:
        return connection.execute(select(AuditEntry).order_by(AuditEntry.id)).all()


def _verify(app) -> audit.Verdict:
    with app.connection() as connection:
        return audit.verify(connection, app.cipher)


def _week(tmp_path, monkeypatch, db_url=None):
    """Two citizens' items on Monday; the agenda goes out at the deadline."""
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch, db_url=db_url)
    ingest(app, item_mail(CPR, "a1"), "2027-01-04T09:00")
    ingest(app, item_mail(OTHER, "b1", sender="ole@kommune.example"), "2027-01-04T09:05")
    dispatcher.run_once()
    return app, dispatcher


def test_placing_and_sending_are_audited_without_personal_data(tmp_path, monkeypatch):
    app, dispatcher = _week(tmp_path, monkeypatch)
    rows = _trail(app)
    actions = [r.action for r in rows]
    assert actions.count("item-placed") == 2 and actions.count("receipt-sent") == 2
    placed = next(r for r in rows if r.action == "item-placed")
    assert placed.actor == "karen@kommune.example" and placed.message_id == "<a1@kommune.example>"
    assert placed.subject == app.cipher.lookup_hash(CPR.replace("-", ""), purpose="cpr")
    receipt = next(r for r in rows if r.action == "receipt-sent")
    assert json.loads(receipt.recipients) == ["karen@kommune.example"] and receipt.message_id
    # The agenda at Monday's deadline: one row per citizen per copy, with its recipients.
    app.clock.set(at("2027-01-04T12:00"))
    assert deadlines.send_agenda(app, "unge/2027-01-07")
    dispatcher.run_once()
    agenda_rows = [r for r in _trail(app) if r.action == "agenda-sent"]
    coordinators = [r for r in agenda_rows if "karen@kommune.example" not in json.loads(r.recipients)]
    assert len({r.subject for r in coordinators}) == 2
    own = [r for r in agenda_rows if json.loads(r.recipients) == ["karen@kommune.example"]]
    assert [r.subject for r in own] == [placed.subject], "a caseworker's copy holds only her own item"
    dump = json.dumps([list(r) for r in _trail(app)], default=str)
    assert "4321" not in dump and "Angst" not in dump and "150303" not in dump
    assert _verify(app).ok


def test_a_withdrawal_is_audited_with_its_mail(tmp_path, monkeypatch):
    app, _ = _week(tmp_path, monkeypatch)
    outcome = ingest(app, item_mail(CPR, "w1", subject="Træk tilbage"), "2027-01-04T10:00")
    assert outcome.outcome == "withdrawn"
    row = [r for r in _trail(app) if r.action == "item-withdrawn"][-1]
    assert row.actor == "karen@kommune.example" and row.message_id == "<w1@kommune.example>"


def test_a_changed_or_removed_row_fails_verify(tmp_path, monkeypatch, capsys):
    app, _ = _week(tmp_path, monkeypatch)
    assert _verify(app).ok
    with app.connection() as connection:
        connection.execute(update(AuditEntry).where(AuditEntry.id == 2).values(actor="someone@else.example"))
    verdict = _verify(app)
    assert not verdict.ok and "row 2 was changed" in verdict.problem
    with app.connection() as connection:
        connection.execute(text("DELETE FROM audit WHERE id = 2"))
    verdict = _verify(app)
    assert not verdict.ok and "row 2 is missing" in verdict.problem
    code = main(["--config", str(app.config.source), "--data-dir", str(tmp_path), "--now", "2027-01-04T11:00",
                 "audit", "--verify"])
    assert code == 1 and "broken" in capsys.readouterr().out


def test_the_chain_still_verifies_after_the_trails_own_retention(tmp_path, monkeypatch):
    app, dispatcher = _week(tmp_path, monkeypatch)
    kept_before = len(_trail(app))
    app.clock.set(at("2032-02-01T03:00"))  # past the five years of every row so far
    ingest(app, item_mail("010101-4001", "late"), "2032-02-02T09:00")
    app.clock.set(at("2032-02-03T03:00"))
    removed = cut_trail(app)
    assert removed == kept_before
    rows = _trail(app)
    assert rows[0].action == "item-placed" and any(r.action == audit.CUT for r in rows)
    assert _verify(app).ok
    # Removing the oldest kept row is still found: the cut row anchors the start.
    with app.connection() as connection:
        connection.execute(text(f"DELETE FROM audit WHERE id = {rows[0].id}"))
    assert not _verify(app).ok


def test_purge_appends_a_row_per_purged_item(tmp_path, monkeypatch):
    app, _ = _week(tmp_path, monkeypatch)
    app.clock.set(at("2027-03-01T03:00"))
    report = purge(app)
    assert report.items == 2
    assert len([r for r in _trail(app) if r.action == "item-purged"]) == 2
    assert _verify(app).ok


def test_access_shows_trail_and_current_data_and_is_audited(tmp_path, monkeypatch, capsys):
    app, _ = _week(tmp_path, monkeypatch)
    config = str(app.config.source)
    code = main(["--config", config, "--data-dir", str(tmp_path), "--now", "2027-01-04T11:00",
                 "audit", "--cpr", CPR, "--json"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    trail = [line for line in lines if "action" in line]
    assert {"at", "action", "actor", "series", "session_start", "message_id", "recipients"} == set(trail[0])
    assert [t["action"] for t in trail] == ["item-placed", "receipt-sent"]
    (item,) = [line for line in lines if "item" in line]
    assert item["cpr"] == CPR and item["health"] and item["social"] == ["Gæld."]
    copies = [line for line in lines if "copy" in line]
    assert [c["copy"] for c in copies] == ["receipt"]
    assert "020304" not in json.dumps(lines), "nothing about another citizen"
    assert _trail(app)[-1].action == "access-export" and _trail(app)[-1].actor.startswith("cli:")


def test_access_refuses_a_malformed_number_in_one_sentence(tmp_path, monkeypatch, capsys):
    app, _ = _week(tmp_path, monkeypatch)
    code = main(["--config", str(app.config.source), "--data-dir", str(tmp_path), "audit", "--cpr", "12345"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "--cpr is not a valid CPR number" in err


def _raw_files(tmp_path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_erase_leaves_no_byte_of_the_citizen_and_access_shows_the_trail_only(tmp_path, monkeypatch, capsys):
    app, dispatcher = _week(tmp_path, monkeypatch)
    # The mails were taken in through the folder source: their raw copies are settled there.
    (tmp_path / "processed").mkdir(exist_ok=True)
    (tmp_path / "processed" / "m2027-01-04T09:00").write_bytes(item_mail(CPR, "a1"))
    (tmp_path / "processed" / "m2027-01-04T09:05").write_bytes(item_mail(OTHER, "b1"))
    before = _raw_files(tmp_path)
    assert b"Angst" in before  # the outbox folder holds the sent receipts, the folders the source mails
    config = str(app.config.source)
    code = main(["--config", config, "--data-dir", str(tmp_path), "--now", "2027-01-04T11:00",
                 "erase", "--cpr", CPR, "--json"])
    assert code == 0
    counts = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert counts == {"items": 1, "outbox": 1, "mails": 1, "calendar": 1}
    raw = _raw_files(tmp_path)
    for needle in (b"150303-4321", b"1503034321", b"150303-xxxx", b"150303"):
        assert needle not in raw, needle
    assert b"020304-xxxx" in raw, "the other citizen's data stays"
    code = main(["--config", config, "--data-dir", str(tmp_path), "--now", "2027-01-04T11:05",
                 "audit", "--cpr", CPR, "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all("action" in line for line in lines), "nothing but trail rows"
    assert lines[-1]["action"] == "erased"
    assert _verify(app).ok


def test_erase_cancels_the_slot_invitation(tmp_path, monkeypatch):
    app, dispatcher = _week(tmp_path, monkeypatch)
    done = erase(app, CPR)
    dispatcher.run_once()
    assert done.calendar == 1
    cancels = [m for m in outbox_messages(tmp_path)
               if calendar_part(m) and str(calendar_part(m)["METHOD"]) == "CANCEL"]
    assert len(cancels) == 1 and cancels[0]["To"] == "karen@kommune.example"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_raw_database_holds_no_cpr_or_health_text(tmp_path, monkeypatch, backend, request):
    db_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    app, dispatcher = _week(tmp_path, monkeypatch, db_url=db_url)
    access(app, CPR)
    with app.connection() as connection:
        dump = "\n".join(repr(tuple(r)) for table in ("audit", "items", "mails", "outbox")
                         for r in connection.execute(text(f"SELECT * FROM {table}")))
    for needle in ("150303-4321", "1503034321", "150303-xxxx", "Angst", "Gæld"):
        assert needle not in dump
    assert _verify(app).ok


def test_a_rejected_mail_naming_a_citizen_is_in_their_trail_and_erased_with_them(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    cpr = "150370-1234"
    # Six lines of text: more than intake.max_lines, so the mail is rejected.
    raw = item_mail(cpr, "r1").replace(b"Helbred: Angst.", b"Helbred: a\r\nb\r\nc\r\nd\r\ne\r\nf")
    outcome = ingest(app, raw, "2027-01-04T09:00")
    assert outcome.outcome == "rejected"
    (tmp_path / "rejected").mkdir(exist_ok=True)
    (tmp_path / "rejected" / "m2027-01-04T09:00").write_bytes(raw)
    (row,) = [r for r in _trail(app) if r.action == "mail-rejected"]
    assert row.subject == app.cipher.lookup_hash("1503701234", purpose="cpr") and row.message_id == "<r1@kommune.example>"
    done = erase(app, cpr)
    assert done.mails == 1 and not (tmp_path / "rejected" / "m2027-01-04T09:00").exists()


def test_erase_deletes_the_moved_mails_in_the_imap_folders(tmp_path, monkeypatch, imap_mailbox):
    from datetime import datetime, timezone

    from scheduler.mail.imap import ImapSource
    from scheduler.services.access import erase_in_mailbox
    from scheduler.services.intake import Intake
    from scheduler.tls import client_context
    from tests.test_intake_sources import FOLDERS

    # Dovecot refuses APPEND dates in the future: the mails arrive in January 2025.
    app, _ = build(tmp_path, "2025-01-06T08:00", monkeypatch)
    imap_mailbox.append(item_mail(CPR, "i1"), datetime(2025, 1, 6, 6, 0, tzinfo=timezone.utc))
    imap_mailbox.append(item_mail(OTHER, "i2"), datetime(2025, 1, 6, 6, 1, tzinfo=timezone.utc))
    withdrawal = item_mail(CPR, "i3", subject="Træk tilbage")
    imap_mailbox.append(withdrawal, datetime(2025, 1, 6, 6, 2, tzinfo=timezone.utc))
    source = ImapSource(host=imap_mailbox.host, port=imap_mailbox.imap_port, security="starttls",
                        username=imap_mailbox.user, password=imap_mailbox.password, folders=FOLDERS,
                        ssl_context=client_context(imap_mailbox.ca_file), idle=False)
    try:
        assert [o.outcome for o in Intake(app).run(source)] == ["accepted", "accepted", "withdrawn"]
        source.fetch(10)  # the moves are pipelined behind the next fetch
        assert imap_mailbox.folders().get("Behandlet") == 3
        done = erase(app, CPR)
        assert erase_in_mailbox(source, done) == 2
    finally:
        source.close()
    assert imap_mailbox.folders().get("Behandlet") == 1, "the other citizen's mail stays"


def test_erase_deletes_the_moved_mails_and_the_sent_copies_in_the_exchange_mailbox(tmp_path, monkeypatch, ews_server,
                                                                                    ews):
    import base64
    from datetime import datetime, timezone

    from exchangelib.protocol import Protocol

    from scheduler.exchange.account import build_account
    from scheduler.exchange.mailbox import ExchangeSource, ExchangeTransport
    from scheduler.services.access import erase_in_mailbox
    from scheduler.services.dispatch import Dispatcher
    from scheduler.services.intake import Intake
    from tests.test_exchange_calendar import exchange_config
    from tests.test_intake_sources import FOLDERS

    app, dispatcher = build(tmp_path, "2027-01-04T10:00", monkeypatch)
    Protocol.clear_cache()
    account = build_account(exchange_config(ews_server.url), ews.password, max_wait=2)
    for n, (cpr, mid) in enumerate(((CPR, "e1"), (OTHER, "e2"), (CPR, "e3"))):
        ews.deliver(item_mail(cpr, mid), datetime(2027, 1, 4, 8, n, tzinfo=timezone.utc))
    source = ExchangeSource(account, FOLDERS)
    assert [o.outcome for o in Intake(app).run(source)] == ["accepted", "accepted", "accepted"]
    Dispatcher(app, ExchangeTransport(account), dispatcher.calendar).run_once()  # the receipts: copies in Sent Items
    mailbox = lambda: b"".join(base64.b64decode(i.mime) for i in ews.items.values())  # noqa: E731
    assert len(ews.in_folder("Behandlet")) == 3 and CPR[:6].encode() in mailbox()

    done = erase(app, CPR)
    assert erase_in_mailbox(source, done) >= 4  # two mails in, their receipts out
    assert [i.message_id for i in ews.in_folder("Behandlet")] == ["<e2@kommune.example>"]
    assert CPR[:6].encode() not in mailbox(), "neither the full nor the masked CPR is left in any folder"
    assert OTHER[:6].encode() in mailbox() and b"Angst" in mailbox(), "the other citizen's mails stay"
    assert erase_in_mailbox(source, done) == 0


def test_printing_an_agenda_is_audited_per_citizen(tmp_path, monkeypatch, capsys):
    app, _ = _week(tmp_path, monkeypatch)
    code = main(["--config", str(app.config.source), "--data-dir", str(tmp_path), "--now", "2027-01-04T10:00",
                 "agenda", "--series", "unge"])
    assert code == 0 and "150303-xxxx" in capsys.readouterr().out
    viewed = [r for r in _trail(app) if r.action == "agenda-viewed"]
    assert len(viewed) == 2 and all(r.actor.startswith("cli:") for r in viewed)


def test_erase_cancels_the_acute_meeting_and_deletes_its_booking(tmp_path, monkeypatch):
    from scheduler.store.tables import Booking
    from tests.test_meetings import events, sent

    app, dispatcher = build(tmp_path, "2027-01-05T09:00", monkeypatch)
    ingest(app, item_mail(CPR, "ak", subject="AKUT"), "2027-01-05T09:00")
    dispatcher.run_once(limit=100)
    with app.transaction() as repo:
        assert len(repo.db.scalars(select(Booking)).all()) == 1
    done = erase(app, CPR)
    dispatcher.run_once(limit=100)
    assert done.calendar == 2, "the slot and the acute meeting"
    cancelled = [e for method, e in events(sent(tmp_path)) if method == "CANCEL"]
    assert "Akut sparring" in {str(e["SUMMARY"]) for e in cancelled}
    with app.transaction() as repo:
        assert repo.db.scalars(select(Booking)).all() == []
