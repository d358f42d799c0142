"""The database schema (SQLAlchemy 2 declarative); migrations/ creates exactly this.

Personal data lives only in ``*_enc`` columns (``FieldCipher`` blobs) and
is found through ``*_hash`` columns (keyed HMAC). Mail addresses are not
art. 9 data and stay readable for operations. Every timestamp is
timezone-aware UTC in Python, whatever the database does with it.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names: the same on SQLite and PostgreSQL, so
# later migrations can drop or alter them by name.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Tables in the same database that are not ours (APScheduler's job store).
FOREIGN_TABLES = frozenset({"apscheduler_jobs"})


def include_name(name: str | None, type_: str, parent_names) -> bool:
    """Alembic filter: compare and migrate our tables only."""
    return not (type_ == "table" and name in FOREIGN_TABLES)


class UTCDateTime(TypeDecorator):
    """Aware datetimes only; stored as UTC, returned as aware UTC.

    SQLite keeps no offset, so values go in as naive UTC and come back with
    UTC attached; PostgreSQL's timestamptz is converted to UTC on the way out.
    A naive datetime is a bug (whose local time?) and is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        offset = None if value.tzinfo is None else value.utcoffset()  # one zone lookup: 8 per mail
        if offset is None:
            raise ValueError("naive datetime refused: give it a time zone")
        utc = value.replace(tzinfo=None) - offset
        return utc if dialect.name == "sqlite" else utc.replace(tzinfo=timezone.utc)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


class Mail(Base):
    """Every mail taken in, whatever became of it (duplicate detection, retention)."""

    __tablename__ = "mails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_key: Mapped[str] = mapped_column(String(64), unique=True)  # lookup_hash "message-id"
    source_ref: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime]
    # accepted|moved|rejected|quarantined|duplicate|ignored|withdrawn
    outcome: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(32))
    sender: Mapped[str | None] = mapped_column(String(320))
    purge_after: Mapped[datetime] = mapped_column(index=True)

    # A sender's mails of the last hour: the rate limit and repeated rejections.
    __table_args__ = (Index("ix_mails_sender_received_at", "sender", "received_at"),)


class Item(Base):
    """An agenda item: one citizen in one session; CPR and text encrypted."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mail_id: Mapped[int] = mapped_column(ForeignKey("mails.id"))
    series_id: Mapped[str] = mapped_column(String(32))
    session_key: Mapped[str] = mapped_column(String(64), index=True)
    session_start: Mapped[datetime]
    acute: Mapped[bool] = mapped_column(Boolean)
    # pending|withdrawn|replaced|cancelled|discussed
    status: Mapped[str] = mapped_column(String(16), index=True)
    cpr_hash: Mapped[str] = mapped_column(String(64), index=True)  # lookup_hash "cpr"
    cpr_enc: Mapped[bytes] = mapped_column(LargeBinary)  # context "items.cpr"
    text_enc: Mapped[bytes] = mapped_column(LargeBinary)  # {"health": [...], "social": [...]}, "items.text"
    sender: Mapped[str] = mapped_column(String(320))
    received_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    purge_after: Mapped[datetime] = mapped_column(index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)  # row format version
    # The slot event's UID, random; NULL for items from before it was kept
    # (their slots went out as "sparring-slot-<id>@<domain>").
    event_uid: Mapped[str | None] = mapped_column(String(200))


class OutboxEntry(Base):
    """One outgoing mail or calendar operation, sent at least once, deduplicated by key."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # receipt|agenda|invitation|alert|calendar|report
    recipients: Mapped[str] = mapped_column(Text)  # JSON list of addresses
    payload_enc: Mapped[bytes] = mapped_column(LargeBinary)  # context "outbox.payload"
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(String(500))  # class names / SMTP codes only
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    purge_after: Mapped[datetime] = mapped_column(index=True)


class CalendarEvent(Base):
    """What was last published per calendar UID, to send only differences."""

    __tablename__ = "calendar_events"

    uid: Mapped[str] = mapped_column(String(200), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    cancelled: Mapped[bool] = mapped_column(Boolean)
    kind: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]
    # The meeting as last sent (serial JSON), context "calendar_events.meeting":
    # a cancellation carries the event as it was. NULL for rows from before.
    meeting_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


class SessionState(Base):
    """Per session: whether its agenda (or cancellation) went out."""

    __tablename__ = "session_state"

    session_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    agenda_sent_at: Mapped[datetime | None]
    agenda_late: Mapped[bool] = mapped_column(Boolean)
    cancel_sent: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime]


class Lease(Base):
    """Which instance is active (see services/lease.py)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class Booking(Base):
    """A meeting sparring booked by free/busy, kept to rebook it on a decline.

    The request (participants, window, duration) is encrypted: external
    participants are the citizen's network.
    """

    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # cooperation|network|coordination|acute|joint
    reference: Mapped[str] = mapped_column(String(100), index=True)  # e.g. "cooperation:2027-0"
    status: Mapped[str] = mapped_column(String(16))  # booked|rebooked|no_slot|cancelled
    start: Mapped[datetime | None]
    end: Mapped[datetime | None]
    request_enc: Mapped[bytes] = mapped_column(LargeBinary)  # context "bookings.request"
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    purge_after: Mapped[datetime] = mapped_column(index=True)


class Meta(Base):
    """Small operational facts (last intake time, calendar epochs); no personal data."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # a Graph delta link can exceed 500 characters


class Counter(Base):
    """A count that outlives the rows it counts (``services/metrics.py``): mails
    folded in at purge, receipt latency buckets, calendar writes. No personal data."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEntry(Base):
    """The audit trail: one row per read, sending or change of personal data.

    Append-only (see ``store/audit.py``): no personal data, the citizen only
    as the keyed CPR hash (``subject``); ``prev_hash``/``row_hash`` chain the
    rows so that a changed or removed row is found by ``sparring audit --verify``.
    """

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # chain position
    at: Mapped[datetime] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(64), index=True)  # lookup_hash "cpr"
    series: Mapped[str | None] = mapped_column(String(32))
    session_start: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(300))
    recipients: Mapped[str] = mapped_column(Text)  # JSON list of addresses
    detail: Mapped[str | None] = mapped_column(String(500))  # JSON, counts and hashes only
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class Case(Base):
    """A citizen's case after the forum decided ``opstart`` (issue 15).

    Only what orchestration needs: the citizen as a keyed hash and an
    encrypted CPR, the parties' addresses, the stage of ``planning.cases``
    and its dates. The plan and the notes live in the municipality's case
    system. ``id`` is random and short (``K-7F3QXA``), never derived from
    the citizen.
    """

    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    series_id: Mapped[str] = mapped_column(String(32))
    session_start: Mapped[datetime]  # the forum session that decided it
    slot: Mapped[int] = mapped_column(Integer)
    cpr_hash: Mapped[str] = mapped_column(String(64), index=True)  # lookup_hash "cpr"
    cpr_enc: Mapped[bytes] = mapped_column(LargeBinary)  # context "cases.cpr"
    stage: Mapped[str] = mapped_column(String(24), index=True)  # planning.cases.Stage
    holder: Mapped[str] = mapped_column(String(320))
    offered_to: Mapped[str | None] = mapped_column(String(320))  # a pending hand-over
    referrer: Mapped[str] = mapped_column(String(320))  # the caseworker who brought the item
    receiver: Mapped[str] = mapped_column(String(320))  # the receiving caseworker
    parties: Mapped[str] = mapped_column(Text)  # JSON list of addresses
    opened_at: Mapped[datetime]
    agreed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    purge_after: Mapped[datetime | None] = mapped_column(index=True)  # set when it closes
    version: Mapped[int] = mapped_column(Integer, default=1)  # row format version


class Decision(Base):
    """A coordinator's decision on one slot of a session; the latest counts.

    Every decision is kept (a correction adds a row) so that a change can be
    told and audited. The free text after the dash is encrypted: it may name
    the citizen's circumstances.
    """

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[str] = mapped_column(String(32))
    session_key: Mapped[str] = mapped_column(String(64), index=True)
    session_start: Mapped[datetime]
    slot: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int | None] = mapped_column(Integer)  # no FK: items are purged first
    cpr_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # start|no-basis|postponed|referred
    receiver: Mapped[str | None] = mapped_column(String(320))  # opstart: modtager
    referred_to: Mapped[str | None] = mapped_column(String(100))  # henvist: to whom (a unit, not a person's data)
    note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)  # context "decisions.note"
    decided_by: Mapped[str] = mapped_column(String(320))
    decided_at: Mapped[datetime]
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    purge_after: Mapped[datetime] = mapped_column(index=True)


class CaseMeeting(Base):
    """A meeting of a case: koordineringsmøde, fællessamtale, opfølgning."""

    __tablename__ = "case_meetings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # coordination|joint|followup
    start: Mapped[datetime | None]
    end: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))  # booked|held|cancelled|no_slot
    uid: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StatCount(Base):
    """Counts that outlive the items (``services/statistics.fold``): anonymous,
    per series, session date, age group and measure; ``value`` holds a waiting
    time in days for the median measures (NULL for the plain counts)."""

    __tablename__ = "stat_counts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[str] = mapped_column(String(32))
    session_date: Mapped[date] = mapped_column(Date, index=True)
    age_group: Mapped[str] = mapped_column(String(8))
    measure: Mapped[str] = mapped_column(String(40))
    value: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)


class StatFoldedSlot(Base):
    """A session's slot whose decision is already in ``stat_counts`` (its
    remaining rows, kept for a case, are not counted again)."""

    __tablename__ = "stat_folded_slots"

    session_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)


__all__ = [
    "AuditEntry",
    "Base",
    "Booking",
    "CalendarEvent",
    "Case",
    "CaseMeeting",
    "Counter",
    "Decision",
    "Item",
    "Lease",
    "Mail",
    "Meta",
    "OutboxEntry",
    "SessionState",
    "StatCount",
    "StatFoldedSlot",
    "UTCDateTime",
]


class ExtraSession(Base):
    """A session added on a coordinator's "Ekstra møde: ja" (issue 16). No
    personal data: the planner lists it with the rule's sessions."""

    __tablename__ = "extra_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_key: Mapped[str] = mapped_column(String(64), unique=True)  # "<series>/<date>": one a day
    series_id: Mapped[str] = mapped_column(String(32))
    start: Mapped[datetime]
    created_at: Mapped[datetime]
    source_message: Mapped[str | None] = mapped_column(String(300))  # the reply's Message-ID
    added_by: Mapped[str] = mapped_column(String(320))


class BacklogEpisode(Base):
    """A stretch of time in which a series' queue is full: warned once.

    Open while ``closed_at`` is NULL; a new full queue after it closed is a
    new episode. ``proposed_start`` is the extra session offered (NULL: no
    common free time was found), ``answer`` the coordinators' (yes|no).
    """

    __tablename__ = "backlog_episodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[str] = mapped_column(String(32), index=True)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    depth: Mapped[int] = mapped_column(Integer)  # full sessions in a row when it opened
    waiting: Mapped[int] = mapped_column(Integer)  # items waiting behind them then
    proposed_start: Mapped[datetime | None]
    answer: Mapped[str | None] = mapped_column(String(8))
    extra_key: Mapped[str | None] = mapped_column(String(64))  # the extra session added
    # A coordinator's answer taken in but not yet carried out (JSON: yes,
    # sender, message_id): cleared by the step that finishes it, so an answer
    # cut off after its mail was filed is taken up again by the hourly check.
    pending: Mapped[str | None] = mapped_column(String(700))


def extra_session_rows(connection) -> list[tuple]:
    """(series id, start, added at) of every extra session; on an ORM session or a bare connection."""
    query = select(ExtraSession.series_id, ExtraSession.start, ExtraSession.created_at).order_by(ExtraSession.start)
    return [tuple(row) for row in connection.execute(query)]
