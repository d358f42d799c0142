"""The forum calendar in an Exchange Online mailbox through Microsoft Graph
(``ports.CalendarBackend``).

Exchange mails the attendees itself (``sends_invitations``): creating,
changing and cancelling an event sends the invitation, the update and the
cancellation. The meaning is the EWS backend's: a weekly series is one
event with a ``recurrence``; one occurrence (``recurrence_id``) is found
among the series' ``instances`` by its ``originalStart`` and changed or
cancelled on its own, with a comment in the service's language; other
meetings are single events.

Finding an event again: each event carries our UID in a single-value
extended property, which Graph can filter on. UIDs not yet known to this
object are looked up, 20 to a ``$batch``, before anything is created, and
the create carries a ``transactionId``: publishing twice, or from a fresh
data directory, leaves one event each. Writes go in ``$batch`` requests of
20 too. Free/busy is ``getSchedule``, split and merged in ``schedule``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from urllib.parse import quote

from scheduler.errors import ConfigError
from scheduler.graph.events import (
    event_json, instances_url, lookup_url, occurrence_json, occurrence_of, same_rule, windows_zone,
)
from scheduler.graph.schedule import answers_to_busy, queries
from scheduler.model import BusyInterval, Meeting
from scheduler.ports import PermanentError
from scheduler.render import render

_JSON = {"Content-Type": "application/json"}
PERMISSION = "Calendars.ReadWrite"  # writes the forum's events; also covers getSchedule


class GraphCalendar:
    sends_invitations = True

    def __init__(self, client, mailbox: str, tz: tzinfo, language: str = "da") -> None:
        self.client = client
        self.mailbox = mailbox
        self.tz = tz
        self.language = language
        try:
            self._zone = windows_zone(tz)  # fails at start-up, not at the first write
        except ValueError as exc:
            raise ConfigError(f"service.timezone: {exc}; choose a zone Exchange Online knows.") from None
        self._ids: dict[str, str] = {}  # uid -> event id, as created or found
        self._rules: dict[str, dict | None] = {}  # uid -> its recurrence as Graph holds it

    # -- writes ------------------------------------------------------------

    def put(self, meeting: Meeting) -> None:
        self.put_many([meeting])

    def put_many(self, meetings: Sequence[Meeting]) -> None:
        latest = {m.uid: m for m in meetings if m.recurrence_id is None and not m.cancelled}
        known = self._lookup(list(latest))
        gone = self._update([m for uid, m in latest.items() if uid in known])
        self._create([m for uid, m in latest.items() if uid not in known] + gone)
        self._cancel_occurrences([(m, day) for m in latest.values() if m.recurrence
                                  for day in m.recurrence.exdates])
        moved = [m for m in meetings if m.recurrence_id is not None and not m.cancelled]
        self._put_occurrences(moved)
        for meeting in meetings:
            if meeting.cancelled:
                self.cancel(meeting)

    def cancel(self, meeting: Meeting) -> None:
        """Cancel with a comment to the attendees (an event without any is deleted)."""
        if meeting.recurrence_id is not None:
            self._cancel_occurrences([(meeting, meeting.recurrence_id)])
            return
        event_id = self._lookup([meeting.uid]).get(meeting.uid)
        self._ids.pop(meeting.uid, None)
        if event_id is None:
            return  # cancelling what does not exist is not an error
        [answer] = self._batch([self._cancel_request(event_id, meeting, meeting.start, occurrence=False)],
                               "calendar cancel")
        self._check(answer, "calendar cancel", missing_ok=True)

    def _create(self, meetings: list[Meeting]) -> None:
        requests = [{"method": "POST", "url": self._events(), "headers": _JSON,
                     "body": event_json(m, self.tz, create=True)} for m in meetings]
        for meeting, request, answer in zip(meetings, requests, self._batch(requests, "calendar create")):
            self._ids[meeting.uid] = self._check(answer, "calendar create")["id"]
            self._rules[meeting.uid] = request["body"].get("recurrence")

    def _update(self, meetings: list[Meeting]) -> list[Meeting]:
        """PATCH each; the meetings whose event someone deleted meanwhile are returned."""
        requests = [{"method": "PATCH", "url": self._events(self._ids[m.uid]), "headers": _JSON,
                     "body": self._changes(m)} for m in meetings]
        gone = []
        for meeting, request, answer in zip(meetings, requests, self._batch(requests, "calendar update")):
            if self._check(answer, "calendar update", missing_ok=True) is None:
                self._ids.pop(meeting.uid)
                gone.append(meeting)
            elif "recurrence" in request["body"]:
                self._rules[meeting.uid] = request["body"]["recurrence"]
        return gone

    def _changes(self, meeting: Meeting) -> dict:
        """The PATCH body: the recurrence only when it changed, because Exchange
        drops a series' changed and cancelled occurrences when it is written."""
        body = event_json(meeting, self.tz)
        if "recurrence" in body and same_rule(body["recurrence"], self._rules.get(meeting.uid)):
            del body["recurrence"]
        return body

    def _put_occurrences(self, meetings: list[Meeting]) -> None:
        found = self._occurrence_ids([(m, m.recurrence_id) for m in meetings])
        for meeting, occurrence in zip(meetings, found):
            if occurrence is None:
                raise PermanentError("Graph calendar write failed: the occurrence or its series "
                                     "is not in the calendar.")
        requests = [{"method": "PATCH", "url": self._events(occurrence), "headers": _JSON,
                     "body": occurrence_json(m, self.tz)} for m, occurrence in zip(meetings, found)]
        for answer in self._batch(requests, "calendar occurrence update"):
            self._check(answer, "calendar occurrence update")

    def _cancel_occurrences(self, wanted: list[tuple[Meeting, datetime]]) -> None:
        """Cancel these occurrences; one already cancelled, or of a series not there, is skipped."""
        found = self._occurrence_ids(wanted)
        requests = [self._cancel_request(occurrence, meeting, start, occurrence=True)
                    for (meeting, start), occurrence in zip(wanted, found) if occurrence is not None]
        for answer in self._batch(requests, "calendar cancel"):
            self._check(answer, "calendar cancel", missing_ok=True)

    def _cancel_request(self, event_id: str, meeting: Meeting, start: datetime, *, occurrence: bool) -> dict:
        if not meeting.attendees:  # nobody to tell: cancel is for meetings only
            return {"method": "DELETE", "url": self._events(event_id)}
        comment = render("calendar_cancel_comment.txt.j2", self.language, tz=self.tz, summary=meeting.summary,
                         start=start.astimezone(self.tz), occurrence=occurrence).strip()
        return {"method": "POST", "url": self._events(event_id) + "/cancel", "headers": _JSON,
                "body": {"comment": comment}}

    # -- finding events ------------------------------------------------------

    def _lookup(self, uids: list[str]) -> dict[str, str]:
        """Event ids for these UIDs: from the cache, else by our extended property."""
        missing = [u for u in dict.fromkeys(uids) if u not in self._ids]
        requests = [{"method": "GET", "url": lookup_url(self.mailbox, u)} for u in missing]
        for uid, answer in zip(missing, self._batch(requests, "calendar lookup")):
            found = self._check(answer, "calendar lookup").get("value", [])
            if found:
                self._ids[uid] = found[0]["id"]
                self._rules[uid] = found[0].get("recurrence")
        return {u: self._ids[u] for u in uids if u in self._ids}

    def _occurrence_ids(self, wanted: list[tuple[Meeting, datetime]]) -> list[str | None]:
        """The instance id of each (series meeting, original start), None where there is none."""
        masters = self._lookup([m.uid for m, _ in wanted])
        asked = [(n, masters[m.uid], start) for n, (m, start) in enumerate(wanted) if m.uid in masters]
        requests = [{"method": "GET", "url": instances_url(self.mailbox, master, start)}
                    for _, master, start in asked]
        out: list[str | None] = [None] * len(wanted)
        for (n, _, start), answer in zip(asked, self._batch(requests, "calendar instances")):
            body = self._check(answer, "calendar instances", missing_ok=True)
            out[n] = occurrence_of(body.get("value", []), start) if body else None
        return out

    # -- free/busy -----------------------------------------------------------------

    def free_busy(self, addresses: Sequence[str], start: datetime, end: datetime
                  ) -> Mapping[str, list[BusyInterval]]:
        """ceil(N/20) getSchedule requests per window shorter than 42 days, 20 to a $batch."""
        asked = queries(addresses, start, end)
        headers = {**_JSON, "Prefer": f'outlook.timezone="{self._zone}"'}
        requests = [{"method": "POST", "url": f"/users/{quote(self.mailbox, safe='@')}/calendar/getSchedule",
                     "headers": headers, "body": q.body(self.tz)} for q in asked]
        answers = self._batch(requests, "free/busy")
        values = [self._check(a, "free/busy").get("value", []) for a in answers]
        return answers_to_busy(addresses, zip(asked, values), self.tz)

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    # -- requests ----------------------------------------------------------------

    def _events(self, event_id: str = "") -> str:
        base = f"/users/{quote(self.mailbox, safe='@')}/events"
        return f"{base}/{quote(event_id, safe='=')}" if event_id else base

    def _batch(self, requests: list[dict], what: str) -> list[dict]:
        return self.client.batch(requests, what=what, permission=PERMISSION) if requests else []

    def _check(self, answer: dict, what: str, *, missing_ok: bool = False) -> dict | None:
        """The body of a successful answer; None for 404 when ``missing_ok``; else the port's error."""
        answer = self.client.check(answer, what, PERMISSION, ok=(404,) if missing_ok else ())
        if int(answer.get("status", 0)) == 404:
            return None
        body = answer.get("body")
        return body if isinstance(body, dict) else {}
