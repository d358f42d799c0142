"""Cases, decisions and case meetings in the store (issue 15).

A mixin of ``Repository``: the same transaction, cipher and audit trail.
A case's stage and holder change only through ``planning.cases.advance``,
so the store never holds a state the rules do not know.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from scheduler.planning import cases as rules
from scheduler.cpr import Cpr, parse_cpr
from scheduler.store.tables import Case, CaseMeeting, Decision

DECISIONS = ("start", "no-basis", "postponed", "referred")


@dataclass(frozen=True)
class CaseView:
    id: str
    series_id: str
    session_start: datetime
    slot: int
    cpr_hash: str
    state: rules.CaseState
    referrer: str
    receiver: str
    parties: tuple[str, ...]
    opened_at: datetime
    agreed_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True)
class DecisionView:
    id: int
    series_id: str
    session_key: str
    session_start: datetime
    slot: int
    item_id: int | None
    decision: str
    receiver: str | None
    referred_to: str | None
    note: str | None
    decided_by: str
    decided_at: datetime
    case_id: str | None


@dataclass(frozen=True)
class CaseMeetingView:
    kind: str
    start: datetime | None
    end: datetime | None
    status: str
    uid: str | None


class CaseRecords:
    """Mixed into ``Repository`` (``self.db``, ``self.cipher``, ``self.audit``)."""

    # -- cases -------------------------------------------------------------

    def open_case(self, *, series_id: str, session_start: datetime, slot: int, cpr_digits: str,
                  referrer: str, receiver: str, coordinators: tuple[str, ...], now: datetime,
                  actor: str) -> CaseView:
        """A new case held by the receiving caseworker; its id drawn at random."""
        state = rules.opened(receiver)
        parties = _unique((referrer, receiver, *coordinators))
        row = Case(
            id=self._new_case_id(), series_id=series_id, session_start=session_start, slot=slot,
            cpr_hash=self.cipher.lookup_hash(cpr_digits, purpose="cpr"),
            cpr_enc=self.cipher.encrypt(cpr_digits, context="cases.cpr"),
            stage=state.stage.value, holder=state.holder, offered_to=None,
            referrer=referrer.lower(), receiver=receiver.lower(), parties=json.dumps(parties),
            opened_at=now, updated_at=now, version=1,
        )
        self.db.add(row)
        self.db.flush()
        self.audit("case-opened", actor=actor, subject=row.cpr_hash, series=series_id,
                   session_start=session_start, recipients=tuple(parties))
        return _case_view(row)

    def _new_case_id(self) -> str:
        while True:  # 2^30 ids: a clash is rare, but never fatal
            candidate = rules.case_id(secrets.token_bytes(4))
            if self.db.get(Case, candidate) is None:
                return candidate

    def case(self, case_id: str) -> CaseView | None:
        row = self.db.get(Case, case_id.strip().upper())
        return _case_view(row) if row else None

    def cases(self, open_only: bool = False) -> list[CaseView]:
        query = select(Case).order_by(Case.opened_at, Case.id)
        if open_only:
            query = query.where(Case.stage != rules.Stage.CLOSED.value)
        return [_case_view(r) for r in self.db.scalars(query)]

    def case_cpr(self, case_id: str) -> Cpr:
        row = self.db.get(Case, case_id)
        return parse_cpr(self.cipher.decrypt(row.cpr_enc, context="cases.cpr"), datetime.max.date())

    def advance_case(self, case_id: str, event, now: datetime, actor: str) -> CaseView:
        """Apply one event of ``planning.cases``; CaseError if not allowed."""
        row = self.db.get(Case, case_id)
        state = rules.advance(_state(row), event)
        row.stage, row.holder, row.offered_to = state.stage.value, state.holder, state.offered_to
        row.updated_at = now
        if isinstance(event, rules.Agreed):
            row.agreed_at = now
        if not state.open and row.closed_at is None:
            row.closed_at = now
            row.purge_after = now + timedelta(days=self._case_retention())
        self.db.flush()
        self.audit(f"case-{state.stage.value}"[:32], actor=actor, subject=row.cpr_hash, series=row.series_id,
                   session_start=row.session_start)
        return _case_view(row)

    def _case_retention(self) -> int:
        return self.app.config.followup.retention_days if self.app else 30

    # -- decisions ---------------------------------------------------------

    def record_decision(self, *, series_id: str, session_key: str, session_start: datetime, slot: int,
                        item_id: int | None, cpr_hash: str | None, decision: str, receiver: str | None,
                        note: str | None, decided_by: str, now: datetime, case_id: str | None = None,
                        message_id: str | None = None, referred_to: str | None = None) -> int:
        """Keep a decision (a correction is a new row: the latest counts) and audit it."""
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        row = Decision(
            series_id=series_id, session_key=session_key, session_start=session_start, slot=slot,
            item_id=item_id, cpr_hash=cpr_hash, decision=decision, receiver=receiver, referred_to=referred_to,
            note_enc=self.cipher.encrypt(note, context="decisions.note") if note else None,
            decided_by=decided_by.lower(), decided_at=now, case_id=case_id,
            purge_after=session_start + timedelta(days=self._retention()),
        )
        self.db.add(row)
        self.db.flush()
        self.audit("decision-recorded", actor=decided_by, subject=cpr_hash, series=series_id,
                   session_start=session_start, message_id=message_id,
                   detail={"slot": slot, "decision": decision})
        return row.id

    def set_decision_case(self, decision_id: int, case_id: str) -> None:
        self.db.get(Decision, decision_id).case_id = case_id

    def latest_decision(self, session_key: str, slot: int) -> DecisionView | None:
        row = self.db.scalars(select(Decision).where(Decision.session_key == session_key, Decision.slot == slot)
                              .order_by(Decision.decided_at.desc(), Decision.id.desc())).first()
        return self._decision_view(row) if row else None

    def decisions_of_case(self, case_id: str) -> list[DecisionView]:
        rows = self.db.scalars(select(Decision).where(Decision.case_id == case_id).order_by(Decision.id))
        return [self._decision_view(r) for r in rows]

    def decisions_of_session(self, session_key: str) -> list[DecisionView]:
        rows = self.db.scalars(select(Decision).where(Decision.session_key == session_key).order_by(Decision.id))
        return [self._decision_view(r) for r in rows]

    def _decision_view(self, row: Decision) -> DecisionView:
        note = self.cipher.decrypt(row.note_enc, context="decisions.note") if row.note_enc else None
        return DecisionView(row.id, row.series_id, row.session_key, row.session_start, row.slot, row.item_id,
                            row.decision, row.receiver, row.referred_to, note, row.decided_by, row.decided_at, row.case_id)

    # -- case meetings -----------------------------------------------------

    def add_case_meeting(self, case_id: str, kind: str, *, start: datetime | None, end: datetime | None,
                         status: str, uid: str | None, now: datetime) -> None:
        self.db.add(CaseMeeting(case_id=case_id, kind=kind, start=start, end=end, status=status, uid=uid,
                                created_at=now, updated_at=now))
        self.db.flush()

    def set_case_meeting(self, uid: str, *, status: str, now: datetime, start: datetime | None = None,
                         end: datetime | None = None) -> bool:
        """Change a case meeting's status (and times, when rebooked); False if unknown."""
        row = self.db.scalar(select(CaseMeeting).where(CaseMeeting.uid == uid))
        if row is None:
            return False
        row.status, row.updated_at = status, now
        if start is not None:
            row.start, row.end = start, end
        return True

    def case_meetings(self, case_id: str) -> list[CaseMeetingView]:
        rows = self.db.scalars(select(CaseMeeting).where(CaseMeeting.case_id == case_id)
                               .order_by(CaseMeeting.start, CaseMeeting.id))
        return [CaseMeetingView(r.kind, r.start, r.end, r.status, r.uid) for r in rows]

    def case_of_meeting(self, uid: str) -> str | None:
        return self.db.scalar(select(CaseMeeting.case_id).where(CaseMeeting.uid == uid))


    # -- retention and erasure ---------------------------------------------

    def purge_decisions(self, now: datetime) -> int:
        """Decisions past their retention that opened no case (a case's go with it)."""
        rows = self.db.execute(select(Decision.cpr_hash, Decision.series_id, Decision.session_start).where(
            Decision.purge_after < now, Decision.case_id.is_(None))).all()
        for row in rows:
            self.audit("decision-purged", subject=row.cpr_hash, series=row.series_id,
                       session_start=row.session_start)
        return self.db.execute(delete(Decision).where(Decision.purge_after < now,
                                                      Decision.case_id.is_(None))).rowcount

    def erase_cases(self, subject: str, now: datetime) -> list[str]:
        """Delete the citizen's cases, their meetings and every decision about
        them (art. 17); the UIDs of meetings not yet over, for the caller to cancel."""
        case_ids = list(self.db.scalars(select(Case.id).where(Case.cpr_hash == subject)))
        uids = list(self.db.scalars(select(CaseMeeting.uid).where(
            CaseMeeting.case_id.in_(case_ids), CaseMeeting.status == "booked", CaseMeeting.uid.is_not(None),
            CaseMeeting.end > now)))
        self.db.execute(delete(CaseMeeting).where(CaseMeeting.case_id.in_(case_ids)))
        self.db.execute(delete(Decision).where((Decision.cpr_hash == subject) | Decision.case_id.in_(case_ids)))
        self.db.execute(delete(Case).where(Case.id.in_(case_ids)))
        return uids


def _state(row: Case) -> rules.CaseState:
    return rules.CaseState(rules.Stage(row.stage), row.holder, row.offered_to)


def _case_view(row: Case) -> CaseView:
    return CaseView(row.id, row.series_id, row.session_start, row.slot, row.cpr_hash, _state(row),
                    row.referrer, row.receiver, tuple(json.loads(row.parties)), row.opened_at,
                    row.agreed_at, row.closed_at)


def _unique(addresses) -> list[str]:
    seen: list[str] = []
    for a in addresses:
        a = a.strip().lower()
        if a and a not in seen:
            seen.append(a)
    return seen
