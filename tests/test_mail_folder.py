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

        def __init__(self, path, mode, **options):
            self.file = open(path, mode, **options)

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


# -- issue 11, 20: settled mails are kept encrypted, files 0600, folders 0700 --

ITEM = ("From: karen@kommune.example\r\nSubject: Sparring 120502-4127\r\n\r\n"
        "CPR: 120502-4127\r\nHelbred: Angst og depression.\r\nSociale udfordringer: Gæld.\r\n").encode()


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def cipher():
    from scheduler.store.crypto import FieldCipher

    return FieldCipher(os.urandom(32))


def test_settled_mails_are_sealed_private_and_keep_their_arrival(inbox, cipher, monkeypatch):
    from scheduler.store.crypto import open_mail

    old = os.umask(0o022)  # the usual umask: files 0644, folders 0755 unless sparring says otherwise
    try:
        for n, disposition in enumerate(Disposition):
            drop(inbox, f"{disposition.value}.eml", EPOCH + n, ITEM)
        source = FolderSource(inbox, cipher=cipher)
        source.settle({d: [f"{d.value}.eml"] for d in Disposition})
    finally:
        os.umask(old)
    assert not list(inbox.iterdir()), "the originals are gone once sealed"
    for n, disposition in enumerate(Disposition):
        folder_path = inbox.parent / disposition.value
        (kept,) = folder_path.iterdir()
        assert kept.name == f"{disposition.value}.eml.enc"
        assert _mode(folder_path) == 0o700 and _mode(kept) == 0o600
        assert kept.stat().st_mtime == EPOCH + n, "retention counts from arrival"
        raw = kept.read_bytes()
        assert raw.startswith(b"sparring-mail\x01")
        assert not any(secret in raw for secret in (b"120502", b"4127", b"Angst", b"karen"))
        assert open_mail(cipher, raw) == ITEM


def test_a_seal_cut_short_before_the_original_went_is_not_kept_twice(inbox, cipher, monkeypatch):
    drop(inbox, "a.eml", EPOCH, ITEM)
    source = FolderSource(inbox, cipher=cipher)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)  # the crash: nothing removed
    source.settle({Disposition.PROCESSED: ["a.eml"]})
    monkeypatch.undo()
    assert (inbox / "a.eml").exists()
    drop(inbox, "a.eml", EPOCH, b"another mail of the same name")
    source.settle({Disposition.PROCESSED: ["a.eml"]})  # different content: kept beside it
    drop(inbox, "a.eml", EPOCH, ITEM)
    source.settle({Disposition.PROCESSED: ["a.eml"]})  # the same mail again: only the original goes
    names = sorted(p.name for p in (inbox.parent / "processed").iterdir() if not p.name.startswith("."))
    assert names == ["a-1.eml.enc", "a.eml.enc"] and not (inbox / "a.eml").exists()


def test_mail_show_reads_a_sealed_mail_back_for_an_administrator(tmp_path, monkeypatch, capfdbinary):
    from scheduler.cli import main
    from scheduler.store.crypto import FieldCipher
    from scheduler.store.keys import new_key, parse_key

    key = new_key()
    monkeypatch.setenv("SPARRING_SECRET_KEY", key)
    inbox = tmp_path / "inbox"
    drop(inbox, "a.eml", EPOCH, ITEM)
    FolderSource(inbox, cipher=FieldCipher(parse_key(key, "test"))).settle({Disposition.QUARANTINE: ["a.eml"]})
    config = str(Path(__file__).parent.parent / "config" / "sparring.toml")
    sealed = tmp_path / "quarantine" / "a.eml.enc"
    assert main(["--config", config, "--data-dir", str(tmp_path), "mail", "show", str(sealed)]) == 0
    assert capfdbinary.readouterr().out == ITEM
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    assert main(["--config", config, "--data-dir", str(tmp_path), "mail", "show", str(sealed)]) == 1
    err = capfdbinary.readouterr().err.decode()
    assert err.count("\n") == 1 and "could not be decrypted" in err and "Traceback" not in err


def test_outbox_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        for durable in (True, False):
            outbox = tmp_path / f"outbox-{durable}"
            FolderTransport(outbox, FixedClock(datetime(2027, 1, 4, 9, tzinfo=timezone.utc)),
                            durable=durable).send(outgoing())
            (written,) = outbox.iterdir()
            assert _mode(outbox) == 0o700 and _mode(written) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("durable", [True, False])
def test_a_resend_of_the_same_message_to_the_same_people_is_delivered_once(tmp_path, durable):
    """The outbox sends at least once: a crash between the file and the done mark
    sends the entry again, the same message (Message-ID and all). The folder keeps
    one file, also across a restart; the same Message-ID to others is another delivery."""
    outbox = tmp_path / "outbox"
    clock = FixedClock(datetime(2027, 1, 4, 10, 12, tzinfo=ZoneInfo("Europe/Copenhagen")))
    raw = b"Message-ID: <k1@kommune.example>\r\nSubject: Kvittering\r\n\r\nHej\r\n"
    mail = OutgoingMail("sparring@kommune.example", ("a@kommune.example",), raw, "receipt")
    FolderTransport(outbox, clock, durable=durable).send(mail)
    again = FolderTransport(outbox, clock, durable=durable)  # a restart after the crash
    again.send(mail)
    again.send(mail)
    again.send(OutgoingMail(mail.sender, ("b@kommune.example",), raw, "receipt"))
    names = sorted(os.listdir(outbox))
    assert len(names) == 2 and all((outbox / n).read_bytes() == raw for n in names)
    assert names[0].startswith("20270104T091200Z-receipt-1.") and names[0].endswith(".eml")
