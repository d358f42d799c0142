"""The embedded mail backends: ``.eml`` files in the data directory.

``FolderSource`` reads ``<data-dir>/inbox/`` and files each settled mail
into a sibling folder (``processed/``, ``rejected/``, ``quarantine/``,
``ignored/``); nothing is ever deleted. ``FolderTransport`` writes each
outgoing message atomically to ``<data-dir>/outbox/`` as
``<timestamp>-<kind>-<n>.eml``.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from scheduler.ports import Clock, Disposition, DiskFull, IncomingMail, OutgoingMail, PermanentError

POLL_STEP = 0.25  # seconds between looks at the inbox while waiting
_OUTBOX_NAME = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9_-]+-(\d+)\.eml$")


def _ready(entry: os.DirEntry) -> bool:
    """A finished mail: ``*.eml``, not hidden, not a temporary being written."""
    name = entry.name
    return (
        not name.startswith(".")
        and name.lower().endswith(".eml")
        and entry.is_file(follow_symlinks=False)
    )


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
    """ports.MailSource over a directory of ``.eml`` files."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = Path(inbox)
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
            received = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc)
            mails.append(IncomingMail(ref=name, raw=raw, received_at=received))
        return mails

    def settle(self, moves: Mapping[Disposition, Sequence[str]]) -> None:
        for disposition, refs in moves.items():
            if not refs:
                continue
            target = self.inbox.parent / Disposition(disposition).value
            target.mkdir(parents=True, exist_ok=True)
            for ref in refs:
                self._move(ref, target)

    def _move(self, ref: str, target: Path) -> None:
        if Path(ref).name != ref or ref in ("", ".", ".."):
            raise PermanentError("a folder mail reference must be a plain file name.")
        source = self.inbox / ref
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
        self._last = self._highest_number()

    def _highest_number(self) -> int:
        try:
            names = os.listdir(self.outbox)
        except FileNotFoundError:
            return 0
        numbers = [int(m.group(1)) for m in map(_OUTBOX_NAME.match, names) if m]
        return max(numbers, default=0)

    def send(self, mail: OutgoingMail) -> None:
        try:
            self._send(mail)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"the outbox folder {self.outbox} is full (no space left on device)") from None
            raise

    def _send(self, mail: OutgoingMail) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        stamp = self.clock.now().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        kind = re.sub(r"[^a-z0-9_-]+", "-", mail.kind.lower()).strip("-") or "mail"
        if not self.durable:  # a rehearsal: nobody reads the folder while it runs
            return self._write_directly(mail.message, stamp, kind)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.outbox)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(mail.message)
                handle.flush()
                os.fsync(handle.fileno())
            self._publish(Path(tmp), stamp, kind)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _write_directly(self, message: bytes, stamp: str, kind: str) -> None:
        """The final name at once (one file operation, not three); never overwrites."""
        while True:
            self._last += 1
            try:
                path = self.outbox / f"{stamp}-{kind}-{self._last}.eml"
                handle = open(path, "xb")
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

    def _publish(self, tmp: Path, stamp: str, kind: str) -> None:
        """Give the finished file its final name; never overwrite another."""
        while True:
            self._last += 1
            final = self.outbox / f"{stamp}-{kind}-{self._last}.eml"
            try:
                _place(tmp, final)
                return
            except FileExistsError:
                self._last = max(self._last, self._highest_number())

    def close(self) -> None:
        pass
