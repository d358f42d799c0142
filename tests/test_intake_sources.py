"""Intake end to end from the real mailboxes: Dovecot over STARTTLS, and
Exchange over EWS (the local SOAP server). Arrival is the mailbox's own
time (INTERNALDATE, DateTimeReceived), never the Date header."""

from __future__ import annotations

from datetime import datetime, timezone

from scheduler.exchange.account import build_account
from scheduler.exchange.mailbox import ExchangeSource
from scheduler.mail.imap import ImapSource
from scheduler.services.intake import Intake
from scheduler.tls import client_context
from tests.appkit import FOLDERS, build, item_mail
from tests.mails import week_one
from tests.test_exchange_calendar import exchange_config


def test_imap_intake_moves_each_mail_to_its_folder_after_commit(tmp_path, monkeypatch, imap_mailbox):
    # Dovecot refuses APPEND dates in the future: the mails arrive in January 2025.
    app, dispatcher = build(tmp_path, "2025-01-06T08:00", monkeypatch)
    mails = week_one()
    names = ["01-young", "06-bad-date", "09-outsider", "12-ooo", "16-bounce", "02-adult-html"]
    for n, name in enumerate(names):
        imap_mailbox.append(mails[name], datetime(2025, 1, 6, 6, n, tzinfo=timezone.utc))
    source = ImapSource(
        host=imap_mailbox.host, port=imap_mailbox.imap_port, security="starttls",
        username=imap_mailbox.user, password=imap_mailbox.password, folders=FOLDERS,
        ssl_context=client_context(imap_mailbox.ca_file), idle=False,
    )
    try:
        outcomes = Intake(app).run(source)
        assert [o.outcome for o in outcomes] == ["accepted", "rejected", "quarantined", "ignored", "ignored",
                                                 "accepted"]
        # 6 January 2025 07:00 local: before the Thursday 9 January deadline (6 Jan 12:00)
        assert outcomes[0].session_start.date().isoformat() == "2025-01-09"
        assert source.fetch(100) == []
    finally:
        source.close()
    counts = imap_mailbox.folders()
    assert counts.get("Behandlet") == 2 and counts.get("Afvist") == 1
    assert counts.get("Karantæne") == 1 and counts.get("Ignoreret") == 2
    assert counts.get("INBOX", 0) == 0


def test_exchange_intake_uses_received_time_and_moves_per_disposition(tmp_path, monkeypatch, ews, ews_server):
    app, dispatcher = build(tmp_path, "2027-01-04T12:30", monkeypatch)
    account = build_account(exchange_config(ews_server.url), ews.password, max_wait=2)
    # Date header says 09:00 (before the deadline), the mailbox received it 12:05 (after).
    raw = item_mail("150303-4321", "ex1").replace(b"Subject:", b"Date: Mon, 04 Jan 2027 09:00:00 +0100\r\nSubject:")
    ews.deliver(raw, datetime(2027, 1, 4, 11, 5, tzinfo=timezone.utc))
    ews.deliver(item_mail("300290-1111", "ex2"), datetime(2027, 1, 4, 11, 6, tzinfo=timezone.utc))
    source = ExchangeSource(account, FOLDERS, batch_size=50, poll_seconds=5)
    outcomes = Intake(app).run(source)
    assert [o.outcome for o in outcomes] == ["moved", "rejected"]
    assert outcomes[0].session_start.date().isoformat() == "2027-01-14"
    assert len(ews.in_folder("Behandlet")) == 1 and len(ews.in_folder("Afvist")) == 1
    assert ews.count("MoveItem") == 2


def test_imap_retention_purges_settled_mails_older_than_the_cutoff(tmp_path, monkeypatch, imap_mailbox):
    conn = imap_mailbox.connect()
    conn.create("Behandlet")
    conn.logout()
    imap_mailbox.append(item_mail("150303-4321", "old"), datetime(2025, 1, 2, 8, tzinfo=timezone.utc), "Behandlet")
    imap_mailbox.append(item_mail("150303-4321", "new"), datetime(2025, 3, 2, 8, tzinfo=timezone.utc), "Behandlet")
    imap_mailbox.append(item_mail("150303-4321", "inbox"), datetime(2025, 1, 2, 8, tzinfo=timezone.utc))
    source = ImapSource(
        host=imap_mailbox.host, port=imap_mailbox.imap_port, security="starttls",
        username=imap_mailbox.user, password=imap_mailbox.password, folders=FOLDERS,
        ssl_context=client_context(imap_mailbox.ca_file), idle=False,
    )
    try:
        assert source.purge_settled(datetime(2025, 2, 1, tzinfo=timezone.utc)) == 1
        assert len(source.fetch(10)) == 1, "the inbox is untouched and still selected"
    finally:
        source.close()
    assert imap_mailbox.folders().get("Behandlet") == 1
