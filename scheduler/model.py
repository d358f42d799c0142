"""The domain's values: frozen dataclasses shared by the core and the adapters.

Nothing here does I/O or reads a clock. Times are timezone-aware
``datetime`` objects in the service's zone (Europe/Copenhagen by default);
local wall time is the truth for recurring things, UTC only on the wire.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import Enum
from functools import cached_property
from typing import Literal

from scheduler.cpr import has_cpr, mask_cprs


class Cadence(str, Enum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class WeekParity(str, Enum):
    EVEN = "even"
    ODD = "odd"
    ANY = "any"

    def admits(self, day: date) -> bool:
        """ISO week parity; from ``isocalendar`` so week 53 counts as odd."""
        if self is WeekParity.ANY:
            return True
        odd = day.isocalendar().week % 2 == 1
        return odd if self is WeekParity.ODD else not odd


class OnClosed(str, Enum):
    """What happens to a session that falls on a closed day."""

    CANCEL = "cancel"
    MOVE = "move"  # to the next working day, same hour


class SessionStatus(str, Enum):
    PLANNED = "planned"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class DeadlineRule:
    """When agenda items for a session must have arrived.

    Either ``days_before`` calendar days before the session, or the
    ``weekday_before`` (0 = Monday) of the session's own week or earlier,
    at ``at`` local time. A deadline on a closed day moves back.
    """

    at: time
    days_before: int | None = None
    weekday_before: int | None = None


@dataclass(frozen=True)
class Series:
    """A recurring sparring forum (sparringsforum), e.g. weekly for 15-29."""

    id: str
    name: str
    min_age: int
    max_age: int | None
    cadence: Cadence
    weekday: int  # 0 = Monday
    start: time
    duration: timedelta
    deadline: DeadlineRule
    week_parity: WeekParity = WeekParity.ANY
    nth: int = 1  # monthly: which matching weekday of the month
    slot_length: timedelta = timedelta(minutes=10)
    coordinators: tuple[str, ...] = ()
    on_closed: OnClosed = OnClosed.CANCEL
    location: str = ""
    remind: tuple[str, ...] = ()  # told before the deadline (a caseworkers' list)

    @property
    def capacity(self) -> int:
        return int(self.duration // self.slot_length)

    def serves_age(self, age: int) -> bool:
        return age >= self.min_age and (self.max_age is None or age <= self.max_age)


@dataclass(frozen=True)
class Closure:
    """A closed day, or a day closed from ``from_time`` (half day)."""

    day: date
    name: str
    from_time: time | None = None

    def covers(self, moment: time) -> bool:
        return self.from_time is None or moment >= self.from_time


@dataclass(frozen=True)
class Session:
    """One occurrence of a series (møde i sparringsforum).

    ``key`` is stable for the life of the session, even when it is moved
    off a closed day: it is built from the date the rule gave.
    """

    series_id: str
    rule_date: date
    start: datetime
    end: datetime
    deadline: datetime
    capacity: int
    status: SessionStatus = SessionStatus.PLANNED
    note: str | None = None
    extra: bool = False  # added on the coordinators' "Ekstra møde: ja" (note "ekstra"), not by the rule

    @cached_property  # read for every session an allocation walks past
    def key(self) -> str:
        return f"{self.series_id}/{self.rule_date.isoformat()}"

    @property
    def planned(self) -> bool:
        return self.status is SessionStatus.PLANNED

    def slot_start(self, index: int, slot_length: timedelta) -> datetime:
        return self.start + index * slot_length


class BusyKind(str, Enum):
    BUSY = "busy"
    TENTATIVE = "tentative"
    OUT_OF_OFFICE = "oof"
    UNKNOWN = "unknown"  # no access: never silently free


@dataclass(frozen=True)
class BusyInterval:
    start: datetime
    end: datetime
    kind: BusyKind = BusyKind.BUSY


@dataclass(frozen=True)
class Attendee:
    address: str
    name: str = ""
    required: bool = True


@dataclass(frozen=True)
class Recurrence:
    """A weekly rule (RRULE:FREQ=WEEKLY;INTERVAL=n;UNTIL=…) with exceptions.

    Only what both iCalendar and EWS express; the monthly even-ISO-week rule
    is not one of them and is published as single events instead.
    """

    interval: int = 1
    until: date | None = None
    exdates: tuple[datetime, ...] = ()  # local start times of removed occurrences


@dataclass(frozen=True)
class Meeting:
    """A calendar event sparring owns: a session, a caseworker's slot, a booking.

    ``uid`` is stable for the life of the thing it stands for; ``sequence``
    rises with every change that is sent. With ``recurrence`` the event is a
    series; with ``recurrence_id`` it is one changed or cancelled occurrence
    of the series ``uid``. Summary, description and location never carry a
    CPR number or case text: invitations are not the place for them; as the
    last guard before any calendar (``.ics``, CalDAV, EWS, iTIP), a number
    that got into them anyway is masked here, on construction.
    """

    uid: str
    summary: str
    start: datetime
    end: datetime
    organizer: str
    organizer_name: str = ""
    attendees: tuple[Attendee, ...] = ()
    description: str = ""
    location: str = ""
    sequence: int = 0
    cancelled: bool = False
    recurrence: Recurrence | None = None
    recurrence_id: datetime | None = None
    categories: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("summary", "description", "location", "organizer_name"):
            text = getattr(self, name)
            if has_cpr(text):
                object.__setattr__(self, name, mask_cprs(text))
        if any(has_cpr(a.name) for a in self.attendees):
            object.__setattr__(self, "attendees", tuple(
                Attendee(a.address, mask_cprs(a.name), a.required) for a in self.attendees))


# Hex digits written as letters: a random run of ten digits would read as a
# CPR number to every filter that guards outgoing text.
_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def new_uid(kind: str, domain: str) -> str:
    """A UID for a new event: random (122 bits), so never one an earlier
    event had, and without digits."""
    return f"sparring-{kind}-{uuid.uuid4().hex.translate(_LETTERS)}@{domain}"


# -- meeting requests and slot search (the CLI, mails and the slot finder) ---


@dataclass(frozen=True)
class BookingRequest:
    """A meeting to book: from the CLI, a meeting-request mail or the
    cooperation job; stored with its meeting to book it again."""

    kind: str
    first: date
    last: date
    duration: timedelta
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    external: tuple[str, ...] = ()
    title: str | None = None
    location: str = ""
    reference: str = ""  # e.g. "cooperation:2027-1", "item:42"
    not_before: datetime | None = None


Strategy = Literal["earliest", "spread"]


@dataclass(frozen=True)
class SlotRequest:
    """What to find: a window, a duration and who must (or may) come."""

    window_start: datetime
    window_end: datetime
    duration: timedelta
    required: tuple[str, ...]
    busy: Mapping[str, Sequence[BusyInterval]]
    optional: tuple[str, ...] = ()
    working_hours: tuple[time, time] = (time(9), time(15))
    grid: timedelta = timedelta(minutes=15)
    buffer: timedelta = timedelta(0)
    rooms: Mapping[str, Sequence[BusyInterval]] = field(default_factory=dict)
    strategy: Strategy = "earliest"
    language: str = "da"  # of the warnings


# -- what the mail parser found in a mail (its adapter fills it, the core checks it) --


class MailKind(str, Enum):
    ITEM = "item"
    WITHDRAW = "withdraw"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    READ_RECEIPT = "read_receipt"
    CALENDAR_REPLY = "calendar_reply"
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"  # MIME the stdlib parser gives up on, or anything else that broke
    HEADER_TOO_LONG = "header_too_long"  # a Subject over MAX_HEADER characters: not decoded
    BOOKING_REQUEST = "booking_request"  # "Netværksmøde"/"Koordineringsmøde" in the subject
    CASE_MAIL = "case_mail"  # a case reference ("[K-7F3Q]") in the subject: Enighed, Opfølgning
    DECISION = "decision"  # a reply to an agenda: its subject holds the session's reference
    EXTRA_REPLY = "extra_reply"  # a reply to a backlog warning: "[Ekstra unge 2027-01-18 10:00]"


@dataclass(frozen=True)
class CalendarReply:
    """An attendee's answer (iTIP REPLY) to an invitation sparring sent."""

    uid: str
    attendee: str  # lower-cased bare address
    partstat: str  # ACCEPTED, DECLINED, TENTATIVE, ...
    recurrence_id: datetime | date | None = None
    sequence: int = 0


@dataclass(frozen=True)
class ParsedMail:
    message_id: str  # without <>; "sha256:<hex of raw>" when missing
    sender: str  # lower-cased bare address, "" if none
    sender_name: str = ""
    subject: str = field(default="", repr=False)  # may hold a CPR number
    date_header: datetime | None = None  # the sender's claim: never used for deadlines
    kind: MailKind = MailKind.ITEM
    acute: bool = False
    cprs: tuple[str, ...] = field(default=(), repr=False)  # 10 digits each, in order
    bad_cpr: bool = False  # a CPR label followed by something that is not 10 digits
    health: tuple[str, ...] = field(default=(), repr=False)
    social: tuple[str, ...] = field(default=(), repr=False)
    attachments: tuple[str, ...] = ()  # names of parts not taken in
    calendar_reply: CalendarReply | None = None
    auto_reason: str | None = None  # the header or part that made it automatic
    request_lines: tuple[str, ...] = field(default=(), repr=False)  # a request's or decision's own lines
    size: int = 0
