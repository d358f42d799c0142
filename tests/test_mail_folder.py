"""The embedded mail backends: the inbox folder source and the outbox folder transport."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import scheduler.mail.folder as folder
from scheduler.clock import FixedClock
from scheduler.mail.folder import FolderSource, FolderTransport
from scheduler.ports import DiskFull, Disposition, MailSource, MailTransport, OutgoingMail, PermanentError

EPOCH = 1_799_000_000  # 2027-01-03T...Z


def drop(inbox: Path, name: str, mtime: float, body: bytes = b"Subject: x\r\n\r\nhej\r\n") -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(body)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return tmp_path / "data" / "inbox"


def test_fetch_oldest_first_ignoring_unfinished_files(inbox):
    drop(inbox, "b.eml", EPOCH + 60, b"second")
    drop(inbox, "a.eml", EPOCH + 120, b"third")
    drop(inbox, "c.EML", EPOCH, b"first")
    drop(inbox, ".d.eml", EPOCH - 5)  # being written by a mail delivery agent
    drop(inbox, "e.eml.tmp", EPOCH - 5)
    drop(inbox, "notes.txt", EPOCH - 5)
    (inbox / "sub.eml").mkdir()
    source = FolderSource(inbox)
    assert isinstance(source, MailSource)
    mails = source.fetch(limit=10)
    assert [(m.ref, m.raw) for m in mails] == [("c.EML", b"first"), ("b.eml", b"second"), ("a.eml", b"third")]
    assert mails[0].received_at == datetime.fromtimestamp(EPOCH, timezone.utc)
    assert mails[0].received_at.tzinfo is not None
    assert [m.ref for m in source.fetch(limit=2)] == ["c.EML", "b.eml"]
    assert len(source.fetch(limit=10)) == 3  # fetching changes nothing


def test_missing_inbox_is_empty(inbox):
    assert FolderSource(inbox).fetch(limit=10) == []


def test_settle_moves_to_sibling_folders_and_never_overwrites(inbox):
    for n, name in enumerate(["ok.eml", "bad.eml", "spam.eml", "auto.eml"]):
        drop(inbox, name, EPOCH + n, name.encode())
    earlier = drop(inbox.parent / "processed", "ok.eml", EPOCH - 99, b"an earlier ok.eml")
    source = FolderSource(inbox)
    moves = {Disposition.PROCESSED: ["ok.eml"], Disposition.REJECTED: ["bad.eml"],
             Disposition.QUARANTINE: ["spam.eml"], Disposition.IGNORED: ["auto.eml"]}
    source.settle(moves)
    data = inbox.parent
    assert sorted(p.name for p in (data / "processed").iterdir()) == ["ok-1.eml", "ok.eml"]
    assert earlier.read_bytes() == b"an earlier ok.eml"
    assert (data / "processed" / "ok-1.eml").read_bytes() == b"ok.eml"
    assert (data / "rejected" / "bad.eml").exists() and (data / "quarantine" / "spam.eml").exists()
    assert (data / "ignored" / "auto.eml").exists()
    assert source.fetch(limit=10) == []
    source.settle(moves)  # already moved: harmless
    assert len(list((data / "processed").iterdir())) == 2


def test_settle_refuses_paths(inbox):
    drop(inbox, "a.eml", EPOCH)
    with pytest.raises(PermanentError):
        FolderSource(inbox).settle({Disposition.PROCESSED: ["../a.eml"]})


def test_wait_returns_when_a_new_file_appears(inbox):
    drop(inbox, "old.eml", EPOCH)
    source = FolderSource(inbox)
    source.fetch(limit=10)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(source.wait(30)))
    waiter.start()
    drop(inbox, "new.eml", EPOCH + 1)
    waiter.join(40)
    assert result == [True]


def test_wait_wakes_for_a_file_that_came_between_fetch_and_wait(inbox):
    source = FolderSource(inbox)
    source.fetch(limit=10)
    drop(inbox, "new.eml", EPOCH)
    assert source.wait(30) is True


def test_wait_times_out_without_spinning(inbox, monkeypatch):
    drop(inbox, "old.eml", EPOCH)
    drop(inbox, ".partial.eml", EPOCH)  # unfinished files do not wake it
    source = FolderSource(inbox)
    looks = []
    real = source._ready_files
    monkeypatch.setattr(source, "_ready_files", lambda: looks.append(1) or real())
    assert source.wait(1.0) is False
    assert len(looks) <= 1 + 1.0 / 0.2  # at least 0.2 s between looks


def test_wait_returns_at_once_when_fetch_left_a_backlog(inbox):
    drop(inbox, "a.eml", EPOCH)
    drop(inbox, "b.eml", EPOCH + 1)
    source = FolderSource(inbox)
    assert len(source.fetch(limit=1)) == 1
    assert source.wait(30) is True


def outgoing(kind: str = "receipt", body: bytes = b"Subject: Kvittering\r\n\r\nModtaget.\r\n") -> OutgoingMail:
    return OutgoingMail("sparring@kommune.example", ("a@kommune.example",), body, kind)


def test_transport_writes_named_rfc5322_files(tmp_path):
    outbox = tmp_path / "outbox"
    clock = FixedClock(datetime(2027, 1, 4, 10, 12, tzinfo=ZoneInfo("Europe/Copenhagen")))
    transport = FolderTransport(outbox, clock)
    assert isinstance(transport, MailTransport)
    transport.send(outgoing())
    transport.send(outgoing("Invitation"))
    transport.send(outgoing("../odd kind"))
    names = sorted(os.listdir(outbox))
    assert names == ["20270104T091200Z-invitation-2.eml", "20270104T091200Z-odd-kind-3.eml",
                     "20270104T091200Z-receipt-1.eml"]
    assert (outbox / names[2]).read_bytes() == outgoing().message


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "simulation"])
def test_transport_numbers_keep_rising_across_restarts_and_clashes(tmp_path, durable):
    outbox = tmp_path / "outbox"
    clock = FixedClock(datetime(2027, 1, 4, 9, 12, tzinfo=timezone.utc))
    FolderTransport(outbox, clock, durable=durable).send(outgoing())
    restarted = FolderTransport(outbox, clock, durable=durable)
    # Another writer took the next name meanwhile: it must not be overwritten.
    (outbox / "20270104T091200Z-receipt-2.eml").write_bytes(b"someone else's")
    restarted.send(outgoing(body=b"mine"))
    assert sorted(os.listdir(outbox)) == ["20270104T091200Z-receipt-1.eml", "20270104T091200Z-receipt-2.eml",
                                          "20270104T091200Z-receipt-3.eml"]
    assert (outbox / "20270104T091200Z-receipt-2.eml").read_bytes() == b"someone else's"
    assert (outbox / "20270104T091200Z-receipt-3.eml").read_bytes() == b"mine"


def test_transport_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    def no_links(*_args):
        raise PermissionError("no hard links on this file system")

    monkeypatch.setattr(folder.os, "link", no_links)
    outbox = tmp_path / "outbox"
    transport = FolderTransport(outbox, FixedClock(datetime(2027, 1, 4, 9, 12, tzinfo=timezone.utc)))
    (outbox).mkdir()
    (outbox / "20270104T091200Z-receipt-1.eml").write_bytes(b"taken")
    transport.send(outgoing(body=b"mine"))
    assert (outbox / "20270104T091200Z-receipt-1.eml").read_bytes() == b"taken"
    assert (outbox / "20270104T091200Z-receipt-2.eml").read_bytes() == b"mine"
    assert [p for p in os.listdir(outbox) if p.startswith(".")] == []


def test_a_simulation_write_that_fails_leaves_no_half_mail(tmp_path, monkeypatch):
    class Full:
        """A disk that takes the buffered bytes and refuses them on close."""

        def __init__(self, path, mode):
            self.file = open(path, mode)

        def write(self, data):
            return len(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()
            raise OSError(28, "No space left on device")

    outbox = tmp_path / "outbox"
    transport = FolderTransport(outbox, FixedClock(datetime(2027, 1, 4, 9, 12, tzinfo=timezone.utc)), durable=False)
    monkeypatch.setattr(folder, "open", Full, raising=False)
    with pytest.raises(DiskFull):  # ENOSPC: retried once there is space
        transport.send(outgoing())
    assert os.listdir(outbox) == []
