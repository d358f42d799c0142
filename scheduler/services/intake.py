"""Taking in agenda items by mail: decide, store, answer.

A fetched batch is one transaction: each mail's decision, stored item,
receipt and alert stand or fall together (a mail that fails is rolled back
alone, see ``_decide_batch``), and only after the commit are the mails moved
out of the inbox (``MailSource.settle``).
A crash in between makes the source hand the mails out again; their
Message-IDs are then recognised as already processed, and each goes to the
folder of its first decision (``_duplicate``).

A mail whose decision raises (a bug, or input nobody foresaw) is rolled
back alone and quarantined at once, and the administrator is told once
(``_failed``): it is never tried again in a loop, and the rest of the
batch goes on. Who is answered at all is ``Floodgate``'s to say (own
addresses, floods, repeated rejections).
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from scheduler.faults import describe, error_ref
from scheduler.mail.casemail import parse_case_mail
from scheduler.mail.extra import find_reference as extra_reference
from scheduler.mail.extra import read_answer
from scheduler.mail.parallel import ParallelParser
from scheduler.mail.parse import MAX_HEADER, MailKind, ParsedMail, parse_mail
from scheduler.mail.requests import parse_request
from scheduler.planning.allocation import Refusal, Request, allocate
from scheduler.planning.items import ItemContent, Rejection, check_item, check_withdrawal
from scheduler.ports import Disposition, IncomingMail, MailSource
from scheduler.reasons import reason
from scheduler.services import backlog, casework, decisions, meetings
from scheduler.services.alerts import queue_admin_alert
from scheduler.services.allowlist import Allowlist
from scheduler.services.context import App
from scheduler.services.floodgate import RATE_LIMITED, Floodgate
from scheduler.services.notices import Notices
from scheduler.services.protection import screen
from scheduler.store import db
from scheduler.store.repository import Repository

log = logging.getLogger("sparring.intake")

_AUTOMATIC = {
    MailKind.AUTO_REPLY: "auto_reply",
    MailKind.BOUNCE: "bounce",
    MailKind.READ_RECEIPT: "read_receipt",
    MailKind.CALENDAR_REPLY: "calendar_reply",
}
_REFUSALS = {"under_age": "under_15", "no_session": "no_session"}
_FOLDER_OF = {  # a stored outcome's folder, for a mail handed out again
    "accepted": Disposition.PROCESSED, "moved": Disposition.PROCESSED, "withdrawn": Disposition.PROCESSED,
    "rejected": Disposition.REJECTED, "quarantined": Disposition.QUARANTINE,
}


@dataclass(frozen=True)
class Outcome:
    """What became of one mail; the ``ingest --json`` line."""

    message_id: str
    outcome: str
    disposition: Disposition
    series: str | None = None
    session_start: datetime | None = None
    acute: bool = False
    reason: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def as_json(self) -> dict:
        return {
            "message_id": self.message_id,
            "outcome": self.outcome,
            "series": self.series,
            "session_start": self.session_start.isoformat() if self.session_start else None,
            "acute": self.acute,
            "reason": self.reason,
        }


class Intake:
    """The use case: one incoming mail in, one committed decision out."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.allow = Allowlist(app.config.intake.allow)
        self.gate = Floodgate(app.config)
        self._parser = ParallelParser(app.config.intake.max_bytes, app.config.intake.parse_workers)

    def start(self) -> None:
        """Start the parse worker ahead of the first large batch (``sparring
        run`` does at start-up, as does ``ingest`` from a mailbox)."""
        self._parser.start()

    def close(self) -> None:
        """Stop the parse worker, if one was started."""
        self._parser.close()

    def process(self, mail: IncomingMail) -> Outcome:
        """One mail in its own transaction (``ingest --eml``); one that raises
        is rolled back and quarantined, in a transaction of its own."""
        try:
            with self.app.transaction() as repo:
                self.gate.begin()
                return self._decide_one(repo, mail)
        except Exception as exc:
            with self.app.transaction() as repo:
                return self._failed(repo, mail, None, exc)

    def run(self, source: MailSource, limit: int = 500) -> list[Outcome]:
        """Fetch what waits, decide the batch in one transaction, then move the mails in one go.

        A mail that fails is rolled back alone and quarantined; the others
        are committed, and all are settled.
        """
        mails = source.fetch(limit)
        outcomes, moves = self._decide_batch(mails) if mails else ([], {})
        if moves:
            source.settle(moves)
            self.app.set_meta("last_intake", self.app.now().isoformat())
        return outcomes

    def _decide_batch(self, mails: list[IncomingMail]):
        """Decide ``mails`` in one transaction (one commit).

        The batch is first decided straight through, a chunk at a time as
        the parser (on a second core, see ``ParallelParser``) hands them
        over. Should any mail fail, that attempt is rolled back whole and
        the batch decided again with a SAVEPOINT per mail, so the failing
        mail is rolled back alone and the others are kept: the savepoints'
        cost is paid only when needed.
        """
        chunks = self._chunks(mails)
        parsed: list = []

        def kept():
            for chunk in chunks:
                parsed.extend(chunk)
                yield chunk

        committed: list[bool] = []
        try:
            return self._decide_all(mails, kept(), guarded=False, committed=committed)
        except Exception as exc:
            if committed or db.connection_lost(exc) or db.disk_full(exc):
                raise  # an after-commit callback failed, or the database: nothing to decide again now
            parsed.extend(p for chunk in chunks for p in chunk)  # what the first pass did not reach
            return self._decide_all(mails, [parsed], guarded=True, committed=committed)

    def _chunks(self, mails: list[IncomingMail]):
        """Parses in order, a chunk at a time. ``parse_mail`` is looked up
        here, at call time, so that a test can stand in for it; a batch
        parsed by the worker always uses the real one."""
        if self._parser.takes(len(mails)):
            return self._parser.chunks([mail.raw for mail in mails])
        return iter([[self._parse(mail) for mail in mails]])

    def _decide_all(self, mails: list[IncomingMail], chunks, *, guarded: bool, committed: list):
        """Calendar changes are collected and synced once, at the end of the
        batch: the sync computes the desired state of whole sessions, so once
        is enough, and it is committed together with the decisions."""
        outcomes: list[Outcome] = []
        moves: dict[Disposition, list[str]] = {}
        handlers, changes = self.app.change_handlers, _Changes()
        self.app.change_handlers = [changes.note]
        try:
            with self.app.transaction() as repo:
                repo.after_commit.append(lambda: committed.append(True))  # runs first
                repo.begin_batch()
                self.gate.begin()
                if not guarded:
                    repo.defer_writes()
                remaining = iter(mails)
                for chunk in chunks:
                    repo.add_seen(p.message_id for p in chunk if isinstance(p, ParsedMail))
                    for parsed_mail in chunk:
                        mail = next(remaining)
                        outcome = self._decide_in_batch(repo, mail, parsed_mail, guarded, changes)
                        outcomes.append(outcome)
                        moves.setdefault(outcome.disposition, []).append(mail.ref)
                self._finish_batch(repo, changes, handlers, guarded)
        finally:
            self.app.change_handlers = handlers
        return outcomes, moves

    def _finish_batch(self, repo: Repository, changes: _Changes, handlers, guarded: bool) -> None:
        """Receipts from the batch's final slots, then its calendar sync.
        Guarded (the batch failed once already), a step that raises is rolled
        back alone and reported: the decisions stand and the mails are filed,
        so one failing step cannot keep a batch in the inbox for ever."""
        if not guarded:
            Notices.run_decided(repo)
            changes.keep()
            self.app.change_handlers = handlers
            changes.replay(handlers, repo)
            return
        tasks, repo.before_commit[:] = list(repo.before_commit), []
        for task in tasks:
            self._isolated(repo, "receipt", task)
        changes.keep()
        self.app.change_handlers = handlers
        self._isolated(repo, "calendar-sync", lambda: changes.replay(handlers, repo))

    def _isolated(self, repo: Repository, step: str, action) -> None:
        try:
            with repo.db.begin_nested():
                action()
        except Exception as exc:
            repo.forget_batch_cache()
            log.error("intake: a batch step failed and was left out step=%s error=%s", step, describe(exc))
            now = self.app.now()
            try:
                with repo.db.begin_nested():
                    queue_admin_alert(self.app, repo, "alert_task_failed.txt.j2",
                                      f"task-failed:intake-{step}:{type(exc).__name__}:{now:%Y-%m-%dT%H}",
                                      task=f"intake {step}", error=type(exc).__name__, ref=error_ref(exc), at=now)
            except Exception as second:
                log.error("intake: the administrator could not be told error=%s", describe(second))

    def _decide_in_batch(self, repo: Repository, mail: IncomingMail, parsed, guarded: bool,
                         changes: _Changes) -> Outcome:
        """One mail of a batch. Unguarded, a failure is raised (the batch is
        then decided again, guarded); guarded, it rolls back this mail alone
        (its savepoint), which is quarantined."""
        callbacks, decided = len(repo.after_commit), len(repo.before_commit)
        try:
            with repo.db.begin_nested() if guarded else nullcontext():
                outcome = self._decide_one(repo, mail, parsed)
        except Exception as exc:
            if not guarded or db.connection_lost(exc) or db.disk_full(exc):
                raise  # the database's or the disk's fault, not this mail's: never quarantined for it
            repo.forget_batch_cache()
            del repo.after_commit[callbacks:]  # nothing of a rolled-back mail runs
            del repo.before_commit[decided:]
            changes.discard()
            return self._failed(repo, mail, parsed, exc)
        changes.keep()
        return outcome

    def _failed(self, repo: Repository, mail: IncomingMail, parsed, exc: Exception) -> Outcome:
        """A mail whose decision raised and was rolled back: quarantined at
        once, the administrator told once (the error's class and place, the
        arrival time: nothing of the mail). Not recorded as seen, so that it
        is decided anew when a person puts it back in the inbox."""
        log.error("intake: mail quarantined after an error ref=%s error=%s", mail.ref, describe(exc))
        message_id = parsed.message_id if isinstance(parsed, ParsedMail) else _message_id(mail)
        try:
            with repo.db.begin_nested():
                queue_admin_alert(self.app, repo, "alert_failed.txt.j2", f"failed:{repo.message_key(message_id)}",
                                  error=type(exc).__name__, ref=error_ref(exc), received_at=mail.received_at)
        except Exception as second:
            log.error("intake: the administrator could not be told error=%s", describe(second))
        return Outcome(message_id, "quarantined", Disposition.QUARANTINE,
                       reason=self._reason("failed"), extra={"code": "failed"})

    def _parse(self, mail: IncomingMail) -> ParsedMail | Exception:
        """Parsed ahead of the batch's transaction; a failure is that mail's alone."""
        try:
            return parse_mail(mail.raw, max_bytes=self.app.config.intake.max_bytes)
        except Exception as exc:
            return exc

    def _decide_one(self, repo: Repository, mail: IncomingMail,
                    parsed: ParsedMail | Exception | None = None) -> Outcome:
        """One mail's decision inside the caller's transaction."""
        if isinstance(parsed, Exception):
            raise parsed
        parsed = parsed or parse_mail(mail.raw, max_bytes=self.app.config.intake.max_bytes)
        earlier = repo.earlier(parsed.message_id)
        if earlier is not None:
            return self._duplicate(parsed, mail, *earlier)
        repo.begin_mail(parsed, mail, self.app.now())
        outcome = self._decide(repo, parsed, mail)
        code = outcome.extra.get("code")
        repo.finish_mail(outcome.outcome, code)
        self.gate.note(repo, parsed.sender, mail.received_at, outcome.outcome, code,
                       outcome.extra.get("answered", False))
        return outcome

    def _duplicate(self, parsed: ParsedMail, mail: IncomingMail, ref: str, outcome: str) -> Outcome:
        """A Message-ID taken in before. The very same mail (its move lost
        with a crash after the commit) goes to the folder of its decision;
        another copy is ignored."""
        same = ref == mail.ref[:200]
        return Outcome(parsed.message_id, "duplicate",
                       _FOLDER_OF.get(outcome, Disposition.IGNORED) if same else Disposition.IGNORED)

    # -- decisions -------------------------------------------------------

    def _decide(self, repo: Repository, parsed: ParsedMail, mail: IncomingMail) -> Outcome:
        screened = screen(self.app, repo, parsed, mail.raw)  # authenticity, S/MIME
        if screened.code:
            return Outcome(parsed.message_id, "quarantined", Disposition.QUARANTINE,
                           reason=self._reason(screened.code), extra={"code": screened.code})
        parsed = screened.parsed
        if parsed.kind in _AUTOMATIC:
            code = _AUTOMATIC[parsed.kind]
            reply = parsed.calendar_reply
            if parsed.kind is MailKind.CALENDAR_REPLY and reply:
                refusal = meetings.reply_refusal(repo, reply, parsed.sender, self.allow)
                if refusal is None:
                    repo.after_commit.append(partial(meetings.on_reply, self.app, reply))
                code = refusal or code
            return Outcome(parsed.message_id, "ignored", Disposition.IGNORED, extra={"code": code})
        if self.gate.is_own(parsed.sender):  # never answer ourselves: a loop
            return Outcome(parsed.message_id, "ignored", Disposition.IGNORED, extra={"code": "own_address"})
        if not self.allow.permits(parsed.sender):
            return Outcome(parsed.message_id, "quarantined", Disposition.QUARANTINE,
                           reason=self._reason("not_allowed"), extra={"code": "not_allowed"})
        notices = Notices(self.app, repo, parsed, mail.received_at)
        if self.gate.over_limit(repo, parsed.sender, mail.received_at):
            return self._flooded(repo, notices, parsed, mail)
        if parsed.kind is MailKind.TOO_LARGE:
            return self._reject(notices, parsed, "too_large", {"limit": self.app.config.intake.max_bytes})
        if parsed.kind is MailKind.HEADER_TOO_LONG:
            return self._reject(notices, parsed, "header_too_long", {"max": MAX_HEADER})
        if parsed.kind is MailKind.WITHDRAW:
            return self._withdraw(repo, notices, parsed, mail)
        if parsed.kind is MailKind.CASE_MAIL:
            return self._case_mail(repo, notices, parsed, mail)
        if parsed.kind is MailKind.BOOKING_REQUEST:
            return self._request(repo, notices, parsed)
        if parsed.kind is MailKind.DECISION:
            return self._decisions(repo, notices, parsed)
        if parsed.kind is MailKind.EXTRA_REPLY:
            return self._extra_session(repo, notices, parsed)
        content = check_item(parsed, mail.received_at.date(), self.app.config.intake.max_lines)
        if isinstance(content, Rejection):
            return self._reject(notices, parsed, content.code, content.params)
        return self._place(repo, notices, parsed, mail, content)

    def _place(self, repo, notices, parsed, mail, content: ItemContent) -> Outcome:
        cpr_hash = self.app.cipher.lookup_hash(content.cpr.digits, purpose="cpr")
        request = Request(cpr_hash, content.cpr.birth_date, mail.received_at, content.acute)
        sessions = self.app.sessions_from(mail.received_at)
        booked = repo.booked(sessions)
        result = allocate(request, sessions, self.app.series, booked)
        if isinstance(result, Refusal):
            return self._reject(notices, parsed, _REFUSALS[result.code], {})
        why = result.why_moved(mail.received_at)
        code = f"moved_{why}" if why else None  # kept on the mail: the statistics count it
        repo.set_outcome("moved" if why else "accepted", code)
        item_id = repo.place_item(result, request, content, parsed, mail.received_at, self.app)
        notices.placed(item_id, result, content)
        if content.acute:
            repo.after_commit.append(partial(meetings.acute, self.app, item_id))
        return Outcome(parsed.message_id, "moved" if why else "accepted", Disposition.PROCESSED,
                       series=result.session.series_id, session_start=result.session.start,
                       acute=content.acute, reason=self._reason(code) if code else None,
                       extra={"item_id": item_id, "code": code})

    def _request(self, repo, notices, parsed) -> Outcome:
        """A meeting request: booked after commit, answered with the result."""
        request = parse_request(parsed, self.allow.permits, notices.received_at.date(),
                                self.app.config.booking.max_externals)
        if isinstance(request, Rejection):
            return self._reject(notices, parsed, request.code, request.params)
        key = repo.message_key(parsed.message_id)
        repo.after_commit.append(
            partial(meetings.from_mail, self.app, request, parsed.sender, parsed.message_id, key))
        return Outcome(parsed.message_id, "accepted", Disposition.PROCESSED, extra={"code": "request"})

    def _case_mail(self, repo, notices, parsed, mail) -> Outcome:
        """``Enighed`` or ``Opfølgning`` about a case: checked now, booked after commit."""
        found = parse_case_mail(parsed.subject, parsed.request_lines)
        if isinstance(found, Rejection):
            return self._reject(notices, parsed, found.code, found.params)
        code = casework.refusal(repo, found.action, found.case, parsed.sender, found.dates,
                                mail.received_at.astimezone(self.app.tz).date())
        if code:
            return self._reject(notices, parsed, code, {})
        if found.action == "agree":
            repo.after_commit.append(partial(casework.agree, self.app, found.case, parsed.sender))
        else:
            repo.after_commit.append(partial(casework.followups, self.app, found.case, found.dates, parsed.sender))
        return Outcome(parsed.message_id, "accepted", Disposition.PROCESSED, extra={"code": found.action})

    def _decisions(self, repo, notices, parsed) -> Outcome:
        """A coordinator's reply to the agenda: decisions on its slots."""
        reply = decisions.by_reply(self.app, repo, parsed, notices)
        if reply.quarantine:
            return Outcome(parsed.message_id, "quarantined", Disposition.QUARANTINE,
                           reason=self._reason(reply.code), extra={"code": reply.code})
        start = reply.session.start if reply.session else None
        series = reply.session.series_id if reply.session else None
        if reply.code:
            return Outcome(parsed.message_id, "rejected", Disposition.REJECTED, series=series, session_start=start,
                           reason=self._reason(reply.code), extra={"code": reply.code})
        return Outcome(parsed.message_id, "accepted", Disposition.PROCESSED, series=series, session_start=start,
                       extra={"code": "decision"})

    def _extra_session(self, repo, notices, parsed) -> Outcome:
        """A coordinator's answer to a backlog warning: taken up after commit
        (free/busy is read then); anyone else's is quarantined."""
        series = self.app.series.get(extra_reference(parsed.subject) or "")
        if series is None or parsed.sender.lower() not in series.coordinators:
            return Outcome(parsed.message_id, "quarantined", Disposition.QUARANTINE,
                           reason=self._reason("extra_not_coordinator"), extra={"code": "extra_not_coordinator"})
        yes = read_answer(parsed.request_lines)
        if yes is None:
            return self._reject(notices, parsed, "extra_unreadable", {})
        backlog.hold(repo, series.id, yes, parsed.sender.lower(), parsed.message_id)
        repo.after_commit.append(partial(backlog.answer, self.app, series.id, yes, parsed.sender.lower(),
                                         parsed.message_id))
        return Outcome(parsed.message_id, "accepted", Disposition.PROCESSED, series=series.id,
                       extra={"code": "extra_session"})

    def _withdraw(self, repo, notices, parsed, mail) -> Outcome:
        cpr = check_withdrawal(parsed, mail.received_at.date())
        if isinstance(cpr, Rejection):
            return self._reject(notices, parsed, cpr.code, cpr.params)
        cpr_hash = self.app.cipher.lookup_hash(cpr.digits, purpose="cpr")
        withdrawn = repo.withdraw(cpr_hash, parsed.sender, mail.received_at)
        if not withdrawn:
            return self._reject(notices, parsed, "nothing_to_withdraw", {})
        notices.withdrawn(withdrawn, cpr)
        first = withdrawn[0]
        return Outcome(parsed.message_id, "withdrawn", Disposition.PROCESSED,
                       series=first.series_id, session_start=first.session_start.astimezone(self.app.tz))

    def _reject(self, notices, parsed, code: str, params: dict) -> Outcome:
        """Rejected with a receipt, unless the sender had this very rejection
        within the hour (a responder answering each receipt makes no loop)."""
        sentence = self._reason(code, **params)
        answered = not self.gate.answered_before(notices.repo, parsed.sender, code, notices.received_at)
        if answered:
            notices.rejected(sentence)
        return Outcome(parsed.message_id, "rejected", Disposition.REJECTED,
                       reason=sentence, extra={"code": code, "answered": answered})

    def _flooded(self, repo, notices, parsed, mail) -> Outcome:
        """Over the sender's hourly limit: quarantined unanswered; the first of
        an episode tells the sender and the administrator."""
        limit = self.gate.limit
        sentence = self._reason(RATE_LIMITED, max=limit)
        if self.gate.new_episode(repo, parsed.sender, mail.received_at):
            log.warning("intake: sender over the hourly limit, quarantining limit=%d", limit)
            notices.rate_limited(sentence, limit)
        return Outcome(parsed.message_id, "quarantined", Disposition.QUARANTINE,
                       reason=sentence, extra={"code": RATE_LIMITED})

    def _reason(self, code: str, **params) -> str:
        return reason(code, self.app.config.service.language, **params)


def _message_id(mail: IncomingMail) -> str:
    """The Message-ID of a mail whose parse is not at hand (``parse_mail`` never
    raises, but this runs when something did)."""
    try:
        return parse_mail(mail.raw).message_id
    except Exception:
        return "sha256:" + hashlib.sha256(mail.raw).hexdigest()


class _Changes:
    """Change notices (sessions, items) of a batch, replayed once at its end."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.items: set[int] = set()
        self._pending: list[tuple[set[str], list[int]]] = []

    def note(self, repo: Repository, session_keys, item_ids) -> None:
        self._pending.append((set(session_keys), list(item_ids)))

    def keep(self) -> None:
        for sessions, items in self._pending:
            self.sessions |= sessions
            self.items.update(items)
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()

    def replay(self, handlers, repo: Repository) -> None:
        if self.sessions or self.items:
            for handler in handlers:
                handler(repo, set(self.sessions), sorted(self.items))


def retention_end(session_start: datetime, days: int) -> datetime:
    return session_start + timedelta(days=days)
