"""Delivering the outbox: mails and calendar writes, with retries.

Each entry is claimed (its attempt counted and its next try pushed back) and
committed *before* it is attempted, then marked done after. A crash between
the two leaves it claimed: it is tried once more after the back-off, never
lost, and sent at most twice. (Done marks are committed one by one, on a
bare connection: committed in groups they were cheaper, but a crash then
left a whole group to send again, and a second crash in that window a
third time.) A simulation (``durable=False``) is a rehearsal: there they
are committed once a run. Transient failures back off exponentially
(tenacity's wait, honouring a server's own ``retry_after`` such as EWS
``BackOffMilliseconds``); permanent ones, or too many attempts, mark the
entry failed (``sparring outbox --failed``). The administrator gets one
mail per outage episode (``episodes``), not one per failure or retry.

A mail some recipients refused (``PartialDelivery``) is not sent again to
those who have it: the entry keeps only the temporarily refused (4xx) and
retries them at its back-off; the permanently refused (5xx) are split off
into an entry of their own, failed and reported, so that ``outbox --retry``
can send it to them alone once their address is mended.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import select, update
from tenacity import wait_exponential

from scheduler.calendars.invitation import invitation_mail
from scheduler.calendars.serial import meeting_from_json
from scheduler.wire import to_bytes
from scheduler.ports import (
    CalendarBackend,
    DiskFull,
    MailTransport,
    OutgoingMail,
    PartialDelivery,
    PermanentError,
    TransientError,
)
from scheduler.services import metrics
from scheduler.services.episodes import Episodes
from scheduler.services.outage import Episode
from scheduler.services.protection import protect
from scheduler.store.tables import OutboxEntry

log = logging.getLogger("sparring.outbox")

# Calendar writes per put_many: EWS takes up to 100 items per CreateItem.
PUT_BATCH = 100


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class Dispatcher:
    def __init__(self, app, transport: MailTransport, calendar: CalendarBackend | None,
                 durable: bool = True) -> None:
        self.app = app
        self.durable = durable
        self._done: list[int] = []  # sent, marked done at the end of the run (durable=False)
        self._sent: list[tuple] = []  # (kind, recipients, payload) sent with personal data: audited per run
        self.transport = transport
        self.calendar = calendar
        cfg = app.config.outbox
        self.max_attempts = cfg.max_attempts
        self.patience = timedelta(hours=cfg.outage_patience_hours)
        self._wait = wait_exponential(multiplier=cfg.backoff_seconds, max=cfg.backoff_max_seconds)
        self._lock = threading.Lock()  # the intake loop and the scheduler's thread share it
        self.episodes = Episodes(app)
        self.progress = lambda: None  # called after each attempt: the daemon's watchdog sees the sender move
        self.disk = Episode(log)  # the outbox folder's disk full: logged once, not per entry

    def backoff(self, attempts: int, retry_after: float | None = None) -> timedelta:
        seconds = self._wait(SimpleNamespace(attempt_number=attempts))
        return timedelta(seconds=max(seconds, retry_after or 0))

    def run_once(self, limit: int = 200) -> DispatchReport:
        """Deliver what is due, in order. Consecutive calendar writes go out
        together (``put_many``: one EWS CreateItem per 100); a cancel first
        flushes them, so calendar operations keep their order."""
        report = DispatchReport()
        with self._lock:
            try:
                self._run(limit, report)
            finally:
                self._flush_done()
                self._audit_sent()
        return report

    def _run(self, limit: int, report: DispatchReport) -> None:
        puts: list[tuple] = []
        for entry_id, claimed in self._claim_due(limit):
            kind, recipients, payload, attempts = claimed
            if payload["type"] == "calendar-put" and self.calendar is not None:
                puts.append((entry_id, payload, attempts))
                if len(puts) == PUT_BATCH:
                    self._put_batch(puts, report)
                    puts = []
                continue
            if payload["type"] == "calendar-cancel":
                self._put_batch(puts, report)
                puts = []
            self._attempt(entry_id, kind, recipients, payload, attempts, report)
        self._put_batch(puts, report)

    def _put_batch(self, puts: list[tuple], report: DispatchReport) -> None:
        if len(puts) <= 1:
            for entry_id, payload, attempts in puts:
                self._attempt(entry_id, "calendar", "[]", payload, attempts, report)
            return
        try:
            self.calendar.put_many([meeting_from_json(p["meeting"]) for _, p, _ in puts])
        except TransientError as exc:
            self.episodes.failed("calendar", self._where("calendar"), _safe(exc), "calendar")
            for entry_id, _, attempts in puts:
                self._retry_later(entry_id, attempts, exc.retry_after, _safe(exc))
            report.retried += len(puts)
            return
        except Exception:  # PermanentError or unexpected: one by one finds the one that fails
            for entry_id, payload, attempts in puts:
                self._attempt(entry_id, "calendar", "[]", payload, attempts, report)
            return
        self._mark_done([entry_id for entry_id, _, _ in puts])
        self.episodes.succeeded("calendar")
        report.sent += len(puts)

    def _claim_due(self, limit: int) -> list[tuple[int, tuple]]:
        """The due entries, oldest first, claimed in one transaction."""
        return self._claim_where((OutboxEntry.status == "pending",
                                  OutboxEntry.next_attempt_at <= self.app.now()), limit)

    def _claim(self, entry_id: int):
        """Count the attempt and push the next try back, committed first."""
        return dict(self._claim_all([entry_id])).get(entry_id)

    def _claim_all(self, entry_ids: list[int]) -> list[tuple[int, tuple]]:
        """Claim these entries, where still pending and due."""
        return self._claim_where((OutboxEntry.id.in_(entry_ids), OutboxEntry.status == "pending",
                                  OutboxEntry.next_attempt_at <= self.app.now()), len(entry_ids))

    def _claim_where(self, conditions, limit: int) -> list[tuple[int, tuple]]:
        """Each attempt counted and committed before any of them is made: one
        SELECT and one executemany UPDATE, whatever the number."""
        now = self.app.now()
        with self.app.transaction() as repo:
            rows = repo.db.execute(
                select(OutboxEntry.id, OutboxEntry.kind, OutboxEntry.recipients,
                       OutboxEntry.payload_enc, OutboxEntry.attempts)
                .where(*conditions).order_by(OutboxEntry.id).limit(limit).with_for_update()
            ).all()
            if rows:
                repo.db.execute(update(OutboxEntry), [
                    {"id": r.id, "attempts": r.attempts + 1, "next_attempt_at": now + self.backoff(r.attempts + 1)}
                    for r in rows])
            return [(r.id, (r.kind, r.recipients,
                            repo.cipher.decrypt_json(r.payload_enc, context="outbox.payload"), r.attempts + 1))
                    for r in rows]

    def _mark_done(self, entry_ids: list[int]) -> None:
        self._done.extend(entry_ids)
        if self.durable:
            self._flush_done()

    def _flush_done(self) -> None:
        if not self._done:
            return
        now = self.app.now()
        with self.app.connection() as connection:
            metrics.sent(connection, self._done, now)  # receipt latency, calendar writes: counted with the mark
            connection.execute(update(OutboxEntry).where(OutboxEntry.id.in_(self._done))
                               .values(status="done", sent_at=now, last_error=None))
        self._done = []

    def _attempt(self, entry_id: int, kind: str, recipients: str, payload: dict, attempts: int, report) -> None:
        target = _target(payload)
        try:
            reached = self._deliver(kind, recipients, payload)
        except DiskFull as exc:  # not the entry's fault: it waits for space, whatever its attempts
            self.disk.begin(f"disk full: {exc}; outgoing mail waits in the queue until there is space, "
                            "nothing is lost")
            self._retry_later(entry_id, attempts, None, _safe(exc))
            report.retried += 1
            return
        except TransientError as exc:
            self._outage(target, _safe(exc), kind, attempts, exc.retry_after)
            self._again_or_fail(entry_id, attempts, exc.retry_after, _safe(exc), report, kind, target)
            return
        except PermanentError as exc:
            self._fail(entry_id, _safe(exc), report)
            return
        except PartialDelivery as exc:
            self._partial(entry_id, kind, payload, attempts, exc, report)
            return
        except Exception as exc:  # an adapter's unmapped error or a bug: this entry's alone
            # The class only: an unknown exception's text may hold anything.
            log.error("outbox entry raised unexpectedly id=%s kind=%s error=%s", entry_id, kind, type(exc).__name__)
            error = f"{type(exc).__name__} (unexpected)"
            self._outage(target, error, kind, attempts, None)
            self._again_or_fail(entry_id, attempts, None, error, report, kind, target)
            return
        finally:
            self.progress()
        self._mark_done([entry_id])
        self.disk.end("disk space is back: the outbox is being delivered again")
        self.episodes.succeeded(target)
        self._audit_reached(kind, json.dumps(reached) if reached else recipients, payload)
        report.sent += 1

    def _audit_reached(self, kind: str, recipients: str, payload: dict) -> None:
        if payload.get("about") or payload["type"] == "itip":
            self._sent.append((kind, recipients, payload))

    def _partial(self, entry_id: int, kind: str, payload: dict, attempts: int, exc: PartialDelivery,
                 report) -> None:
        """Some recipients have it: never again to them. The 5xx ones are
        split off, failed and reported; the 4xx ones stay, to be retried."""
        if exc.delivered:
            self._audit_reached(kind, json.dumps(list(exc.delivered)), payload)
            report.sent += 1
        error = _safe(exc)
        if exc.permanent:
            self._split_failed(entry_id, exc.permanent, error, report)
            self.episodes.failed("mail", self._where("mail"), error, kind)
        with self.app.transaction() as repo:
            entry = repo.db.get(OutboxEntry, entry_id)
            entry.recipients = json.dumps(list(exc.temporary or exc.delivered))  # done: whom it reached
        if exc.delivered and not exc.permanent:
            self.episodes.succeeded("mail")  # the server works; some mailboxes are busy
        if exc.temporary:
            self._again_or_fail(entry_id, attempts, None, error, report, kind)
        else:
            self._mark_done([entry_id])

    def _split_failed(self, entry_id: int, refused: tuple[str, ...], error: str, report) -> None:
        """A failed copy of the entry for these recipients alone (``outbox --retry`` sends it to them)."""
        with self.app.transaction() as repo:
            entry = repo.db.get(OutboxEntry, entry_id)
            repo.db.add(OutboxEntry(
                dedupe_key=f"{entry.dedupe_key}:refused:{entry.attempts}"[-200:], kind=entry.kind,
                recipients=json.dumps(list(refused)), payload_enc=entry.payload_enc, status="failed",
                attempts=entry.attempts, next_attempt_at=entry.next_attempt_at, last_error=error[:500],
                created_at=entry.created_at, purge_after=entry.purge_after))
            kind = entry.kind
        log.error("outbox entry refused for %d recipients id=%s kind=%s error=%s",
                  len(refused), entry_id, kind, error)
        report.failed += 1

    def _outage(self, target: str, error: str, kind: str, attempts: int, retry_after: float | None) -> None:
        """A retryable failure: the episode's report waits for the mail server's back-off."""
        not_before = self.app.now() + self.backoff(attempts, retry_after) if target == "mail" else None
        self.episodes.failed(target, self._where(target), error, kind, not_before)

    def _where(self, target: str) -> str:
        backend = self.transport if target == "mail" else self.calendar
        return str(getattr(backend, "where", type(backend).__name__))

    def _audit_sent(self) -> None:
        """One audit row per citizen per mail sent with their data (agenda,
        alert, receipt), and one per invitation: to whom, which Message-ID."""
        sent, self._sent = self._sent, []
        if not sent:
            return
        with self.app.transaction() as repo:
            for kind, recipients, payload in sent:
                to = tuple(json.loads(recipients))
                if payload["type"] == "itip":
                    repo.audit("invitation-sent", recipients=to, message_id=payload.get("message_id"))
                    continue
                message_id = message_id_of(payload["message"])
                for subject, series, start in payload["about"]:
                    repo.audit(f"{kind}-sent", subject=subject, series=series, recipients=to,
                               session_start=datetime.fromisoformat(start), message_id=message_id)

    def _again_or_fail(self, entry_id: int, attempts: int, retry_after: float | None, error: str, report,
                       kind: str = "", target: str | None = None) -> None:
        # An outage's report waits out the outage: it is the one mail that says so;
        # the others wait for a server that is down, up to the outage patience.
        if attempts >= self.max_attempts and kind != "report" and not self._patient(target):
            self._fail(entry_id, f"{error.partition(':')[0]} after {attempts} attempts", report)
        else:
            self._retry_later(entry_id, attempts, retry_after, error)
            report.retried += 1

    def _patient(self, target: str | None) -> bool:
        """Whether ``target``'s server has been down for less than the patience."""
        since = self.episodes.since(target) if target else None
        return since is not None and self.app.now() - since < self.patience

    def _deliver(self, kind: str, recipients: str, payload: dict) -> list[str] | None:
        """Send one entry; a mail's recipients actually reached are returned."""
        if payload["type"] == "itip":
            payload = {"type": "mail", "sender": self.app.forum_address,
                       "message": self._invitation(payload, json.loads(recipients))}
        if payload["type"] == "mail":
            to, message = protect(self.app, kind, tuple(json.loads(recipients)),
                                  self._message_now(payload).encode("utf-8", "surrogateescape"), payload)
            self.transport.send(OutgoingMail(sender=payload["sender"], recipients=to, message=message, kind=kind))
            return list(to)
        if self.calendar is None:
            raise PermanentError("no calendar backend is configured")
        meeting = meeting_from_json(payload["meeting"])
        if payload["type"] == "calendar-put":
            self.calendar.put(meeting)
        elif payload["type"] == "calendar-cancel":
            self.calendar.cancel(meeting)
        else:
            raise PermanentError(f"unknown outbox entry type {payload['type']!r}")
        return None

    def _message_now(self, payload: dict) -> str:
        """The message as it goes now: an agenda held back by an outage past
        its deadline goes in its version marked late."""
        late_from = payload.get("late_from")
        if late_from and self.app.now() >= datetime.fromisoformat(late_from):
            return payload["late_message"]
        return payload["message"]

    def _invitation(self, payload: dict, recipients: list[str]) -> str:
        """An iTIP mail rendered now: fresh DTSTAMP, current templates. A
        failure to render is this entry's alone: failed and reported, not
        raised through the run (the error's class only: no personal data)."""
        try:
            return self._render_invitation(payload, recipients)
        except Exception as exc:
            raise PermanentError(f"the invitation could not be rendered ({type(exc).__name__})") from None

    def _render_invitation(self, payload: dict, recipients: list[str]) -> str:
        message = invitation_mail(
            meeting_from_json(payload["meeting"]), payload["method"],
            sender=self.app.forum_address, sender_name=self.app.forum_name, recipients=recipients,
            language=self.app.language, tz=self.app.tz, stamp=self.app.now(),
            message_id=payload.get("message_id"),
        )
        return to_bytes(message).decode("ascii", "surrogateescape")

    def _retry_later(self, entry_id: int, attempts: int, retry_after: float | None, error: str) -> None:
        with self.app.transaction() as repo:
            entry = repo.db.get(OutboxEntry, entry_id)
            entry.next_attempt_at = self.app.now() + self.backoff(attempts, retry_after)
            entry.last_error = error

    def _fail(self, entry_id: int, error: str, report: DispatchReport) -> None:
        with self.app.transaction() as repo:
            entry = repo.db.get(OutboxEntry, entry_id)
            entry.status, entry.last_error = "failed", error[:500]
            log.error("outbox entry failed permanently id=%s kind=%s error=%s", entry_id, entry.kind, error)
            kind = entry.kind
        target = "calendar" if kind == "calendar" else "mail"
        self.episodes.failed(target, self._where(target), error, kind)
        report.failed += 1


def _target(payload: dict) -> str:
    """The server an entry goes to: the mail server or the calendar server."""
    return "calendar" if payload["type"].startswith("calendar-") else "mail"


_MESSAGE_ID = re.compile(r"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def message_id_of(message: str) -> str | None:
    """The Message-ID header of a message as queued (CRLF lines)."""
    found = _MESSAGE_ID.search(message.partition("\r\n\r\n")[0])
    return found.group(1) if found else None


def _safe(exc: Exception) -> str:
    """An error text fit for the database and logs: adapters' messages name
    hosts and codes, never personal data; cut to size all the same."""
    return f"{type(exc).__name__}: {exc}"[:500]


def retry_failed(app, entry_id: int | None = None) -> int:
    """Put failed entries (one, or all) back in the queue; returns how many."""
    with app.transaction() as repo:
        query = select(OutboxEntry).where(OutboxEntry.status == "failed")
        if entry_id is not None:
            query = query.where(OutboxEntry.id == entry_id)
        entries = repo.db.scalars(query).all()
        for entry in entries:
            entry.status, entry.attempts, entry.next_attempt_at = "pending", 0, app.now()
        return len(entries)


def next_due(app) -> datetime | None:
    with app.transaction() as repo:
        return repo.db.scalar(
            select(OutboxEntry.next_attempt_at)
            .where(OutboxEntry.status == "pending")
            .order_by(OutboxEntry.next_attempt_at)
            .limit(1)
        )
