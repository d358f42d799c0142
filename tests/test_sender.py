"""The sender thread's rounds: a round that fails for a while (the database
away) is logged when it begins and when it ends, not every few seconds."""

from __future__ import annotations

import logging
import threading

from scheduler.sender import Sender
from tests.appkit import build


def test_failing_rounds_are_logged_once_per_episode(tmp_path, monkeypatch, caplog):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    failures = iter([True] * 4 + [False] * 2)
    real = dispatcher.run_once

    def run_once(*args, **kwargs):
        if next(failures):
            raise ConnectionError("database away")
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatcher, "run_once", run_once)
    sender = Sender(app, dispatcher, threading.Event())
    caplog.set_level(logging.INFO, logger="sparring.outbox")
    for _ in range(6):
        sender._round()
    lines = [r.getMessage() for r in caplog.records if r.name == "sparring.outbox"]
    assert [line.split(";")[0] for line in lines] == ["outbox rounds failing", "outbox rounds work again"]
    assert "ConnectionError" in lines[0]
