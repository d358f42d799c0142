"""The hourly case jobs never send on the scheduler's thread: they wake the
outbox sender, so a stalled mail server holds up only the sender (issue 14)."""

from __future__ import annotations

import threading

from sqlalchemy import select

from scheduler import jobs
from scheduler.mail.compose import text_mail
from scheduler.sender import Sender
from scheduler.store.tables import OutboxEntry
from tests.appkit import build


def test_the_hourly_cases_job_wakes_the_sender_and_sends_nothing_itself(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T09:00", monkeypatch)
    sender = Sender(app, dispatcher, threading.Event())  # not started: what it would send stays queued
    with app.transaction() as repo:
        repo.enqueue_mail(text_mail(sender=app.forum_address, sender_name="Forum", to=["karen@kommune.example"],
                                    subject="Hej", body="Hej", sent_at=app.now()),
                          kind="notice", dedupe_key="waiting", recipients=["karen@kommune.example"])
    monkeypatch.setattr(jobs, "RUNTIME", jobs.Runtime(app, dispatcher, sender=sender))
    jobs.cases()
    with app.transaction() as repo:
        assert repo.db.scalars(select(OutboxEntry.status)).all() == ["pending"]
    assert sender._wake.is_set()
