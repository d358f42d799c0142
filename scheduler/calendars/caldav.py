"""The CalDAV calendar backend (caldav 3.x: ``add_event``, ``search``,
``get_principal``; not the deprecated ``save_event``/``date_search``).

One calendar object per UID: a weekly series is one resource with its
occurrence overrides inside, so a write is one PUT, preceded by one
calendar-multiget REPORT per 100 objects to keep what is already stored
(overrides, cancellations). The calendar is created when missing.

Free/busy: sparring's own events give busy time to their organiser and
attendees; other people's calendars are asked with a free-busy REPORT
under their calendar home, by default ``<server>/<address>/`` (Radicale's
layout; ``freebusy_home`` changes it). No reachable calendar → UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from caldav import DAVClient
from caldav.collection import Calendar as DavCalendar
from caldav.collection import CalendarSet
from caldav.lib import error as dav_error
from icalendar import Calendar

from scheduler.calendars.freebusy import busy_by_participant, organizer_of, parse_busy, unknown
from scheduler.calendars.ical import merge_cancel, merge_put, parse_object
from scheduler.errors import ConfigError
from scheduler.model import BusyInterval, Meeting
from scheduler.ports import PermanentError, TransientError, chunked
from scheduler.tls import http_url_problem


def require_tls(url: str) -> None:
    """https, except to this machine: passwords never cross a network in clear."""
    problem = http_url_problem(url)
    if problem:
        raise ConfigError(f"calendar.caldav.url: {problem}.")


@contextmanager
def dav_errors(what: str) -> Iterator[None]:
    """caldav's and the network's errors as the ports' two kinds, one sentence each."""
    try:
        yield
    except dav_error.AuthorizationError as exc:
        raise PermanentError(f"CalDAV server refused {what} (HTTP {exc.status or 403}); "
                             "check calendar.caldav.username and the password.") from None
    except dav_error.RateLimitError as exc:
        raise TransientError(f"CalDAV server is busy ({what}).",
                             retry_after=getattr(exc, "retry_after_seconds", None)) from None
    except (dav_error.ETagMismatchError, dav_error.ScheduleTagMismatchError):
        raise TransientError(f"calendar object changed on the server during {what}; retry.") from None
    except dav_error.DAVError as exc:
        status = exc.status or 0
        if status == 412:  # If-Match failed: someone changed it; the retry reads and merges again
            raise TransientError(f"calendar object changed on the server during {what}; retry.") from None
        if status >= 500 or status in (408, 409, 423, 429):
            raise TransientError(f"CalDAV server failed {what} (HTTP {status}).") from None
        raise PermanentError(f"CalDAV server refused {what} (HTTP {status or 'error'}: "
                             f"{exc.__class__.__name__}).") from None
    except OSError as exc:  # connection refused, timeout, TLS (niquests' errors are OSErrors)
        raise TransientError(f"CalDAV server cannot be reached for {what} "
                             f"({exc.__class__.__name__}).") from None


class CaldavCalendar:
    """``ports.CalendarBackend`` on a CalDAV server; sparring mails the invitations."""

    sends_invitations = False

    def __init__(self, url: str, username: str, password: str, calendar_name: str, tz: ZoneInfo, *,
                 ssl_verify: bool | str = True, timeout: int = 30,
                 freebusy_home: str = "{server}/{address}/",
                 clock: Callable[[], datetime] | None = None) -> None:
        if not url:
            raise ConfigError("calendar.caldav.url is empty; give the CalDAV server's https:// URL.")
        require_tls(url)
        self.tz = tz
        self.calendar_name = calendar_name
        self.freebusy_home = freebusy_home
        self._now = clock or (lambda: datetime.now(timezone.utc))
        # Basic credentials on every request: servers with no auth (Radicale
        # "none") still take the user from them, and no 401 round trip is spent.
        self.client = DAVClient(url=url, username=username or None, password=password or None,
                                auth_type="basic" if username else None, ssl_verify_cert=ssl_verify,
                                timeout=timeout, enable_rfc6764=False)
        self._calendar: DavCalendar | None = None

    # -- writes ------------------------------------------------------------

    def put(self, meeting: Meeting) -> None:
        self.put_many([meeting])

    def put_many(self, meetings: Sequence[Meeting]) -> None:
        """One PUT per calendar object, however many meetings share its UID."""
        by_uid: dict[str, list[Meeting]] = {}
        for meeting in meetings:
            by_uid.setdefault(meeting.uid, []).append(meeting)
        for uids in chunked(by_uid, 100):
            stored = self._fetch(uids)
            for uid in uids:
                existing = stored.get(uid)
                merged = _parsed(existing)
                for meeting in by_uid[uid]:
                    merged = merge_put(merged, meeting, self.tz, stamp=self._now())
                self._save(uid, existing, merged)

    def cancel(self, meeting: Meeting) -> None:
        existing = self._fetch([meeting.uid]).get(meeting.uid)
        merged = merge_cancel(_parsed(existing), meeting, self.tz, stamp=self._now())
        if merged is not None:
            self._save(meeting.uid, existing, merged)

    def read(self, uid: str) -> Calendar | None:
        """The stored object for ``uid``, or None."""
        return _parsed(self._fetch([uid]).get(uid))

    # -- free/busy ---------------------------------------------------------

    def free_busy(self, addresses: Sequence[str], start: datetime, end: datetime
                  ) -> Mapping[str, list[BusyInterval]]:
        with dav_errors("the search for free/busy"):
            found = self.calendar().search(event=True, start=start, end=end)
        objects = [c for c in (_parsed(o, strict=False) for o in found) if c is not None]
        own = busy_by_participant(objects, addresses, start, end, self.tz)
        organizers = {organizer_of(e) for c in objects for e in c.walk("VEVENT")}
        result: dict[str, list[BusyInterval]] = {}
        for address in addresses:
            busy = list(own.get(address.lower(), []))
            personal = self._personal(address, start, end)
            if personal is not None:
                busy.extend(personal)
            elif address.lower() not in organizers:
                busy.append(unknown(start, end))
            result[address] = sorted(set(busy), key=lambda i: (i.start, i.end, i.kind.value))
        return result

    def close(self) -> None:
        self.client.close()

    # -- the server ----------------------------------------------------------

    def check(self) -> str:
        """Log in and list the principal's calendars (``check-connection``); makes nothing."""
        with dav_errors("listing the calendars"):
            calendars = self.client.get_principal().get_calendars()
            found = any(c.id == self.calendar_name or c.get_display_name() == self.calendar_name
                        for c in calendars)
        return f"calendar {self.calendar_name!r} " + ("found" if found else "not there yet: made on first publish")

    def calendar(self) -> DavCalendar:
        """sparring's calendar on the server, made if it is not there."""
        if self._calendar is None:
            with dav_errors("finding the calendar"):
                principal = self.client.get_principal()
                calendars = principal.get_calendars()
                match = [c for c in calendars if c.id == self.calendar_name]
                match = match or [c for c in calendars if c.get_display_name() == self.calendar_name]
                self._calendar = match[0] if match else principal.make_calendar(
                    name=self.calendar_name, cal_id=self.calendar_name)
        return self._calendar

    def _fetch(self, uids: Sequence[str]) -> dict[str, object]:
        """The stored objects for ``uids`` (where sparring put them), in one REPORT."""
        calendar = self.calendar()
        with dav_errors("reading calendar objects"):
            objects = calendar.multiget([self._url(uid) for uid in uids], raise_notfound=False)
        wanted, found = set(uids), {}
        for obj in objects:
            uid = _uid(_parsed(obj))
            if uid in wanted:
                found[uid] = obj
        return found

    def _save(self, uid: str, existing, merged: Calendar) -> None:
        data = merged.to_ical().decode("utf-8")
        with dav_errors("saving a calendar object"):
            if existing is None:
                self.calendar().add_event(data, increase_seqno=False)
            else:
                existing.data = data
                existing.save(increase_seqno=False, only_this_recurrence=False)

    def _url(self, uid: str):
        # The name caldav gives a new object (``add_event``): the quoted UID.
        return self.calendar().url.join(quote(uid.replace("/", "%2F"), safe="/") + ".ics")

    def _personal(self, address: str, start: datetime, end: datetime) -> list[BusyInterval] | None:
        """Busy time from the person's own calendars; None where none can be read."""
        server = "{0.scheme}://{0.netloc}".format(urlsplit(str(self.client.url)))
        home = self.freebusy_home.format(server=server, address=quote(address, safe="@"))
        try:
            with dav_errors("listing calendars for free/busy"):
                calendars = CalendarSet(client=self.client, url=home).get_calendars()
        except PermanentError:
            return None
        busy: list[BusyInterval] = []
        readable = False
        for calendar in calendars:
            try:
                with dav_errors("a free/busy report"):
                    answer = calendar.freebusy_request(start, end)
                busy.extend(parse_busy(answer.data.encode("utf-8"), start, end, tz=self.tz))
                readable = True
            except (PermanentError, ValueError):
                continue
        return busy if readable else None


def _parsed(obj, strict: bool = True) -> Calendar | None:
    """The object's iCalendar; an unreadable one stops a write, not a free/busy read."""
    if obj is None or not obj.data:
        return None
    try:
        return parse_object(obj.data)
    except ValueError:
        if not strict:
            return None
        raise PermanentError("a calendar object on the CalDAV server is not valid iCalendar.") from None


def _uid(calendar: Calendar | None) -> str | None:
    events = [] if calendar is None else list(calendar.walk("VEVENT"))
    return str(events[0]["uid"]) if events and "uid" in events[0] else None
