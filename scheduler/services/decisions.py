"""The forum's decisions on its items, and what each one sets going (issue 15).

A decision is taken for a slot of a held (or coming) session, by reply to
the agenda or by ``sparring decide``. It is recorded and audited; the
latest one for a slot counts, and a change undoes what the earlier one set
going. What each decision does (seed 003):

* ``opstart`` (start): a case is opened and a koordineringsmøde between the
  referring and the receiving caseworker is booked by free/busy (after the
  commit: booking reads calendars);
* ``udsat`` (postponed): the item goes to the next session of the series,
  keeping its arrival time (see ``planning.allocation.postpone``);
* ``intet grundlag`` (no-basis), ``henvist`` (referred): recorded and told.

The referring caseworker is always told: masked CPR, the decision, the
next step. Nothing here names the citizen in a calendar or a case id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from datetime import date, datetime, timedelta

from scheduler.mail.compose import text_mail
from scheduler.mail.decisions import DecisionLine
from scheduler.model import Session
from scheduler.planning import cases as rules
from scheduler.planning.allocation import Booked, Bump, Placement, Refusal, postpone, slot_order
from scheduler.ports import PermanentError, TransientError
from scheduler.render import render, render_mail
from scheduler.services.allowlist import Allowlist
from scheduler.services.booking import BookingRequest
from scheduler.services.meetings import working_days_ahead
from scheduler.store.repository import ItemView, Repository
from scheduler.store.tables import Item

log = logging.getLogger("sparring.decisions")


class DecisionError(Exception):
    """A decision that cannot be taken: ``code`` for ``reasons``, whole-number params."""

    def __init__(self, code: str, **params: int) -> None:
        super().__init__(code)
        self.code, self.params = code, params


@dataclass(frozen=True)
class Decided:
    """What one decision did; the ``decide --json`` object."""

    series: str
    session_start: datetime
    slot: int
    decision: str
    case: str | None
    notified: tuple[str, ...]
    changed_from: str | None = None

    def as_json(self) -> dict:
        return {"series": self.series, "session_start": self.session_start.isoformat(), "slot": self.slot,
                "decision": self.decision, "case": self.case, "notified": list(self.notified)}


def find_session(app, series_id: str, day: date) -> Session | None:
    """The series' session held (or to be held) on ``day``, or the one the rule put there."""
    sessions = app.planner.sessions(day - timedelta(days=7), day + timedelta(days=7), series_id)
    on_day = [s for s in sessions if s.start.date() == day] or [s for s in sessions if s.rule_date == day]
    return on_day[0] if on_day else None


def agenda_items(repo: Repository, session: Session) -> list[ItemView]:
    """The session's items in the order the agenda numbered them: those still
    in it, and those a decision has since postponed to a later session."""
    items = {i.id: i for i in repo.items_of_session(session.key)}
    latest: dict[int, int | None] = {}
    for decision in repo.decisions_of_session(session.key):
        latest[decision.slot] = decision.item_id if decision.decision == "postponed" else None
    for item_id in latest.values():
        if item_id is not None and item_id not in items:
            items[item_id] = repo.item(item_id)
    order = slot_order(Booked(i.id, "", i.acute, i.received_at, "", date.min) for i in items.values())
    return [items[b.item_id] for b in order]


class Decisions:
    """The use case: one decision in, recorded, its effects queued."""

    def __init__(self, app, repo: Repository) -> None:
        self.app, self.repo = app, repo
        self.allow = Allowlist(app.config.intake.allow)
        self.receiving = {s.id: s.receiving for s in app.config.series}

    def decide(self, session: Session, line: DecisionLine, by: str, message_id: str | None = None) -> Decided:
        """Record ``line`` for ``session``; DecisionError when it cannot be taken."""
        items = agenda_items(self.repo, session)
        if not 1 <= line.slot <= len(items):
            raise DecisionError("slot_empty", count=len(items))
        item = items[line.slot - 1]
        receiver = self._receiver(session, line)
        previous = self.repo.latest_decision(session.key, line.slot)
        same = previous is not None and (previous.decision, previous.receiver) == (line.decision, receiver)
        placement = self._placement(session, item) if line.decision == "postponed" and not same else None
        decision_id = self.repo.record_decision(
            series_id=session.series_id, session_key=session.key, session_start=session.start, slot=line.slot,
            item_id=item.id, cpr_hash=self.app.cipher.lookup_hash(item.cpr.digits, purpose="cpr"),
            decision=line.decision, receiver=receiver, referred_to=line.referred_to, note=line.note,
            decided_by=by, now=self.app.now(), message_id=message_id)
        if same:
            if previous.case_id:
                self.repo.set_decision_case(decision_id, previous.case_id)
            return self._decided(session, line, previous.case_id, (), None)  # the same again: nothing new
        if previous is not None:
            self._undo(previous, item, session, by)
        case_id, next_session = self._apply(session, line, item, receiver, by, placement)
        if case_id:
            self.repo.set_decision_case(decision_id, case_id)
        gave_way = placement is not None and placement.replaced_by is not None
        told = self._tell(decision_id, session, line, item, receiver, case_id, next_session,
                          previous.decision if previous else None, gave_way)
        return self._decided(session, line, case_id, told, previous.decision if previous else None)

    def _decided(self, session, line, case_id, told, changed_from) -> Decided:
        return Decided(session.series_id, session.start, line.slot, line.decision, case_id, tuple(told),
                       changed_from)

    def _receiver(self, session: Session, line: DecisionLine) -> str | None:
        if line.decision != "start":
            return None
        receiver = (line.receiver or self.receiving.get(session.series_id) or "").lower()
        if not receiver:
            raise DecisionError("receiver_missing")
        if not self.allow.permits(receiver):
            raise DecisionError("receiver_not_allowed")
        return receiver

    # -- effects ---------------------------------------------------------

    def _apply(self, session, line, item, receiver, by, placement) -> tuple[str | None, Session | None]:
        if placement is not None:
            return None, self._postpone(item, placement)
        if line.decision != "start":
            return None, None
        case = self.repo.open_case(series_id=session.series_id, session_start=session.start, slot=line.slot,
                                   cpr_digits=item.cpr.digits, referrer=item.sender, receiver=receiver,
                                   coordinators=self.app.series[session.series_id].coordinators,
                                   now=self.app.now(), actor=by)
        self.repo.after_commit.append(partial(book_coordination, self.app, case.id))
        return case.id, None

    def _placement(self, held: Session, item: ItemView) -> Placement:
        """Where ``udsat`` takes the item (nothing written yet)."""
        sessions = self.app.sessions_from(max(held.start, self.app.now()))
        mine = Booked(item.id, item.session_key, item.acute, item.received_at,
                      self.app.cipher.lookup_hash(item.cpr.digits, purpose="cpr"), item.cpr.birth_date)
        placement = postpone(mine, held, sessions, self.app.series, self.repo.booked(sessions))
        if isinstance(placement, Refusal):
            raise DecisionError("no_session")
        return placement

    def _postpone(self, item: ItemView, placement: Placement) -> Session:
        """The item to the next session of the series; who it displaces moves on."""
        now, to = self.app.now(), placement.session
        if placement.replaced_by is not None:  # the citizen is on that agenda already, with newer text
            self.repo.mark_replaced(item.id, now, item.session_key)
            return to
        if placement.bumped is not None:
            self.repo.move_item(placement.bumped, now)
            self._tell_bumped(placement.bumped)
        self.repo.move_item(Bump(item.id, item.session_key, to), now)
        keys = {to.key} | ({placement.bumped.to.key} if placement.bumped else set())
        self._changed(keys, [placement.replaces] if placement.replaces else [])
        return to

    def _undo(self, previous, item: ItemView, session: Session, by: str) -> None:
        """A corrected decision: take back what the earlier one set going."""
        if previous.decision == "postponed" and item.session_key != session.key and item.status == "pending":
            row = self.repo.db.get(Item, item.id)
            self.app.calendar_sync.cancel_sent(self.repo, self.app.calendar_sync.slot_uid(item.id, row.event_uid))
            self.repo.move_item(Bump(item.id, item.session_key, session), self.app.now())
            self._changed({item.session_key}, [])
        elif previous.decision == "postponed" and item.status == "replaced" and item.session_key == session.key:
            self.repo.restore_item(item.id, self.app.now())  # it had given way to a newer item only for udsat
        if previous.decision == "start" and previous.case_id:
            self._close_case(previous.case_id, by)

    def _close_case(self, case_id: str, by: str) -> None:
        case = self.repo.case(case_id)
        if case is None or not case.state.open:
            return
        for meeting in self.repo.case_meetings(case_id):
            if meeting.status == "booked" and meeting.uid and meeting.end and meeting.end > self.app.now():
                self.app.calendar_sync.cancel_sent(self.repo, meeting.uid)
                self.repo.cancel_booking(meeting.uid, self.app.now())
                self.repo.set_case_meeting(meeting.uid, status="cancelled", now=self.app.now())
        self.repo.advance_case(case_id, rules.Closed(by), self.app.now(), by)

    def _changed(self, session_keys: set[str], item_ids: list[int]) -> None:
        """Slots in coming sessions follow (a held session's are left as they were)."""
        now = self.app.now()
        keys = {k for k in session_keys if self.app.session_by_key(k).start > now}
        for handler in getattr(self.app, "change_handlers", []):
            handler(self.repo, keys, item_ids)

    # -- telling ---------------------------------------------------------

    def _tell(self, decision_id: int, session, line, item, receiver, case_id, next_session,
              changed_from, gave_way: bool = False) -> list[str]:
        to = _unique([item.sender, receiver] if receiver else [item.sender])
        series = self.app.series[session.series_id]
        self._mail("decision_told.txt.j2", to, f"decision:{decision_id}", [item.id], decision=line.decision,
                   changed_from=changed_from, cpr=item.cpr.masked, series_name=series.name,
                   session_start=session.start, slot=line.slot, note=line.note, referred_to=line.referred_to,
                   receiver=receiver, referrer=item.sender, case_id=case_id, next_start=next_session.start
                   if next_session else None, gave_way=gave_way,
                   within_days=self.app.config.followup.coordination_within_days)
        return to

    def _tell_bumped(self, bump: Bump) -> None:
        victim = self.repo.item(bump.item_id)
        series = self.app.series[bump.to.series_id]
        self._mail("decision_bumped.txt.j2", [victim.sender], f"bumped:{victim.id}:{bump.to.key}", [victim.id],
                   cpr=victim.cpr.masked, series_name=series.name,
                   from_start=self.app.session_by_key(bump.from_key).start, start=bump.to.start)

    def _mail(self, template: str, to: list[str], key: str, about: list[int], **context) -> None:
        subject, body = render_mail(template, self.app.language, tz=self.app.tz, forum_name=self.app.forum_name, **context)
        message = text_mail(sender=self.app.forum_address, sender_name=self.app.forum_name, to=to,
                            subject=subject, body=body, sent_at=self.app.now(), language=self.app.language)
        self.repo.enqueue_mail(message, kind="notice", dedupe_key=key, recipients=to, about=about)


def book_coordination(app, case_id: str) -> None:
    """The koordineringsmøde of a new case: the two caseworkers (the
    coordinators optional) at the first common free time within
    ``followup.coordination_within_days`` working days; if there is none,
    the caseworkers are told to find a time themselves."""
    cfg = app.config.followup
    with app.transaction() as repo:
        case = repo.case(case_id)
    if case is None or case.state.stage is not rules.Stage.DECIDED:
        return
    today = app.now().date()
    first = working_days_ahead(app, today, 1)  # not at an hour's notice: from the next working day
    request = BookingRequest(
        kind="coordination", first=first, last=working_days_ahead(app, today, cfg.coordination_within_days),
        duration=timedelta(minutes=cfg.coordination_minutes), required=(case.referrer, case.receiver),
        optional=tuple(a for a in app.series[case.series_id].coordinators
                       if a not in (case.referrer, case.receiver)),
        title=f"{render('booking_title.txt.j2', app.language, kind='coordination').strip()} {case.id}",
        reference=f"case:{case.id}")
    try:
        result = app.booker().book(request)
    except (TransientError, PermanentError) as exc:
        log.warning("coordination booking failed case=%s error=%s", case.id, type(exc).__name__)
        return
    with app.transaction() as repo:
        meeting = result.meeting
        repo.add_case_meeting(case.id, "coordination", start=meeting.start if meeting else None,
                              end=meeting.end if meeting else None, status="booked" if meeting else "no_slot",
                              uid=meeting.uid if meeting else None, now=app.now())
        if meeting is not None:
            repo.advance_case(case.id, rules.CoordinationBooked(), app.now(), "system")
            return
        Decisions(app, repo)._mail("decision_no_slot.txt.j2", [case.referrer, case.receiver],
                                   f"coordination-noslot:{case.id}", [], case_id=case.id, first=request.first,
                                   last=request.last, days=cfg.coordination_within_days)


def book_pending(app) -> list[str]:
    """Cases opened whose koordineringsmøde was never booked (the booking
    after the decision failed, or the service stopped in between): book now.
    No-slot cases are not tried again: their caseworkers were told."""
    with app.transaction() as repo:
        waiting = [c.id for c in repo.cases(open_only=True)
                   if c.state.stage is rules.Stage.DECIDED and not repo.case_meetings(c.id)]
    for case_id in waiting:
        book_coordination(app, case_id)
    return waiting


def _unique(addresses) -> list[str]:
    return list(dict.fromkeys(a.lower() for a in addresses if a))


# -- a coordinator's reply to the agenda -------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What became of a reply with decisions: ``code`` set when nothing was decided."""

    code: str | None
    session: Session | None = None
    decided: tuple[Decided, ...] = ()
    quarantine: bool = False


def by_reply(app, repo: Repository, parsed, notices) -> Reply:
    """Decide every readable line of a coordinator's reply, and answer it:
    what was recorded, and each line that could not be used, with why."""
    from scheduler.mail.decisions import find_reference, read_decisions
    from scheduler.reasons import reason

    series_id, day = find_reference(parsed.subject)
    series = app.series.get(series_id)
    if series is None or parsed.sender.lower() not in series.coordinators:
        return Reply("not_coordinator", quarantine=True)
    session = find_session(app, series_id, day)
    if session is None:
        return Reply("decision_no_session")
    lines, bad = read_decisions(parsed.request_lines)
    problems = [{"number": b.number, "text": b.text, "reason": reason(b.problem, app.language)} for b in bad]
    decided = []
    work = Decisions(app, repo)
    for line in lines:
        try:  # a decision is checked whole before anything is written
            decided.append(work.decide(session, line, parsed.sender, parsed.message_id))
        except DecisionError as exc:
            problems.append({"number": line.number, "text": line.text,
                             "reason": reason(exc.code, app.language, **exc.params)})
    code = None if decided else ("decision_none" if not problems else "decision_unknown")
    notices.decisions_answered(decided=decided, problems=problems,
                               series_name=series.name, session_start=session.start,
                               reason=reason(code, app.language) if code else "")
    return Reply(code, session, tuple(decided))
