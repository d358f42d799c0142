"""A citizen's rights: access (GDPR art. 15) and erasure (art. 17).

``access`` gathers every trail row about one citizen and everything held
about them now (items decrypted for this answer only, and the queued or
sent mail copies that hold their data); ``erase`` deletes that data at
once, cancels the slot invitations and acute meetings it caused, and
appends an ``erased`` row to the trail. Both find the citizen by the keyed
CPR hash only, and both are audited.
"""

from __future__ import annotations

import email
import getpass
import json
import os
import re
from dataclasses import dataclass, field, replace
from email import policy
from pathlib import Path

from sqlalchemy import delete, func, select

from scheduler.errors import UserError
from scheduler.mail.parse import parse_mail
from scheduler.cpr import Cpr, CprError, parse_cpr
from scheduler.planning.slots import Candidate
from scheduler.services import metrics, statistics
from scheduler.services.dispatch import message_id_of
from scheduler.store import audit
from scheduler.store.crypto import MAIL_SUFFIX, DecryptionError, open_mail
from scheduler.store.repository import PENDING, ItemView, Repository
from scheduler.store.tables import AuditEntry, Booking, CalendarEvent, Item, Mail, OutboxEntry

# The local folders that may hold a source mail or a sent copy.
SETTLED = ("processed", "rejected", "quarantine", "ignored")


def citizen(app, text: str, command: str) -> tuple[Cpr, str]:
    """The CPR number given on the command line and its keyed hash."""
    try:
        cpr = parse_cpr(text, app.now().date())
    except CprError as exc:
        raise UserError(f"{command}: --cpr is not a valid CPR number ({exc.code}).") from None
    return cpr, app.cipher.lookup_hash(cpr.digits, purpose="cpr")


def actor() -> str:
    """Who ran the command, for the trail: the login behind sudo if any."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


# -- access --------------------------------------------------------------------


@dataclass
class Access:
    trail: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)
    copies: list[dict] = field(default_factory=list)


def access(app, text: str) -> Access:
    """Everything about one citizen; the query itself is appended to the trail."""
    cpr, subject = citizen(app, text, "audit")
    answer = Access()
    with app.transaction() as repo:
        connection = repo.db.connection()
        answer.trail = [_trail_row(app, r) for r in audit.about(connection, subject)]
        items = _items(repo, subject)
        answer.items = [_item_json(app, v) for v in items]
        answer.copies = [_copy_json(app, entry) for entry, _ in _copies(repo, subject, cpr, items)]
        repo.audit("access-export", actor=actor(), subject=subject,
                   detail={"items": len(answer.items), "copies": len(answer.copies)})
    return answer


def _trail_row(app, row) -> dict:
    local = lambda moment: moment.astimezone(app.tz).isoformat() if moment else None  # noqa: E731
    return {"at": local(row.at), "action": row.action, "actor": row.actor, "series": row.series,
            "session_start": local(row.session_start), "message_id": row.message_id,
            "recipients": json.loads(row.recipients)}


def _items(repo: Repository, subject: str) -> list[ItemView]:
    ids = repo.db.scalars(select(Item.id).where(Item.cpr_hash == subject).order_by(Item.id)).all()
    return [repo.item(i) for i in ids]


def _item_json(app, item: ItemView) -> dict:
    return {"item": item.id, "series": item.series_id, "session_start": item.session_start.astimezone(app.tz).isoformat(),
            "status": item.status, "acute": item.acute, "sender": item.sender,
            "received_at": item.received_at.astimezone(app.tz).isoformat(), "cpr": item.cpr.formatted,
            "health": list(item.health), "social": list(item.social)}


def _copy_json(app, entry: OutboxEntry) -> dict:
    return {"copy": entry.kind, "status": entry.status, "recipients": json.loads(entry.recipients),
            "created_at": entry.created_at.astimezone(app.tz).isoformat()}


def _copies(repo: Repository, subject: str, cpr: Cpr, items: list[ItemView]) -> list[tuple[OutboxEntry, dict]]:
    """Outbox entries holding the citizen's data: tagged with their hash when
    queued, or (older entries) naming their full CPR number or item text."""
    needles = _needles(cpr, items)
    found = []
    for entry in repo.db.scalars(select(OutboxEntry).order_by(OutboxEntry.id)):
        payload = repo.cipher.decrypt_json(entry.payload_enc, context="outbox.payload")
        if payload.get("type") != "mail":
            continue
        if any(a[0] == subject for a in payload.get("about", ())) or _mentions(payload["message"], needles):
            found.append((entry, payload))
    return found


def _needles(cpr: Cpr, items: list[ItemView]) -> list[str]:
    lines = {line for item in items for line in (*item.health, *item.social) if len(line) >= 12}
    return [cpr.formatted, cpr.digits, *sorted(lines)]


def _mentions(message: str, needles: list[str]) -> bool:
    parsed = email.message_from_string(message, policy=policy.compat32)
    for part in parsed.walk():
        if part.get_content_maintype() != "text":
            continue
        body = (part.get_payload(decode=True) or b"").decode(part.get_content_charset() or "utf-8", "replace")
        if any(n in body for n in needles):
            return True
    return False


# -- erasure -------------------------------------------------------------------


@dataclass
class Erasure:
    items: int = 0
    outbox: int = 0
    mails: int = 0
    calendar: int = 0
    message_ids: tuple[str, ...] = ()  # of the citizen's mails: to find them in a mailbox

    def as_json(self) -> dict:
        return {"items": self.items, "outbox": self.outbox, "mails": self.mails, "calendar": self.calendar}


def erase(app, text: str) -> Erasure:
    """Delete the citizen's data everywhere sparring keeps it, now."""
    cpr, subject = citizen(app, text, "erase")
    done = Erasure()
    with app.transaction() as repo:
        _secure_delete(repo)
        statistics.fold(repo, app.tz, now=app.now(), subject=subject)  # first: counts are not personal data
        items = _items(repo, subject)
        copies = _copies(repo, subject, cpr, items)
        done.calendar = _cancel_calendar(app, repo, items)
        mails = _source_mails(repo, subject, items)
        done.message_ids = _message_ids(repo, subject)
        done.items = repo.db.execute(delete(Item).where(Item.cpr_hash == subject)).rowcount
        for uid in repo.erase_cases(subject, app.now()):  # cases after the forum, their meetings and decisions
            app.calendar_sync.cancel_sent(repo, uid)
            repo.cancel_booking(uid, app.now())
            done.calendar += 1
        done.outbox = _delete_copies(repo, [e for e, _ in copies])
        refs = [m.source_ref for m in mails]
        keys = {m.message_key for m in mails}
        erased = Mail.id.in_([m.id for m in mails])
        metrics.fold_mails(repo.db, erased)  # sparring_mails_total never falls back
        done.mails = repo.db.execute(delete(Mail).where(erased)).rowcount
        repo.audit("erased", actor=actor(), subject=subject, detail=done.as_json())
    sent = {found for _, p in copies if (found := message_id_of(p["message"]))}
    _delete_files(app, refs, keys, sent)
    _checkpoint(app)
    return done


def _secure_delete(repo: Repository) -> None:
    """SQLite overwrites deleted content with zeros (else it lingers in free pages)."""
    if repo.db.get_bind().dialect.name == "sqlite":
        repo.db.connection().exec_driver_sql("PRAGMA secure_delete = ON")


def _checkpoint(app) -> None:
    """Fold the write-ahead log into the database file, so no old page stays in it."""
    if app.engine.dialect.name == "sqlite":
        with app.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _cancel_calendar(app, repo: Repository, items: list[ItemView]) -> int:
    """Slots and acute meetings of the citizen's items cancelled through the
    outbox (the calendar sync), before the items go; returns how many."""
    before = _open_events(repo)
    pending = [i for i in items if i.status == PENDING]
    if pending:
        for item in pending:  # through the ORM: the calendar sync reads these rows back
            repo.db.get(Item, item.id).status = "erased"
        repo.db.flush()
        for handler in app.change_handlers:
            handler(repo, {i.session_key for i in pending}, [i.id for i in pending])
    _cancel_bookings(app, repo, [i.id for i in items])
    return before - _open_events(repo)


def _open_events(repo: Repository) -> int:
    return repo.db.scalar(select(func.count()).select_from(CalendarEvent)
                          .where(CalendarEvent.cancelled.is_(False), CalendarEvent.kind.in_(("slot", "booking"))))


def _cancel_bookings(app, repo: Repository, item_ids: list[int]) -> None:
    """Acute meetings booked for the items: cancelled, and their requests
    (which name the citizen's network) deleted."""
    references = [f"item:{i}" for i in item_ids]
    for booking in repo.db.scalars(select(Booking).where(Booking.reference.in_(references))).all():
        if booking.start is not None and booking.status in ("booked", "rebooked"):
            stored = repo.booking_by_uid(booking.uid)
            if stored is not None:
                req = stored[0]
                invited = tuple(dict.fromkeys(req.required + req.optional + req.external))
                slot = Candidate(booking.start, booking.end, 0, (), None, ())
                meeting = app.booker().meeting_for(req, slot, invited, uid=booking.uid)
                app.calendar_sync.apply(repo, replace(meeting, cancelled=True), "booking")
        repo.db.delete(booking)


def _message_ids(repo: Repository, subject: str) -> tuple[str, ...]:
    """Every Message-ID the trail names for the citizen (their mails in, and
    the copies sent)."""
    return tuple(sorted(set(repo.db.scalars(
        select(AuditEntry.message_id).where(AuditEntry.subject == subject, AuditEntry.message_id.is_not(None))))))


def _source_mails(repo: Repository, subject: str, items: list[ItemView]) -> list:
    """The records of the citizen's mails: those that made an item, and
    those the trail names (a withdrawal, a rejection) by their Message-ID."""
    ids = {r for r in repo.db.scalars(select(Item.mail_id).where(Item.cpr_hash == subject))}
    keys = [repo.message_key(m.strip("<>")) for m in _message_ids(repo, subject)]  # the trail keeps the brackets
    query = select(Mail).where(Mail.id.in_(ids) | Mail.message_key.in_(keys))
    return repo.db.scalars(query).all()


def _delete_copies(repo: Repository, entries: list[OutboxEntry]) -> int:
    if not entries:
        return 0
    return repo.db.execute(delete(OutboxEntry).where(OutboxEntry.id.in_([e.id for e in entries]))).rowcount


def _delete_files(app, refs: list[str], keys: set[str], sent: set[str]) -> int:
    """The raw source mails in the settled folders (by their inbox name,
    also as renamed on a clash or stored encrypted) and the sent copies in
    the local outbox folder (by Message-ID). A file whose name fits is
    deleted only if it is one of the erased mails (its Message-ID's key):
    ``a-1.eml`` may be another mail that arrived under that name, and a
    later ``a.eml`` is renamed on a clash with an earlier one."""
    count = 0
    for folder in SETTLED:
        for ref in refs:
            stem, suffix = os.path.splitext(Path(ref).name)
            shape = re.compile(rf"{re.escape(stem)}(-\d+)?{re.escape(suffix)}(\.enc)?")
            for path in _files(app.data_dir / folder):
                if shape.fullmatch(path.name) and _one_of(app, path, ref, keys):
                    path.unlink()
                    count += 1
    for path in _files(app.data_dir / "outbox"):
        if message_id_of(path.read_bytes().decode("ascii", "surrogateescape")) in sent:
            path.unlink()
            count += 1
    return count


def _one_of(app, path: Path, ref: str, keys: set[str]) -> bool:
    """Whether the settled file ``path`` holds one of the mails keyed ``keys``;
    one that cannot be read (another key's) is judged by its name alone."""
    try:
        raw = path.read_bytes()
        if path.name.endswith(MAIL_SUFFIX):
            raw = open_mail(app.cipher, raw)
    except (OSError, DecryptionError):
        return path.name.removesuffix(MAIL_SUFFIX) == Path(ref).name
    return app.cipher.lookup_hash(parse_mail(raw, max_bytes=app.config.intake.max_bytes).message_id, purpose="message-id") in keys


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []



def erase_in_mailbox(source, done: Erasure) -> int:
    """The citizen's mails in the mailbox folders of an IMAP, Exchange or
    Graph source, found by Message-ID; the folder source's are the data
    directory's, erased above (0 here)."""
    erase_settled = getattr(source, "erase_settled", None)
    return erase_settled(done.message_ids) if erase_settled and done.message_ids else 0
