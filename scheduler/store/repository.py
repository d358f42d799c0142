"""Queries and writes the services need, over one database transaction.

Personal data goes in and out of here only: CPR numbers and item texts are
encrypted with the ``FieldCipher`` on the way in and decrypted on the way
out; lookups use keyed hashes. Nothing here commits: ``App.transaction``
does, so a decision and its outbox entries land together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import date, datetime, timedelta
from email.message import Message

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as DbSession

from scheduler.wire import domain_of, to_bytes
from scheduler.model import BookingRequest, Session, new_uid
from scheduler.planning.allocation import Booked, Bump, Occupancy, Placement, Request, slot_order
from scheduler.cpr import Cpr, parse_cpr
from scheduler.store import audit
from scheduler.store.cases import CaseRecords
from scheduler.store.crypto import FieldCipher
from scheduler.store.tables import Booking, Item, Mail, Meta, OutboxEntry, extra_session_rows

PENDING = "pending"
_UNPLACED = frozenset({"rejected", "quarantined"})  # outcomes that keep the mail, but make no item
_INSERTS = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}


@lru_cache(maxsize=4)
def _queue_statement(dialect: str):
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING, built once per dialect."""
    return _INSERTS[dialect](OutboxEntry).on_conflict_do_nothing(index_elements=["dedupe_key"])


# Rows written with Core on the session's connection (see ``_write_mail``).
_MAIL_INSERT = insert(Mail.__table__).returning(Mail.__table__.c.id)
_MAIL_ROWS = insert(Mail.__table__)  # deferred records: no id needed, written in one executemany
# Built once: a statement built per call costs more than its query (a chunk of a batch asks it).
_EARLIER = (select(Mail.message_key, Mail.source_ref, Mail.outcome)
            .where(Mail.message_key.in_(bindparam("keys", expanding=True))))
_PENDING_FROM = (select(Item.id, Item.session_key, Item.acute, Item.received_at, Item.cpr_hash, Item.cpr_enc)
                 .where(Item.status == PENDING, Item.session_start >= bindparam("first")))
_ITEM_INSERT = insert(Item.__table__).returning(Item.__table__.c.id)
_ABOUT = (select(Item.id, Item.cpr_hash, Item.series_id, Item.session_start)
          .where(Item.id.in_(bindparam("ids", expanding=True))))


@dataclass(frozen=True)
class ItemView:
    """An item with its personal data decrypted, for agendas and notices."""

    id: int
    series_id: str
    session_key: str
    session_start: datetime
    acute: bool
    received_at: datetime
    sender: str
    status: str
    cpr: Cpr
    health: tuple[str, ...]
    social: tuple[str, ...]


class Repository(CaseRecords):
    def __init__(self, db: DbSession, cipher: FieldCipher, app=None) -> None:
        self.db = db
        self.cipher = cipher
        self.app = app
        self.after_commit: list = []  # run by App.transaction once committed
        self.before_commit: list = []  # run by App.transaction once decided, inside the transaction
        self._booked_cache: Occupancy | None = None  # per batch, see begin_batch
        self._cached_from: datetime | None = None  # the cache holds every session from here on
        self._seen: dict[str, tuple] | None = None  # message key -> (ref, outcome), see begin_batch
        self._mail: dict = {}  # the record of the mail being decided, see begin_mail
        self._mail_id: int | None = None  # its row, once written
        self._mail_mid: str | None = None  # its Message-ID, for its audit rows
        self._mail_cprs: tuple[str, ...] = ()  # the CPR numbers it names, for its audit rows
        self._encrypted_reply = False  # it came S/MIME-encrypted: so goes its receipt, where possible
        self._message_keys: dict[str, str] = {}  # HMACs of Message-IDs, for this transaction
        self._deferred: dict | None = None  # statement -> rows, see defer_writes
        self._audit: list[audit.Entry] = []  # appended to the trail at the commit, see flush_writes
        self._audit_mark: int | None = None  # where the open mail's rows begin, see forget_batch_cache
        self._about: dict[int, list] = {}  # item id -> [subject, series, start], of items placed here

    # -- mails ---------------------------------------------------------

    def message_key(self, message_id: str) -> str:
        key = self._message_keys.get(message_id)
        if key is None:  # asked several times per mail: the seen check, the record, the receipt
            key = self._message_keys[message_id] = self.cipher.lookup_hash(message_id, purpose="message-id")
        return key

    def earlier(self, message_id: str) -> tuple[str, str] | None:
        """(source ref, outcome) of the mail taken in before with this
        Message-ID, or None. The same ref means the very same mail, handed
        out again because its move was lost (a crash after the commit)."""
        key = self.message_key(message_id)
        if self._seen is not None:
            return self._seen.get(key)
        row = self.db.execute(_EARLIER, {"keys": [key]}).first()
        return (row.source_ref, row.outcome) if row else None

    def begin_mail(self, parsed, incoming, now: datetime) -> None:
        """Open the record of a mail; it is written once its outcome is known."""
        self._mail = {
            "message_key": self.message_key(parsed.message_id),
            "source_ref": incoming.ref[:200],
            "received_at": incoming.received_at,
            "processed_at": now,
            "outcome": "processing",
            "reason_code": None,
            "sender": (parsed.sender or "")[:320] or None,
            "purge_after": now + timedelta(days=self._retention()),
        }
        self._mail_id = None
        self._mail_mid = parsed.message_id  # for its audit rows
        self._mail_cprs = tuple(getattr(parsed, "cprs", ()))
        self._encrypted_reply = False
        self._audit_mark = len(self._audit)
        if self._seen is not None:
            self._seen[self._mail["message_key"]] = (self._mail["source_ref"], "processing")

    def set_outcome(self, outcome: str, code: str | None) -> None:
        """The outcome, before the mail is written (``place_item`` writes it)."""
        self._mail.update(outcome=outcome, reason_code=code)

    def finish_mail(self, outcome: str, code: str | None) -> None:
        """Write the mail's record with its outcome (one INSERT), or correct it."""
        self._audit_mark = None
        if outcome in _UNPLACED:
            self._audit_unplaced(outcome)
        if self._mail_id is None:
            self.set_outcome(outcome, code)
            if self._deferred is None:
                self._write_mail()
            else:
                self._deferred.setdefault(_MAIL_ROWS, []).append(self._mail)
        elif (outcome, code) != (self._mail["outcome"], self._mail["reason_code"]):
            self.set_outcome(outcome, code)
            self.db.connection().execute(
                update(Mail.__table__).where(Mail.__table__.c.id == self._mail_id)
                .values(outcome=outcome, reason_code=code))

    def _write_mail(self) -> int:
        # Core on the session's connection: a fifth of the ORM unit of work's cost.
        self._mail_id = self.db.connection().execute(_MAIL_INSERT, self._mail).scalar_one()
        return self._mail_id

    def _retention(self) -> int:
        return self.app.config.storage.retention_days if self.app else 30

    # -- items ---------------------------------------------------------

    def booked(self, sessions: Sequence[Session]) -> Occupancy:
        """Pending items per session for an allocation over ``sessions``.

        All of them in one query (an item far ahead would else cost a query
        for every full session before it). Within a batch the result is the
        batch's cache, complete from its first session on, which writes then
        keep current.
        """
        if not sessions:
            return Occupancy()
        if self._booked_cache is None:
            return self._prefetch(sessions)
        if self._cached_from is None or sessions[0].start < self._cached_from:
            self._booked_cache = self._prefetch(sessions)
            self._cached_from = sessions[0].start
        return self._booked_cache

    def _prefetch(self, sessions: Sequence[Session]) -> Occupancy:
        rows = self.db.execute(_PENDING_FROM, {"first": sessions[0].start})
        return Occupancy(Booked(r.id, r.session_key, r.acute, r.received_at, r.cpr_hash,
                                _LazyBirth(self, r.cpr_enc)) for r in rows)

    def booked_in(self, session_key: str) -> list[Booked]:
        """Pending items of a session (cached within a batch; do not mutate)."""
        cache = self._booked_cache
        if cache is None:
            return self._query_booked(session_key)
        if session_key not in cache:
            cache.load(session_key, self._query_booked(session_key))
        return cache[session_key]

    def _query_booked(self, session_key: str) -> list[Booked]:
        rows = self.db.execute(
            select(Item.id, Item.acute, Item.received_at, Item.cpr_hash, Item.cpr_enc).where(
                Item.session_key == session_key, Item.status == PENDING
            )
        )
        return [
            Booked(r.id, session_key, r.acute, r.received_at, r.cpr_hash, _LazyBirth(self, r.cpr_enc))
            for r in rows
        ]

    def place_item(self, placement: Placement, request: Request, content, parsed, received_at, app) -> int:
        """Store the item; call ``set_outcome`` first: the mail is written here, once."""
        now = app.now()
        session = placement.session
        mail = self._mail
        mail["purge_after"] = max(mail["purge_after"], session.start + timedelta(days=self._retention()))
        mail_id = self._mail_id or self._write_mail()  # the item points at it
        if placement.replaces is not None:
            self._set_status(placement.replaces, "replaced", now, session.key)
        if placement.bumped is not None:
            self._move(placement.bumped, now)
        item_id = self.db.connection().execute(_ITEM_INSERT, {
            "mail_id": mail_id,
            "series_id": session.series_id,
            "session_key": session.key,
            "session_start": session.start,
            "acute": request.acute,
            "status": PENDING,
            "cpr_hash": request.cpr_hash,
            "cpr_enc": self.cipher.encrypt(content.cpr.digits, context="items.cpr"),
            "text_enc": self.cipher.encrypt_json(
                {"health": list(content.health), "social": list(content.social)}, context="items.text"),
            "sender": parsed.sender,
            "received_at": received_at,
            "created_at": now,
            "updated_at": now,
            "purge_after": session.start + timedelta(days=self._retention()),
            "version": 1,
            "event_uid": new_uid("slot", domain_of(app.forum_address)),  # not the row id: ids repeat
        }).scalar_one()
        self._remember(Booked(item_id, session.key, request.acute, received_at, request.cpr_hash,
                              request.birth_date), session.start)
        self.audit("item-placed", actor=parsed.sender, subject=request.cpr_hash, series=session.series_id,
                   session_start=session.start, message_id=parsed.message_id)
        self._about[item_id] = [request.cpr_hash, session.series_id, session.start.isoformat()]  # for its receipt
        return item_id

    def _leave(self, item_id: int, session_key: str) -> Booked | None:
        """Take an item out of the batch's cache; if it is not there as
        expected, drop the cache (it is read again when next needed)."""
        if self._booked_cache is None:
            return None
        left = self._booked_cache.remove(item_id, session_key)
        if left is None:
            self._forget_sessions()
        return left

    def mark_replaced(self, item_id: int, now: datetime, session_key: str) -> None:
        """A newer item of the citizen gives way to a postponed one (``udsat``)."""
        self._set_status(item_id, "replaced", now, session_key)

    def restore_item(self, item_id: int, now: datetime) -> None:
        """A held session's item that gave way for ``udsat`` only, back as it was."""
        self.db.execute(update(Item).where(Item.id == item_id).values(status=PENDING, updated_at=now))
        self._audit_item(item_id, "item-restored")

    def _set_status(self, item_id: int, status: str, now: datetime, session_key: str) -> None:
        """An item leaves its session (replaced): the cache follows."""
        self._leave(item_id, session_key)
        self.db.execute(update(Item).where(Item.id == item_id).values(status=status, updated_at=now))
        self._audit_item(item_id, f"item-{status}")

    def move_item(self, bump: Bump, now: datetime) -> None:
        """An item to another session, keeping its arrival time (``udsat``)."""
        self._move(bump, now)

    def _move(self, bump: Bump, now: datetime) -> None:
        """An ordinary item bumped on by an acute one: the cache follows."""
        to = bump.to
        victim = self._leave(bump.item_id, bump.from_key)
        if victim is not None:
            self._remember(replace(victim, session_key=to.key), to.start)
        self.db.execute(
            update(Item)
            .where(Item.id == bump.item_id)
            .values(
                session_key=to.key,
                series_id=to.series_id,
                session_start=to.start,
                updated_at=now,
                purge_after=to.start + timedelta(days=self._retention()),
            )
        )
        self._audit_item(bump.item_id, "item-moved")
        self._about.pop(bump.item_id, None)  # its session changed

    def withdraw(self, cpr_hash: str, sender: str, now: datetime) -> list[ItemView]:
        """Withdraw ``sender``'s pending items for the citizen in sessions not yet held."""
        rows = self.db.scalars(
            select(Item).where(
                Item.cpr_hash == cpr_hash,
                Item.sender == sender,
                Item.status == PENDING,
                Item.session_start > now,
            )
        ).all()
        for row in rows:
            row.status, row.updated_at = "withdrawn", now
            self._leave(row.id, row.session_key)
            self.audit("item-withdrawn", actor=sender, subject=row.cpr_hash, series=row.series_id,
                       session_start=row.session_start, message_id=self._mail_message_id())
        self.db.flush()
        return [self._view(r) for r in rows]

    def item(self, item_id: int) -> ItemView:
        return self._view(self.db.get(Item, item_id))

    def items_of_session(self, session_key: str, statuses: Iterable[str] = (PENDING,)) -> list[ItemView]:
        rows = self.db.scalars(
            select(Item).where(Item.session_key == session_key, Item.status.in_(tuple(statuses)))
        ).all()
        views = [self._view(r) for r in rows]
        order = {b.item_id: n for n, b in enumerate(slot_order(_as_booked(views)))}
        return sorted(views, key=lambda v: order.get(v.id, len(order)))

    def slot_holders(self, session_key: str) -> list[tuple[int, str, str | None]]:
        """(item id, sender, slot event UID) of a session's pending items in
        slot order; nothing decrypted."""
        rows = self.db.execute(
            select(Item.id, Item.sender, Item.acute, Item.received_at, Item.event_uid)
            .where(Item.session_key == session_key, Item.status == PENDING)
        ).all()
        rows.sort(key=lambda r: (not r.acute, r.received_at, r.id))  # as ``slot_order``
        return [(r.id, r.sender, r.event_uid) for r in rows]

    def slot_index(self, item: ItemView) -> int:
        order = slot_order(self.booked_in(item.session_key))
        return next((n for n, b in enumerate(order) if b.item_id == item.id), len(order))

    def pending_sessions(self, after: datetime) -> list[str]:
        return list(
            self.db.scalars(
                select(Item.session_key).where(Item.status == PENDING, Item.session_start > after).distinct()
            )
        )

    def _view(self, row: Item) -> ItemView:
        digits = self.cipher.decrypt(row.cpr_enc, context="items.cpr")
        text = self.cipher.decrypt_json(row.text_enc, context="items.text")
        return ItemView(
            id=row.id,
            series_id=row.series_id,
            session_key=row.session_key,
            session_start=row.session_start,
            acute=row.acute,
            received_at=row.received_at,
            sender=row.sender,
            status=row.status,
            cpr=_cpr(digits),
            health=tuple(text.get("health", ())),
            social=tuple(text.get("social", ())),
        )

    # -- batches (Intake.run: one transaction; savepoints when a mail failed) ---

    def begin_batch(self, message_ids: Iterable[str] = ()) -> None:
        """Prepare this transaction to hold a whole fetched batch of mails.

        On SQLite the transaction is opened explicitly (``BEGIN IMMEDIATE``):
        pysqlite starts none before a SAVEPOINT, so releasing the first
        mail's savepoint would otherwise commit it; the write lock is taken
        up front too. Pending items are then cached per session for the
        batch: a full session is otherwise queried again for every mail.
        Which of ``message_ids`` were seen before is asked in one query
        (``add_seen`` asks for more).
        """
        if self.db.get_bind().dialect.name == "sqlite":
            self.db.connection().exec_driver_sql("BEGIN IMMEDIATE")
        self._booked_cache = Occupancy()
        self._cached_from = None
        self._seen = {}
        self.add_seen(message_ids)

    def add_seen(self, message_ids: Iterable[str]) -> None:
        """Ask in one query which of these Message-IDs were taken in before,
        so that ``earlier`` answers them from memory."""
        if self._seen is None:  # after a rollback: ``earlier`` asks the database
            return
        keys = {self.message_key(m) for m in message_ids} - self._seen.keys()
        if keys:
            self._seen.update((r.message_key, (r.source_ref, r.outcome))
                              for r in self.db.execute(_EARLIER, {"keys": list(keys)}))

    def forget_batch_cache(self) -> None:
        """After a mail's savepoint was rolled back: drop every cached session,
        and ask the database again which message keys it has seen."""
        self._drop_open_mail_audit()
        if self._booked_cache is not None:
            self._forget_sessions()
            self._seen = None

    def _forget_sessions(self) -> None:
        """Drop the cache (an item left a session): the next allocation reads it anew."""
        if self._booked_cache is not None:
            self._booked_cache = Occupancy()
            self._cached_from = None

    def _remember(self, booked: Booked, session_start: datetime) -> None:
        """Keep the cache current with an item just placed: its session is
        either cached or, from ``_cached_from`` on, known to be empty."""
        cache = self._booked_cache
        if cache is None:
            return
        if booked.session_key in cache or (self._cached_from is not None and session_start >= self._cached_from):
            cache.add(booked)

    # -- outbox --------------------------------------------------------

    def enqueue_mail(self, message: Message, *, kind: str, dedupe_key: str, recipients: Sequence[str],
                     about: Iterable[int] = (), citizens: Iterable[list] = (),
                     encrypted: bool | None = None, extra: dict | None = None) -> bool:
        """Queue a mail; ``about``: the items whose personal data it holds,
        ``citizens``: [subject, series, session start] of others (a case's)
        (the dispatcher appends an audit row for each once it is sent);
        ``encrypted``: whether the mail a receipt answers came encrypted
        (default: the mail being decided now, see ``reply_encrypted``);
        ``extra``: more payload fields (an agenda's late version)."""
        payload = {"type": "mail", "sender": self.app.forum_address if self.app else "",
                   "message": to_bytes(message).decode("ascii", "surrogateescape"), **(extra or {})}
        subjects = self.about_items(about) + [list(c) for c in citizens]
        if subjects:
            payload["about"] = subjects
        if kind == "receipt" and (self._encrypted_reply if encrypted is None else encrypted):
            payload["smime"] = True  # the dispatcher encrypts it if the sender's certificate is known
        return self.enqueue(kind, dedupe_key, recipients, payload)

    def enqueue(self, kind: str, dedupe_key: str, recipients: Sequence[str], payload: dict) -> bool:
        """Queue one outgoing action once; a second one with the same key is dropped."""
        now = self.app.now()
        row = {
            "dedupe_key": dedupe_key[:200],
            "kind": kind,
            "recipients": json.dumps(list(recipients)),
            "payload_enc": self.cipher.encrypt_json(payload, context="outbox.payload"),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "purge_after": now + timedelta(days=self._retention()),
        }
        # One statement, no read first: the unique key drops a repeat.
        statement = _queue_statement(self.db.get_bind().dialect.name)
        if self._deferred is not None:
            self._deferred.setdefault(statement, []).append(row)
            return True
        return self.db.connection().execute(statement, row).rowcount == 1

    # -- deferred writes (a batch decided straight through) ------------------

    def defer_writes(self) -> None:
        """Collect outbox entries and the records of mails without an item,
        and write them in one executemany per table (``flush_writes``, which
        ``App.transaction`` calls before it commits) instead of one INSERT
        each. Only for a batch decided without savepoints: a savepoint's
        rollback would not take back rows still in the buffer. While
        deferred, ``enqueue`` answers True; a repeated key is still dropped
        by the database at the flush.
        """
        self._deferred = {}

    def flush_writes(self) -> None:
        if self._deferred:
            connection = self.db.connection()
            for statement, rows in self._deferred.items():
                connection.execute(statement, rows)
            self._deferred.clear()
        if self._audit:
            audit.append(self.db.connection(), self.cipher, self._audit)
            self._audit.clear()

    # -- the audit trail (rows appended at the commit, in one go) -------------

    def audit(self, action: str, **fields) -> None:
        """Record that personal data was read, sent or changed (no data itself)."""
        at = self.app.now() if self.app else datetime.now().astimezone()
        self._audit.append(audit.Entry(action, at, **fields))

    def _audit_item(self, item_id: int, action: str) -> None:
        row = self.db.execute(select(Item.cpr_hash, Item.series_id, Item.session_start)
                              .where(Item.id == item_id)).first()
        if row is not None:
            self.audit(action, subject=row.cpr_hash, series=row.series_id, session_start=row.session_start,
                       message_id=self._mail_message_id())

    def reply_encrypted(self, encrypted: bool) -> None:
        """The mail being decided came encrypted: answer it encrypted."""
        self._encrypted_reply = encrypted

    @property
    def replying_encrypted(self) -> bool:
        """Whether the mail being decided came encrypted (``reply_encrypted``)."""
        return self._encrypted_reply

    def _audit_unplaced(self, outcome: str) -> None:
        """A mail that named citizens but made no item (rejected, quarantined):
        the forum received their data all the same, until the retention."""
        for digits in sorted(set(self._mail_cprs)):
            self.audit(f"mail-{outcome}", actor=self._mail.get("sender") or "unknown",
                       subject=self.cipher.lookup_hash(digits, purpose="cpr"), message_id=self._mail_mid)

    def _mail_message_id(self) -> str | None:
        return self._mail_mid

    def _drop_open_mail_audit(self) -> None:
        """A mail's savepoint rolled back: its rows go with it."""
        if self._audit_mark is not None:
            del self._audit[self._audit_mark:]
            self._audit_mark = None

    def about_items(self, item_ids: Iterable[int]) -> list[list]:
        """[subject, series, session start] of items, for an outgoing mail's
        audit rows once it is sent (see ``enqueue_mail``)."""
        ids = list(item_ids)
        missing = [i for i in ids if i not in self._about]
        if missing:  # an item placed in this transaction is known without a query
            for r in self.db.execute(_ABOUT, {"ids": missing}):
                self._about[r.id] = [r.cpr_hash, r.series_id, r.session_start.isoformat()]
        return [self._about[i] for i in ids if i in self._about]

    # -- bookings: no CPR, only the request, encrypted (external people are the
    # citizen's network) --

    def save_booking(self, req, meeting, *, status: str, now: datetime) -> None:

        row = self.db.scalar(select(Booking).where(Booking.uid == meeting.uid)) if meeting else None
        blob = self.cipher.encrypt_json(_request_json(req), context="bookings.request")
        keep = timedelta(days=self._retention())
        if row is None:
            row = Booking(uid=meeting.uid if meeting else f"none:{req.kind}:{req.reference}:{now.isoformat()}",
                          kind=req.kind, reference=req.reference or "", created_at=now)
            self.db.add(row)
        row.status, row.request_enc, row.updated_at = status, blob, now
        row.start = meeting.start if meeting else None
        row.end = meeting.end if meeting else None
        row.purge_after = (meeting.end if meeting else now) + keep
        self.db.flush()


    def booking_by_uid(self, uid: str):
        """(request, start) of a booking, or None."""

        row = self.db.scalar(select(Booking).where(Booking.uid == uid))
        if row is None:
            return None
        return _request_from(self.cipher.decrypt_json(row.request_enc, context="bookings.request")), row.start


    def cancel_booking(self, uid: str, now: datetime) -> None:
        """A booking no longer wanted: a later decline must not rebook it."""
        self.db.execute(update(Booking).where(Booking.uid == uid).values(status="cancelled", updated_at=now))

    def bookings_for(self, reference: str) -> list[tuple[str, str]]:
        """(uid, status) of the bookings made for ``reference``."""

        return [(r.uid, r.status) for r in self.db.scalars(select(Booking).where(Booking.reference == reference))]

    # -- meta ----------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        row = self.db.get(Meta, key)
        if row is None:
            self.db.add(Meta(key=key, value=value))
        else:
            row.value = value

    def get_meta(self, key: str) -> str | None:
        row = self.db.get(Meta, key)
        return row.value if row else None

    def extra_sessions(self) -> list[tuple]:
        """(series id, start, added at) of the extra sessions added on backlog warnings."""
        return extra_session_rows(self.db)

    def count_outbox(self, status: str) -> int:
        self.flush_writes()
        return self.db.scalar(select(func.count()).select_from(OutboxEntry).where(OutboxEntry.status == status))


class _LazyBirth:
    """A birth date decrypted only if the allocation asks for it (a bump)."""

    def __init__(self, repo: Repository, blob: bytes) -> None:
        self.repo, self.blob = repo, blob

    def __call__(self) -> date:
        return _cpr(self.repo.cipher.decrypt(self.blob, context="items.cpr")).birth_date


def _cpr(digits: str) -> Cpr:
    # Stored numbers were valid when taken in; "today" far ahead skips the future check.
    return parse_cpr(digits, date.max)


def _as_booked(views: Sequence[ItemView]) -> list[Booked]:
    return [Booked(v.id, v.session_key, v.acute, v.received_at, "", v.cpr.birth_date) for v in views]


def _request_json(req) -> dict:
    return {
        "kind": req.kind, "first": req.first.isoformat(), "last": req.last.isoformat(),
        "duration": int(req.duration.total_seconds() // 60), "required": list(req.required),
        "optional": list(req.optional), "external": list(req.external), "title": req.title,
        "location": req.location, "reference": req.reference,
    }


def _request_from(data: dict) -> BookingRequest:
    return BookingRequest(
        kind=data["kind"], first=date.fromisoformat(data["first"]), last=date.fromisoformat(data["last"]),
        duration=timedelta(minutes=data["duration"]), required=tuple(data["required"]),
        optional=tuple(data["optional"]), external=tuple(data["external"]), title=data["title"],
        location=data["location"], reference=data["reference"],
    )
