"""The embedded mail backends: ``.eml`` files in the data directory.

``FolderSource`` reads ``<data-dir>/inbox/`` and files each settled mail
into a sibling folder (``processed/``, ``rejected/``, ``quarantine/``,
``ignored/``) encrypted with the data key (``<name>.eml.enc``, see
``store.crypto.seal_mail``; ``sparring mail show`` reads one back), with
its arrival time as mtime for the retention purge; the inbox original is
removed once the sealed copy is durable. Folders are 0700, files 0600.
``FolderTransport`` writes each outgoing message atomically to
``<data-dir>/outbox/`` as ``<timestamp>-<kind>-<n>.eml``.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from scheduler.files import FILE_MODE, fsync_path, private_dir
from scheduler.ports import Clock, Disposition, DiskFull, IncomingMail, OutgoingMail, PermanentError
from scheduler.store.crypto import MAIL_SUFFIX, DecryptionError, FieldCipher, open_mail, seal_mail

POLL_STEP = 0.25  # seconds between looks at the inbox while waiting
FSYNC_THREADS = 16  # sealed copies flushed side by side: one journal commit serves many
# <stamp>-<kind>-<n>[.<delivery tag>].eml; the tag names the message and its
# recipients, so a resend after a crash (the same message) is delivered once.
_OUTBOX_NAME = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9_-]+-(\d+)(?:\.([0-9a-f]{16}))?\.eml$")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]{1,300}>)", re.IGNORECASE | re.MULTILINE)


def _delivery_tag(mail) -> str | None:
    """Its Message-ID and recipients, hashed; None for a message without one."""
    head = re.split(rb"\r?\n\r?\n", mail.message, maxsplit=1)[0]
    found = _MESSAGE_ID.search(head)
    if found is None:
        return None
    envelope = found.group(1) + b"\0" + ",".join(sorted(mail.recipients)).encode("utf-8", "surrogateescape")
    return hashlib.sha256(envelope).hexdigest()[:16]


def _ready(entry: os.DirEntry) -> bool:
    """A finished mail: ``*.eml``, not hidden, not a temporary being written."""
    name = entry.name
    return (
        not name.startswith(".")
        and name.lower().endswith(".eml")
        and entry.is_file(follow_symlinks=False)
    )


def _private(path, flags: int) -> int:
    """``open``'s opener for a new file only its owner may read (0600)."""
    return os.open(path, flags, FILE_MODE)


def _place(source: Path, target: Path) -> None:
    """Give ``source`` the name ``target`` atomically, never overwriting.

    A hard link refuses an existing target (``os.replace`` would clobber
    it); the caller removes ``source`` afterwards. Where the file system
    has no hard links, a rename after an existence check does.
    """
    try:
        os.link(source, target)
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError:  # EPERM, ENOTSUP: no hard links here
        if target.exists():
            raise FileExistsError(target) from None
        os.rename(source, target)


class FolderSource:
    """ports.MailSource over a directory of ``.eml`` files.

    A file's mtime is its arrival, a wall-clock time: ``clock`` puts it on
    its own timeline (``--now``) and no mail arrives later than its now.
    """

    def __init__(self, inbox: Path, clock: Clock | None = None, *, cipher: FieldCipher | None = None,
                 durable: bool = True) -> None:
        self.inbox = Path(inbox)
        self.inbox.mkdir(mode=0o700, parents=True, exist_ok=True)  # there to drop mails in from the start
        self.clock = clock
        self.cipher = cipher  # None (tests of the moves alone): settled mails stay plaintext
        self.durable = durable  # False only for simulation: no fsync
        self._backlog = False  # the last fetch left ready files behind
        self._known: set[str] | None = None  # ready files at the last fetch

    def _ready_files(self) -> list[tuple[int, str]]:
        """(mtime_ns, name) of every finished file, oldest first."""
        try:
            with os.scandir(self.inbox) as entries:
                found = []
                for entry in entries:
                    if _ready(entry):
                        try:
                            found.append((entry.stat().st_mtime_ns, entry.name))
                        except FileNotFoundError:
                            continue  # moved away meanwhile
        except FileNotFoundError:
            return []
        return sorted(found)

    def fetch(self, limit: int) -> list[IncomingMail]:
        files = self._ready_files()
        self._backlog = len(files) > limit
        self._known = {name for _, name in files}
        mails = []
        for mtime_ns, name in files[:limit]:
            try:
                raw = (self.inbox / name).read_bytes()
            except FileNotFoundError:
                continue
            received = self._arrival(mtime_ns)
            mails.append(IncomingMail(ref=name, raw=raw, received_at=received))
        return mails

    def _arrival(self, mtime_ns: int) -> datetime:
        wall = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc)
        if self.clock is None:
            return wall
        return min(self.clock.from_wall(wall), self.clock.now())

    def settle(self, moves: Mapping[Disposition, Sequence[str]]) -> None:
        for disposition, refs in moves.items():
            if not refs:
                continue
            target = private_dir(self.inbox.parent / Disposition(disposition).value)
            if self.cipher is not None:
                self._seal_all(refs, target)
                continue
            for ref in refs:
                self._move(ref, target)

    def _source(self, ref: str) -> Path:
        if Path(ref).name != ref or ref in ("", ".", ".."):
            raise PermanentError("a folder mail reference must be a plain file name.")
        return self.inbox / ref

    def _move(self, ref: str, target: Path) -> None:
        source = self._source(ref)
        if not source.exists():
            return  # already moved: settling twice is harmless
        if self._placed_before(source, ref):
            source.unlink(missing_ok=True)  # a move cut short between link and unlink
            return
        stem, suffix = os.path.splitext(ref)
        candidate, n = target / ref, 1
        while True:
            try:
                # link() refuses to overwrite, so a clash can never lose a mail.
                _place(source, candidate)
                break
            except FileExistsError:
                candidate, n = target / f"{stem}-{n}{suffix}", n + 1
            except FileNotFoundError:
                return  # moved by someone else between the check and the link
        source.unlink(missing_ok=True)

    def _seal_all(self, refs: Sequence[str], target: Path) -> None:
        """Keep the mails encrypted in ``target``, then remove the originals.

        Each is written aside (0600) and linked to a name no other file
        has; the originals go only once those copies and names are durable
        (their fsyncs run side by side, the file system commits them
        together, and one fsync of the folder covers the names). A crash
        before leaves the originals: settled again, a complete sealed copy
        is recognised by its content and only the original removed; a copy
        cut short is not, and the mail is sealed once more beside it."""
        done = [pair for ref in refs if (pair := self._seal(ref, target)) is not None]
        if done and self.durable:
            with ThreadPoolExecutor(max_workers=FSYNC_THREADS) as pool:
                list(pool.map(fsync_path, [copy for _, copy in done if copy is not None]))
            fsync_path(target)
        for source, _ in done:
            source.unlink(missing_ok=True)

    def _seal(self, ref: str, target: Path) -> tuple[Path, Path | None] | None:
        """The original to remove and its new sealed copy (None: one was
        there already); None when the original is gone."""
        source = self._source(ref)
        try:
            raw, info = source.read_bytes(), source.stat()
        except FileNotFoundError:
            return None  # already settled, or moved by someone else meanwhile
        if self._sealed_before(target, ref, raw):
            return source, None
        return source, self._write_sealed(target, ref, seal_mail(self.cipher, raw), info.st_mtime_ns)

    def _write_sealed(self, target: Path, ref: str, sealed: bytes, arrived_ns: int) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=target)  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(sealed)
            os.utime(tmp, ns=(arrived_ns, arrived_ns))  # the retention purge counts from arrival
            stem, suffix = os.path.splitext(ref)
            candidate, n = target / f"{ref}{MAIL_SUFFIX}", 1
            while True:
                try:
                    _place(Path(tmp), candidate)
                    return candidate
                except FileExistsError:
                    candidate, n = target / f"{stem}-{n}{suffix}{MAIL_SUFFIX}", n + 1
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _sealed_before(self, target: Path, ref: str, raw: bytes) -> bool:
        """True when a sealed copy of exactly this mail is in ``target``
        already. Looked for only where its first name is taken: rare."""
        if not (target / f"{ref}{MAIL_SUFFIX}").exists():
            return False
        stem, suffix = os.path.splitext(ref)
        for candidate in target.glob(f"{glob.escape(stem)}*{glob.escape(suffix)}{MAIL_SUFFIX}"):
            try:
                if open_mail(self.cipher, candidate.read_bytes()) == raw:
                    return True
            except (OSError, DecryptionError):
                continue  # unreadable or another key's: not this mail's copy
        return False

    def _placed_before(self, source: Path, ref: str) -> bool:
        """True when the very file (same inode) already sits in a settled
        folder: a crash after ``_place`` and before the unlink left it in two
        places, and the mail was then decided again as a duplicate."""
        try:
            info = source.stat()
        except FileNotFoundError:
            return False  # moved by someone else: _place finds that out
        if info.st_nlink < 2:
            return False
        stem, suffix = os.path.splitext(ref)
        for disposition in Disposition:
            folder = self.inbox.parent / disposition.value
            for candidate in folder.glob(f"{glob.escape(stem)}*{glob.escape(suffix)}"):
                try:
                    if os.path.samestat(info, candidate.stat()):
                        return True
                except FileNotFoundError:
                    continue
        return False

    def wait(self, timeout: float) -> bool:
        """Poll the inbox every ``POLL_STEP`` s; True once a new file is there.

        "New" means not there at the last fetch, so a file that arrived
        between fetch and wait wakes it at once.
        """
        if self._backlog:
            return True
        known = self._known if self._known is not None else {n for _, n in self._ready_files()}
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(POLL_STEP, remaining))
            if any(name not in known for _, name in self._ready_files()):
                return True
        return False

    def close(self) -> None:
        pass


class FolderTransport:
    """ports.MailTransport writing RFC 5322 files into the outbox folder."""

    def __init__(self, outbox: Path, clock: Clock, durable: bool = True) -> None:
        self.outbox = Path(outbox)
        self.clock = clock
        self.durable = durable  # False only for simulation: no fsync, no temporary file
        self._delivered: set[str] = set()  # delivery tags of the files in the folder
        self._last = self._highest_number()
        self._private = False  # the folder made 0700 once, at the first send

    def _highest_number(self) -> int:
        try:
            names = os.listdir(self.outbox)
        except FileNotFoundError:
            return 0
        matches = [m for m in map(_OUTBOX_NAME.match, names) if m]
        self._delivered.update(m.group(2) for m in matches if m.group(2))
        return max((int(m.group(1)) for m in matches), default=0)

    def send(self, mail: OutgoingMail) -> None:
        try:
            self._send(mail)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"the outbox folder {self.outbox} is full (no space left on device)") from None
            raise

    def _send(self, mail: OutgoingMail) -> None:
        if not self._private:  # agendas hold health text: the folder is this user's alone
            private_dir(self.outbox)
            self._private = True
        tag = _delivery_tag(mail)
        if tag in self._delivered:  # sent before a crash cut off its done mark: delivered once
            return
        stamp = self.clock.now().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        kind = re.sub(r"[^a-z0-9_-]+", "-", mail.kind.lower()).strip("-") or "mail"
        kind_and = (kind, f".{tag}.eml" if tag else ".eml")
        if not self.durable:  # a rehearsal: nobody reads the folder while it runs
            self._write_directly(mail.message, stamp, kind_and)
        else:
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.outbox)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(mail.message)
                    handle.flush()
                    os.fsync(handle.fileno())
                self._publish(Path(tmp), stamp, kind_and)
            finally:
                Path(tmp).unlink(missing_ok=True)
        if tag:
            self._delivered.add(tag)

    def _write_directly(self, message: bytes, stamp: str, kind_and: tuple[str, str]) -> None:
        """The final name at once (one file operation, not three); never overwrites."""
        kind, suffix = kind_and
        while True:
            self._last += 1
            try:
                path = self.outbox / f"{stamp}-{kind}-{self._last}{suffix}"
                handle = open(path, "xb", opener=_private)
            except FileExistsError:
                self._last = max(self._last, self._highest_number())
                continue
            try:
                with handle:  # the bytes may reach the disk only on close
                    handle.write(message)
            except BaseException:
                path.unlink(missing_ok=True)  # no half mail left behind
                raise
            return

    def _publish(self, tmp: Path, stamp: str, kind_and: tuple[str, str]) -> None:
        """Give the finished file its final name; never overwrite another."""
        kind, suffix = kind_and
        while True:
            self._last += 1
            final = self.outbox / f"{stamp}-{kind}-{self._last}{suffix}"
            try:
                _place(tmp, final)
                return
            except FileExistsError:
                self._last = max(self._last, self._highest_number())

    def close(self) -> None:
        pass
