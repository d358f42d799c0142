"""Who gets an answer: loops and floods (hostile input, issue 11).

* The forum never answers its own addresses (a mail "from" itself).
* A sender who sent ``intake.rate_limit_per_hour`` mails within the last
  hour has the next ones quarantined without an answer; the first of such
  an episode (no mail of theirs quarantined for it in the hour before)
  tells the sender and the administrator once.
* A sender gets one rejection for the same reason at most once an hour: a
  responder that answers every rejection cannot make a loop of it.

Nothing is stored for this: a sender's last hour is read from the mail
records (sender, arrival, outcome, reason code; indexed by sender and
arrival) and the receipts queued for them (outbox key ``receipt:<message
key>``), once per sender and transaction; the mails decided in the same
transaction are added as they are decided (a batch writes its records at
the commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, literal, select

from scheduler.store.tables import Mail, OutboxEntry

WINDOW = timedelta(hours=1)
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class _Seen:
    at: datetime
    outcome: str
    code: str | None
    answered: bool


class Floodgate:
    def __init__(self, config) -> None:
        self.limit = config.intake.rate_limit_per_hour
        self.own = frozenset(a.lower() for a in (config.service.mailbox, config.exchange.mailbox) if a)
        self._recent: dict[str, list[_Seen]] = {}

    def begin(self) -> None:
        """A new transaction: what an earlier one added in memory is in the database or rolled back."""
        self._recent = {}

    def is_own(self, sender: str) -> bool:
        return sender in self.own

    def over_limit(self, repo, sender: str, at: datetime) -> bool:
        return len(self._window(repo, sender, at)) >= self.limit

    def new_episode(self, repo, sender: str, at: datetime) -> bool:
        """No mail of ``sender`` was quarantined for the rate in the hour before ``at``."""
        return not any(s.code == RATE_LIMITED for s in self._window(repo, sender, at))

    def answered_before(self, repo, sender: str, code: str, at: datetime) -> bool:
        """``sender`` was answered with the rejection ``code`` in the hour before ``at``."""
        return any(s.outcome == "rejected" and s.code == code and s.answered
                   for s in self._window(repo, sender, at))

    def note(self, repo, sender: str, at: datetime, outcome: str, code: str | None, answered: bool) -> None:
        """A mail of this transaction, once decided."""
        if sender:
            self._history(repo, sender, at).append(_Seen(at, outcome, code, answered))

    def _window(self, repo, sender: str, at: datetime) -> list[_Seen]:
        start = at - WINDOW
        return [s for s in self._history(repo, sender, at) if start < s.at <= at]

    def _history(self, repo, sender: str, at: datetime) -> list[_Seen]:
        seen = self._recent.get(sender)
        if seen is None:
            rows = repo.db.execute(_RECENT, {"sender": sender[:320], "since": at - WINDOW})
            seen = self._recent[sender] = [_Seen(r.received_at, r.outcome, r.reason_code, r.answered)
                                           for r in rows]
        return seen


_RECENT = (
    select(Mail.received_at, Mail.outcome, Mail.reason_code,
           select(OutboxEntry.id).where(OutboxEntry.dedupe_key == literal("receipt:") + Mail.message_key)
           .exists().label("answered"))
    .where(Mail.sender == bindparam("sender"), Mail.received_at > bindparam("since"))
)
