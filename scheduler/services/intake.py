"""Taking in agenda items by mail: decide, store, answer.

A fetched batch is one transaction: each mail's decision, stored item,
receipt and alert stand or fall together (a mail that fails is rolled back
alone, see ``_decide_batch``), and only after the commit are the mails moved
out of the inbox (``MailSource.settle``).
A crash in between makes the source hand the mails out again; their
Message-IDs are then recognised as already processed, and each goes to the
folder of its first decision (``_duplicate``).
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scheduler.mail.parallel import ParallelParser
from scheduler.mail.parse import MailKind, ParsedMail, parse_mail
from scheduler.mail.requests import parse_request
from scheduler.planning.allocation import Refusal, Request, allocate
from scheduler.planning.items import ItemContent, Rejection, check_item, check_withdrawal
from scheduler.ports import Disposition, IncomingMail, MailSource
from scheduler.reasons import reason
from scheduler.services import meetings
from scheduler.services.allowlist import Allowlist
from scheduler.services.context import App
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
# A mail whose decision raised this many times is quarantined, not retried.
POISON_AFTER = 3


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
        self._failures: Counter[str] = Counter()  # refs that raised, for POISON_AFTER
        self._parser = ParallelParser(app.config.intake.max_bytes, app.config.intake.parse_workers)

    def start(self) -> None:
        """Start the parse worker ahead of the first large batch (``sparring
        run`` does at start-up, as does ``ingest`` from a mailbox)."""
        self._parser.start()

    def close(self) -> None:
        """Stop the parse worker, if one was started."""
        self._parser.close()

    def process(self, mail: IncomingMail) -> Outcome:
        """One mail in its own transaction (``ingest --eml``, ``simulate``)."""
        with self.app.transaction() as repo:
            return self._decide_one(repo, mail)

    def run(self, source: MailSource, limit: int = 500) -> list[Outcome]:
        """Fetch what waits, decide the batch in one transaction, then move the mails in one go.

        A mail that fails is rolled back alone and stays in the source; the
        others are committed and settled, and then the error is raised.
        """
        mails = source.fetch(limit)
        outcomes, moves, failure = self._decide_batch(mails) if mails else ([], {}, None)
        self._quarantine_poison(mails, moves)
        if moves:
            source.settle(moves)
            self.app.set_meta("last_intake", self.app.now().isoformat())
        if failure is not None:
            raise failure
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
        failure: Exception | None = None
        handlers, changes = self.app.change_handlers, _Changes()
        self.app.change_handlers = [changes.note]
        try:
            with self.app.transaction() as repo:
                repo.after_commit.append(lambda: committed.append(True))  # runs first
                repo.begin_batch()
                if not guarded:
                    repo.defer_writes()
                remaining = iter(mails)
                for chunk in chunks:
                    repo.add_seen(p.message_id for p in chunk if isinstance(p, ParsedMail))
                    for parsed_mail in chunk:
                        mail = next(remaining)
                        outcome = self._decide_in_batch(repo, mail, parsed_mail, guarded, changes)
                        if isinstance(outcome, Exception):
                            failure = failure or outcome
                            continue
                        outcomes.append(outcome)
                        moves.setdefault(outcome.disposition, []).append(mail.ref)
                self.app.change_handlers = handlers
                changes.replay(handlers, repo)
        finally:
            self.app.change_handlers = handlers
        return outcomes, moves, failure

    def _decide_in_batch(self, repo: Repository, mail: IncomingMail, parsed, guarded: bool,
                         changes: _Changes) -> Outcome | Exception:
        """One mail of a batch. Unguarded, a failure is raised (the batch is
        then decided again, guarded); guarded, it rolls back this mail alone
        (its savepoint), which stays in the source, and is returned."""
        callbacks = len(repo.after_commit)
        try:
            with repo.db.begin_nested() if guarded else nullcontext():
                outcome = self._decide_one(repo, mail, parsed)
        except Exception as exc:
            if not guarded or db.connection_lost(exc) or db.disk_full(exc):
                raise  # the database's or the disk's fault, not this mail's: never counted towards poison
            log.error("intake: mail left in the source after an error ref=%s error=%s",
                      mail.ref, type(exc).__name__)
            repo.forget_batch_cache()
            del repo.after_commit[callbacks:]  # nothing of a rolled-back mail runs
            changes.discard()
            self._failures[mail.ref] += 1
            return exc
        changes.keep()
        return outcome

    def _quarantine_poison(self, mails: list[IncomingMail], moves: dict) -> None:
        """A mail that failed ``POISON_AFTER`` times goes to quarantine for a
        person to look at, instead of failing every round for ever."""
        for mail in mails:
            if self._failures.get(mail.ref, 0) >= POISON_AFTER:
                log.error("intake: mail quarantined after repeated errors ref=%s", mail.ref)
                moves.setdefault(Disposition.QUARANTINE, []).append(mail.ref)
                del self._failures[mail.ref]

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
        repo.finish_mail(outcome.outcome, outcome.extra.get("code"))
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
                    repo.after_commit.append(lambda: meetings.on_reply(self.app, reply))
                code = refusal or code
            return Outcome(parsed.message_id, "ignored", Disposition.IGNORED, extra={"code": code})
        if not self.allow.permits(parsed.sender):
            return Outcome(parsed.message_id, "quarantined", Disposition.QUARANTINE,
                           reason=self._reason("not_allowed"), extra={"code": "not_allowed"})
        notices = Notices(self.app, repo, parsed, mail.received_at)
        if parsed.kind is MailKind.TOO_LARGE:
            return self._reject(notices, parsed, "too_large", {"limit": self.app.config.intake.max_bytes})
        if parsed.kind is MailKind.WITHDRAW:
            return self._withdraw(repo, notices, parsed, mail)
        if parsed.kind is MailKind.BOOKING_REQUEST:
            return self._request(repo, notices, parsed)
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
        repo.set_outcome("moved" if why else "accepted", None)
        item_id = repo.place_item(result, request, content, parsed, mail.received_at, self.app)
        notices.placed(item_id, result, content)
        if content.acute:
            repo.after_commit.append(lambda: meetings.acute(self.app, item_id))
        return Outcome(parsed.message_id, "moved" if why else "accepted", Disposition.PROCESSED,
                       series=result.session.series_id, session_start=result.session.start,
                       acute=content.acute, reason=self._reason(f"moved_{why}") if why else None,
                       extra={"item_id": item_id})

    def _request(self, repo, notices, parsed) -> Outcome:
        """A meeting request: booked after commit, answered with the result."""
        request = parse_request(parsed, self.allow.permits)
        if isinstance(request, Rejection):
            return self._reject(notices, parsed, request.code, request.params)
        key = repo.message_key(parsed.message_id)
        repo.after_commit.append(
            lambda: meetings.from_mail(self.app, request, parsed.sender, parsed.message_id, key))
        return Outcome(parsed.message_id, "accepted", Disposition.PROCESSED, extra={"code": "request"})

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
        sentence = self._reason(code, **params)
        notices.rejected(sentence)
        return Outcome(parsed.message_id, "rejected", Disposition.REJECTED,
                       reason=sentence, extra={"code": code})

    def _reason(self, code: str, **params) -> str:
        return reason(code, self.app.config.service.language, **params)


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
