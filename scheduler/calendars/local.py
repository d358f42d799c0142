"""The embedded calendar: one ``.ics`` file per event in a folder.

``<directory>/<uid>.ics`` holds the event, or a series with its occurrence
overrides (RECURRENCE-ID) inside, exactly as a CalDAV server would store
it. Files are written atomically (a temporary file, then ``os.replace``).
Nothing is deleted: a cancelled event keeps its file with STATUS:CANCELLED;
a cancelled occurrence becomes an EXDATE of its series.

Free/busy comes from these files (where the address is organiser or
attendee) and from one calendar per person at
``<freebusy_dir>/<mail address>.ics``, e.g. exported from Outlook. An
address with no such file gets one UNKNOWN interval over the window (and
any busy time sparring itself gave it). Free/busy keeps the parsed files
(``ParsedFiles``) and parses again only what changed; writes always read
the file afresh, since merging alters the object it is given.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from scheduler.calendars.freebusy import (busy_by_participant, busy_in, organizer_of, parse_calendar,
                                          unknown)
from scheduler.calendars.ical import cancel_events, events_of, parse_object, put_events, render
from scheduler.files import private_dir
from scheduler.model import BusyInterval, Meeting
from scheduler.ports import DiskFull, PermanentError, TransientError

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")
# A file changed less than this long before it was read is not known by its
# stat alone: a second write within one timestamp tick (2 s on the coarsest
# file systems) could keep mtime and size and reuse the freed inode.
_RACY_NS = 2_000_000_000


def file_name(uid: str) -> str:
    """A file-safe, collision-free name for ``uid`` (unsafe bytes %-escaped)."""
    safe = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), uid)
    return ("%2E" + safe[1:] if safe.startswith(".") else safe) + ".ics"


Signature = tuple[int, int, int]


@dataclass(frozen=True)
class _Parsed:
    signature: Signature | None  # None: changed too recently for the stat to tell
    data: bytes
    calendar: Calendar


class ParsedFiles:
    """Parsed files for reading only, parsed again when a file changes.

    A file is known by its stat signature (inode, mtime, size): files are
    replaced with ``os.replace``, so every write gives a new one. Where the
    signature cannot be trusted (a file changed just now) the file is read
    and compared byte for byte. The objects handed out are shared between
    calls and must not be mutated. (A simulation writes in place; its own
    writes are forgotten explicitly, see ``forget``.) One lock guards the
    entries: the intake thread and the scheduler's thread both book.
    """

    def __init__(self, parse: Callable[[bytes], Calendar]) -> None:
        self._parse = parse
        self._entries: dict[Path, _Parsed] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> Calendar:
        """The parsed ``path``; OSError or ValueError as reading and parsing give them."""
        with self._lock:
            return self._get(path)

    def _get(self, path: Path) -> Calendar:
        try:
            entry = self._entries.get(path)
            if entry is not None and entry.signature == _signature(path.stat()):
                return entry.calendar
            with path.open("rb") as handle:  # the signature of what is read, not of a later file
                stat = os.fstat(handle.fileno())
                data = handle.read()
            calendar = entry.calendar if entry is not None and entry.data == data else self._parse(data)
        except (OSError, ValueError):
            self._entries.pop(path, None)
            raise
        trusted = time.time_ns() - stat.st_mtime_ns >= _RACY_NS
        self._entries[path] = _Parsed(_signature(stat) if trusted else None, data, calendar)
        return calendar

    def forget(self, path: Path) -> None:
        with self._lock:
            self._entries.pop(path, None)

    def keep_only(self, paths: Collection[Path]) -> None:
        """Drop the files not in ``paths`` (removed from the folder)."""
        keep = set(paths)
        with self._lock:
            for path in self._entries.keys() - keep:
                del self._entries[path]

    def __len__(self) -> int:
        return len(self._entries)


def _signature(stat: os.stat_result) -> Signature:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


@contextmanager
def _file_errors(path: Path) -> Iterator[None]:
    """OSError and ValueError as the backend's errors, naming the file only
    (FileNotFoundError passes: a missing file is no error)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TransientError(f"calendar file {path.name} cannot be read ({exc.strerror}).") from None
    except ValueError:
        raise PermanentError(f"calendar file {path.name} is not valid iCalendar; "
                             "move it aside to let sparring write it anew.") from None


class LocalCalendar:
    """``ports.CalendarBackend`` over a folder; sparring mails the invitations."""

    sends_invitations = False

    def __init__(self, directory: Path, freebusy_dir: Path, tz: ZoneInfo,
                 clock: Callable[[], datetime] | None = None, durable: bool = True) -> None:
        self.directory = Path(directory)
        self.freebusy_dir = Path(freebusy_dir)
        self.tz = tz
        self._now = clock or (lambda: datetime.now(timezone.utc))
        self.durable = durable  # False only for simulation: no fsync, no temporary file
        self._own = ParsedFiles(parse_object)  # free/busy only
        self._personal_files = ParsedFiles(parse_calendar)

    # -- writes ------------------------------------------------------------

    def put(self, meeting: Meeting) -> None:
        path = self._path(meeting.uid)
        self._write(path, put_events(self._events(path), meeting, self.tz, stamp=self._now()))

    def put_many(self, meetings: Sequence[Meeting]) -> None:
        """One write per file, however many meetings (master, overrides) it holds."""
        by_uid: dict[str, list[Meeting]] = {}
        for meeting in meetings:
            by_uid.setdefault(meeting.uid, []).append(meeting)
        for uid, group in by_uid.items():
            path = self._path(uid)
            events = self._events(path)
            for meeting in group:
                events = put_events(events, meeting, self.tz, stamp=self._now())
            self._write(path, events)

    def cancel(self, meeting: Meeting) -> None:
        path = self._path(meeting.uid)
        updated = cancel_events(self._events(path), meeting, self.tz, stamp=self._now())
        if updated is not None:
            self._write(path, updated)

    def read(self, uid: str) -> Calendar | None:
        """The stored object for ``uid``, or None."""
        return self._read(self._path(uid))

    # -- free/busy ---------------------------------------------------------

    def free_busy(self, addresses: Sequence[str], start: datetime, end: datetime
                  ) -> Mapping[str, list[BusyInterval]]:
        own_objects = list(self._objects())
        own = busy_by_participant(own_objects, addresses, start, end, self.tz)
        organizers = {organizer_of(e) for calendar in own_objects for e in calendar.walk("VEVENT")}
        result: dict[str, list[BusyInterval]] = {}
        for address in addresses:
            key = address.lower()
            busy = list(own.get(key, []))
            personal = self._personal(key, start, end)
            if personal is not None:
                busy.extend(personal)
            elif key not in organizers:  # the forum's own calendar is this one
                busy.append(unknown(start, end))
            result[address] = sorted(set(busy), key=lambda i: (i.start, i.end, i.kind.value))
        return result

    def close(self) -> None:
        pass

    # -- files -------------------------------------------------------------

    def _path(self, uid: str) -> Path:
        return self.directory / file_name(uid)

    def _read(self, path: Path) -> Calendar | None:
        """The file parsed afresh (the caller may change it), or None."""
        try:
            with _file_errors(path):
                return parse_object(path.read_bytes())
        except FileNotFoundError:
            return None

    def _events(self, path: Path) -> list[Event]:
        """The stored VEVENTs, read afresh: merging changes them."""
        return events_of(self._read(path))

    def _write(self, path: Path, events: Sequence[Event]) -> None:
        """The object holding ``events`` (as ``merge_put`` would assemble it), atomically."""
        data = render(events, self.tz)
        try:
            private_dir(self.directory)
            if not self.durable:  # a rehearsal: nobody reads the folder while it runs
                path.write_bytes(data)
                self._own.forget(path)
                return
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".ics")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
                self._own.forget(path)  # not left to the signature: a rewrite may look the same
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            error = DiskFull if exc.errno in (errno.ENOSPC, errno.EDQUOT) else TransientError
            raise error(f"calendar file {path.name} cannot be written ({exc.strerror}).") from None

    def _objects(self) -> Iterator[Calendar]:
        """The stored objects, shared with later calls: read, never change them."""
        # A dot file is a write under way (``_write``'s temporary file): never an object.
        paths = sorted(p for p in self.directory.glob("*.ics") if not p.name.startswith(".")) \
            if self.directory.is_dir() else []
        self._own.keep_only(paths)
        for path in paths:
            try:
                with _file_errors(path):
                    calendar = self._own.get(path)
            except FileNotFoundError:
                continue
            except (TransientError, PermanentError) as exc:
                log.warning("calendar file skipped in free/busy: %s", exc)
                continue
            yield calendar

    def _personal(self, address: str, start: datetime, end: datetime) -> list[BusyInterval] | None:
        """Busy time from the person's own calendar file; None if there is none."""
        if "/" in address or "\\" in address or address.startswith("."):
            return None
        path = self.freebusy_dir / f"{address}.ics"
        try:
            return busy_in(self._personal_files.get(path), start, end, self.tz)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("a free/busy file could not be read; that person is shown as unknown")
            return None

