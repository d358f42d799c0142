"""The forum calendar in an Exchange mailbox (ports.CalendarBackend).

Exchange sends the invitations itself (``sends_invitations``): items are
created with ``SendToAllAndSaveCopy`` and deleted with ``SendOnlyToAll``.

Finding an event again: the iCalendar UID is stored in the item's ``UID``
on create. EWS cannot search on ``calendar:UID``, but Exchange derives the
``GlobalObjectId`` (MS-OXOCAL, property set Meeting, id 3) from it, which
can be searched: lookups are one FindItem per 100 UIDs, and the ids found
or created are cached for the life of the object, so repeated writes cost
no lookup.

A weekly series is one recurring item; one occurrence (``recurrence_id``)
is addressed as ``OccurrenceItemId`` (master id + 1-based instance index,
computed from the master's start and interval), updated or deleted
directly; the series' ``exdates`` are deleted the same way. Free/busy
(GetUserAvailability, at most 100 mailboxes and 42 days per request) is
in ``freebusy``; ``free_busy`` delegates there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from exchangelib import CalendarItem, EWSDateTime, ExtendedProperty, Q
from exchangelib.errors import (
    ErrorCalendarOccurrenceIsDeletedFromRecurrence,
    ErrorItemNotFound,
)
from exchangelib.fields import FieldPath
from exchangelib.folders import FolderCollection
from exchangelib.items import (
    MOVE_TO_DELETED_ITEMS,
    SEND_ONLY_TO_ALL,
    SEND_TO_ALL_AND_SAVE_COPY,
)
from exchangelib.properties import UID, Mailbox, OccurrenceItemId
from exchangelib.properties import Attendee as EwsAttendee
from exchangelib.recurrence import (
    EndDatePattern,
    NoEndPattern,
    Recurrence,
    WeeklyPattern,
)

from scheduler.exchange.errors import check, mapped
from scheduler.exchange.freebusy import FreeBusy, ews_time
from scheduler.model import BusyInterval, Meeting
from scheduler.ports import PermanentError, chunked

BATCH = 100  # EWS: items per CreateItem / UpdateItem / DeleteItem request
_GONE = (ErrorItemNotFound, ErrorCalendarOccurrenceIsDeletedFromRecurrence)
_FIELDS = ["subject", "body", "location", "start", "end", "required_attendees",
           "optional_attendees", "sensitivity", "categories"]


class GlobalObjectId(ExtendedProperty):
    """PidLidGlobalObjectId: searchable, unlike calendar:UID."""

    distinguished_property_set_id = "Meeting"
    property_id = 3
    property_type = "Binary"


if "global_object_id" not in {f.name for f in CalendarItem.FIELDS}:
    CalendarItem.register("global_object_id", GlobalObjectId)
# exchangelib treats every extended property as "complex" (GetItem only), but
# FindItem returns them; binary values are cut at 255 bytes there, which a
# GlobalObjectId made from a UID under ~190 characters stays within.
CalendarItem.get_field_by_fieldname("global_object_id").is_complex = False
_GOID_PATH = FieldPath(field=CalendarItem.get_field_by_fieldname("global_object_id"))


@dataclass(frozen=True)
class _Known:
    id: str
    changekey: str


class ExchangeCalendar:
    sends_invitations = True

    def __init__(self, account, tz: tzinfo) -> None:
        self.account = account
        self.tz = tz
        self._ids: dict[str, _Known] = {}  # uid -> item, as created or found
        self._series: dict[str, tuple[date, int]] = {}  # uid -> (first day, interval in weeks)
        self._free_busy = FreeBusy(account, tz)

    # -- writes ------------------------------------------------------------

    def put(self, meeting: Meeting) -> None:
        self.put_many([meeting])

    def put_many(self, meetings: Sequence[Meeting]) -> None:
        with mapped("calendar write"):
            latest = {m.uid: m for m in meetings if m.recurrence_id is None and not m.cancelled}
            known = self._lookup(list(latest))
            self._create([m for uid, m in latest.items() if uid not in known])
            self._update([m for uid, m in latest.items() if uid in known])
            for m in meetings:
                if m.recurrence_id is not None and not m.cancelled:
                    self._put_occurrence(m)
                elif m.cancelled:
                    self._cancel(m)

    def cancel(self, meeting: Meeting) -> None:
        with mapped("calendar cancel"):
            self._cancel(meeting)

    def _create(self, meetings: list[Meeting]) -> None:
        if not meetings:
            return
        items = [self._item(m, uid=m.uid) for m in meetings]
        results = self.account.bulk_create(folder=self.account.calendar, items=items,
                                           send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY, chunk_size=BATCH)
        check(results, "calendar create")
        for meeting, result in zip(meetings, results):
            self._remember(meeting, result.id, result.changekey)
        self._delete_exdates(meetings)

    def _update(self, meetings: list[Meeting]) -> None:
        if not meetings:
            return
        changes = []
        for m in meetings:
            known = self._ids[m.uid]
            fields = _FIELDS + (["recurrence"] if m.recurrence else [])
            changes.append((self._item(m, id=known.id, changekey=known.changekey), fields))
        results = self.account.bulk_update(
            items=changes, send_meeting_invitations_or_cancellations=SEND_TO_ALL_AND_SAVE_COPY, chunk_size=BATCH)
        check(results, "calendar update")
        for meeting, (item_id, changekey) in zip(meetings, results):
            self._remember(meeting, item_id, changekey)
        self._delete_exdates(meetings)

    def _put_occurrence(self, meeting: Meeting) -> None:
        occurrence = self._occurrence(meeting)
        if occurrence is None:
            raise PermanentError("Exchange calendar write failed: the series of this occurrence is not in the calendar.")
        for name, value in self._values(meeting).items():
            setattr(occurrence, name, value)
        results = self.account.bulk_update(
            items=[(occurrence, [f for f in _FIELDS if f != "categories"])],
            send_meeting_invitations_or_cancellations=SEND_TO_ALL_AND_SAVE_COPY)
        check(results, "calendar occurrence update")

    def _cancel(self, meeting: Meeting) -> None:
        if meeting.recurrence_id is not None:
            target = self._occurrence(meeting)
        else:
            known = self._lookup([meeting.uid]).get(meeting.uid)
            target = (known.id, known.changekey) if known else None
            self._ids.pop(meeting.uid, None)
        if target is not None:  # cancelling what does not exist is not an error
            self._delete([target])

    def _delete_exdates(self, meetings: list[Meeting]) -> None:
        self._delete([self._occurrence_id(m.uid, self._local(d)) for m in meetings
                      if m.recurrence for d in m.recurrence.exdates])

    def _delete(self, targets: list) -> None:
        """Delete with cancellations to all. Items or occurrences already gone
        are fine; exchangelib raises some of those instead of returning them,
        after the server has processed the whole request."""
        if not targets:
            return
        try:
            results = self.account.bulk_delete(ids=targets, delete_type=MOVE_TO_DELETED_ITEMS,
                                               send_meeting_cancellations=SEND_ONLY_TO_ALL, chunk_size=BATCH)
        except _GONE:
            return
        check(results, "calendar cancel", ignore=_GONE)

    # -- finding items -------------------------------------------------------

    def _lookup(self, uids: list[str]) -> dict[str, _Known]:
        """Items for these UIDs: from the cache, else by GlobalObjectId."""
        missing = [u for u in uids if u not in self._ids]
        for batch in chunked(missing, BATCH):
            # bytes(): exchangelib deep-copies filter values, and copying a UID wraps it twice.
            wanted = {bytes(UID(u)): u for u in batch}
            found = FolderCollection(account=self.account, folders=[self.account.calendar]).find_items(
                q=Q(global_object_id__in=list(wanted)), additional_fields={_GOID_PATH}, page_size=BATCH)
            for item in found:
                if item.global_object_id in wanted:
                    self._ids[wanted[item.global_object_id]] = _Known(item.id, item.changekey)
        return {u: self._ids[u] for u in uids if u in self._ids}

    def _occurrence(self, meeting: Meeting) -> CalendarItem | None:
        if not self._lookup([meeting.uid]):
            return None
        target = self._occurrence_id(meeting.uid, self._local(meeting.recurrence_id))
        return CalendarItem(account=self.account, folder=self.account.calendar, _id=target)

    def _occurrence_id(self, uid: str, original_start: datetime) -> OccurrenceItemId:
        master = self._ids[uid]
        first, interval = self._series.get(uid) or self._fetch_series(uid)
        weeks, rest = divmod((original_start.date() - first).days, 7 * interval)
        if rest or weeks < 0:
            raise PermanentError("Exchange calendar write failed: the date is not an occurrence of the series.")
        return OccurrenceItemId(id=master.id, changekey=master.changekey, instance_index=weeks + 1)

    def _fetch_series(self, uid: str) -> tuple[date, int]:
        known = self._ids[uid]
        [master] = self.account.fetch(ids=[(known.id, known.changekey)], folder=self.account.calendar,
                                      only_fields=["start", "recurrence"])
        if isinstance(master, Exception) or master.recurrence is None:
            raise PermanentError("Exchange calendar write failed: the event is not a recurring series.")
        self._series[uid] = (self._local(master.start).date(), master.recurrence.pattern.interval)
        return self._series[uid]

    def _remember(self, meeting: Meeting, item_id: str, changekey: str) -> None:
        self._ids[meeting.uid] = _Known(item_id, changekey)
        if meeting.recurrence:
            self._series[meeting.uid] = (self._local(meeting.start).date(), meeting.recurrence.interval)

    # -- mapping -----------------------------------------------------------------

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)

    def _ews(self, moment: datetime) -> EWSDateTime:
        return ews_time(moment, self.tz)

    def _values(self, m: Meeting) -> dict:
        def people(required: bool) -> list[EwsAttendee] | None:
            chosen = [a for a in m.attendees if a.required is required]
            return [EwsAttendee(mailbox=Mailbox(email_address=a.address, name=a.name or None),
                                response_type="Unknown") for a in chosen] or None

        return dict(subject=m.summary, body=m.description or None, location=m.location or None,
                    start=self._ews(m.start), end=self._ews(m.end), sensitivity="Private",
                    required_attendees=people(True), optional_attendees=people(False),
                    categories=list(m.categories) or None)

    def _item(self, m: Meeting, **ident) -> CalendarItem:
        item = CalendarItem(account=self.account, folder=self.account.calendar, **ident, **self._values(m))
        if m.recurrence:
            item.recurrence = self._recurrence(m)
        return item

    def _recurrence(self, m: Meeting) -> Recurrence:
        rule, local = m.recurrence, self._local(m.start)
        pattern = WeeklyPattern(interval=rule.interval, weekdays=[local.isoweekday()], first_day_of_week=1)
        boundary = (EndDatePattern(start=local.date(), end=rule.until) if rule.until
                    else NoEndPattern(start=local.date()))
        return Recurrence(pattern=pattern, boundary=boundary)

    # -- free/busy -----------------------------------------------------------------

    def free_busy(self, addresses: Sequence[str], start: datetime, end: datetime
                  ) -> Mapping[str, list[BusyInterval]]:
        return self._free_busy.lookup(addresses, start, end)

    def close(self) -> None:
        self.account.protocol.close()
