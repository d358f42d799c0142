"""A case after the koordineringsmøde: agreement, the fællessamtale, the
follow-ups, closing, and what falls due (seed 003, "Borgers plan").

Each step books by free/busy through the ``Booker`` (outside any database
transaction: it talks to the calendars), then records the meeting on the
case, moves the case through ``planning.cases`` and tells every party, in
one transaction. sparring never writes to the citizen: the holder gets the
text of the citizen's invitation to send by Digital Post.

Mails name the citizen by masked CPR in their body only; subjects and
invitations carry the case id, which is random and names no one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from scheduler.mail.compose import text_mail
from scheduler.planning import cases as rules
from scheduler.planning import workdays
from scheduler.ports import PermanentError, TransientError
from scheduler.render import render, render_mail
from scheduler.services.booking import BookingRequest
from scheduler.services.meetings import working_days_ahead

log = logging.getLogger("sparring.casework")

AGREEABLE = frozenset({rules.Stage.DECIDED, rules.Stage.COORDINATION_BOOKED})
PLANNED = frozenset({rules.Stage.AGREED, rules.Stage.JOINT_BOOKED, rules.Stage.FOLLOWING_UP})


@dataclass
class Step:
    """What a step did, for the CLI's answer and the tests."""

    case: str
    booked: list[tuple[datetime, datetime, str]] = field(default_factory=list)  # start, end, uid
    unbooked: list[date] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"case": self.case,
                "booked": [{"start": s.isoformat(), "end": e.isoformat(), "uid": u} for s, e, u in self.booked],
                "unbooked": [d.isoformat() for d in self.unbooked], "notified": self.notified}


def caseworkers(case) -> tuple[str, ...]:
    """The case's caseworkers: the one who brought it, the one who took it,
    and its holder when a hand-over made someone else hold it."""
    return tuple(dict.fromkeys(a for a in (case.referrer, case.receiver, case.state.holder) if a))


def coordinators(case) -> tuple[str, ...]:
    workers = set(caseworkers(case))
    return tuple(a for a in case.parties if a not in workers)


def refusal(repo, action: str, case_id: str, sender: str | None, dates=(), today: date | None = None) -> str | None:
    """Why a case mail (or command) must not count, as a reason code, or None.
    ``sender`` None: a command, by the operator."""
    case = repo.case(case_id)
    if case is None or not case.state.open:
        return "case_unknown"
    if sender is not None and sender.lower() not in caseworkers(case):
        return "case_not_party"
    if action == "agree" and case.state.stage not in AGREEABLE | {rules.Stage.AGREED}:
        return "case_agreed"
    if action == "followup":
        if case.state.stage not in PLANNED:
            return "case_not_agreed"
        if today is not None and any(day < today for day in dates):
            return "followup_past"
    return None


# -- agreement and the fællessamtale --------------------------------------------


def agree(app, case_id: str, by: str) -> Step:
    """``Enighed``: record it and book the fællessamtale for the caseworkers
    (again, when no common time was found the first time)."""
    cfg = app.config.followup
    with app.transaction() as repo:
        case = repo.case(case_id)
        if case.state.stage is not rules.Stage.AGREED:
            case = repo.advance_case(case_id, rules.Agreed(by), app.now(), actor=by)
    # From the next working day: the citizen needs the letter before the meeting.
    today = app.now().date()
    first, last = working_days_ahead(app, today, 1), working_days_ahead(app, today, cfg.joint_within_days)
    found = _book(app, case, "joint", first, last, cfg.joint_minutes)
    step = Step(case.id)
    with app.transaction() as repo:
        if found is None:
            repo.add_case_meeting(case.id, "joint", start=None, end=None, status="no_slot", uid=None, now=app.now())
            step.notified = _tell(app, repo, case, "case_joint_no_slot.txt.j2", list(case.parties),
                                  f"case-joint-noslot:{case.id}:{today}", minutes=cfg.joint_minutes,
                                  days=cfg.joint_within_days, last=last)
            return step
        meeting = found.meeting
        repo.add_case_meeting(case.id, "joint", start=meeting.start, end=meeting.end, status="booked",
                              uid=meeting.uid, now=app.now())
        case = repo.advance_case(case.id, rules.JointBooked(), app.now(), actor="system")
        step.booked.append((meeting.start, meeting.end, meeting.uid))
        step.notified = _tell(app, repo, case, "case_joint_booked.txt.j2", list(case.parties),
                              f"case-joint:{meeting.uid}", start=meeting.start, end=meeting.end,
                              location=meeting.location)
    return step


# -- follow-ups from the plan ----------------------------------------------------


def followups(app, case_id: str, dates, by: str) -> Step:
    """Each date of the plan: a meeting of the caseworkers at the first common
    free slot on or after it, within ``followup_window_days`` working days."""
    cfg = app.config.followup
    with app.transaction() as repo:
        case = repo.case(case_id)
    step = Step(case.id)
    for day in sorted(set(dates)):
        first, last = workdays.window(max(day, app.now().date()), cfg.followup_window_days,
                                      app.planner.closed.is_working_day)
        found = _book(app, case, "followup", first, last, cfg.followup_minutes)
        if found is None:
            step.unbooked.append(day)
        else:
            step.booked.append((found.meeting.start, found.meeting.end, found.meeting.uid))
    with app.transaction() as repo:
        for start, end, uid in step.booked:
            repo.add_case_meeting(case.id, "followup", start=start, end=end, status="booked", uid=uid,
                                  now=app.now())
        if step.booked:
            case = repo.advance_case(case.id, rules.FollowUpBooked(), app.now(), actor=by)
        key = ",".join([u for *_, u in step.booked] + [d.isoformat() for d in step.unbooked])
        step.notified = _tell(app, repo, case, "case_followups.txt.j2", list(case.parties),
                              f"case-followups:{case.id}:{_short(key)}",
                              booked=[(s, e) for s, e, _ in step.booked], unbooked=step.unbooked,
                              days=cfg.followup_window_days)
    return step


# -- closing ---------------------------------------------------------------------


def close(app, case_id: str, by: str | None) -> Step:
    """Close a case (by hand: ``by``; else its last follow-up was held); its
    coming meetings are cancelled, every party is told."""
    now = app.now()
    step = Step(case_id)
    with app.transaction() as repo:
        cancelled = 0
        for meeting in repo.case_meetings(case_id):
            if meeting.status == "booked" and meeting.uid and meeting.start and meeting.start > now:
                app.calendar_sync.cancel_sent(repo, meeting.uid)
                repo.set_case_meeting(meeting.uid, status="cancelled", now=now)
                cancelled += 1
        event = rules.Closed(by) if by else rules.LastFollowUpHeld()
        case = repo.advance_case(case_id, event, now, actor=by or "system")
        purge_on = (now + timedelta(days=app.config.followup.retention_days)).date()
        step.notified = _tell(app, repo, case, "case_closed.txt.j2", list(case.parties),
                              f"case-closed:{case_id}", by=by, cancelled=cancelled, purge_on=purge_on)
    return step


# -- what falls due: meetings held, cases ending, agreement overdue ------------------


@dataclass
class Due:
    held: int = 0
    closed: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)


def tick(app) -> Due:
    """Mark the meetings that have ended as held, close the cases whose last
    follow-up was held, and tell the coordinators (once) of a case where no
    agreement came within ``joint_within_days`` working days."""
    now, due = app.now(), Due()
    with app.transaction() as repo:
        open_cases = repo.cases(open_only=True)
        ending = []
        for case in open_cases:
            meetings = repo.case_meetings(case.id)
            for meeting in meetings:
                if meeting.status == "booked" and meeting.end and meeting.end <= now:
                    repo.set_case_meeting(meeting.uid, status="held", now=now)
                    due.held += 1
            if case.state.stage is rules.Stage.FOLLOWING_UP and _last_followup_held(meetings, now):
                ending.append(case.id)
            elif case.state.stage in AGREEABLE and _escalate(app, repo, case, meetings, now):
                due.escalated.append(case.id)
    for case_id in ending:
        close(app, case_id, None)
        due.closed.append(case_id)
    return due


def _last_followup_held(meetings, now: datetime) -> bool:
    followups = [m for m in meetings if m.kind == "followup" and m.start]
    return bool(followups) and all(m.end <= now or m.status in ("held", "cancelled") for m in followups)


def _escalate(app, repo, case, meetings, now: datetime) -> bool:
    coordination = [m.end for m in meetings if m.kind == "coordination" and m.end and m.status != "cancelled"]
    since = max(coordination) if coordination else None
    base = (since or case.opened_at).astimezone(app.tz).date()
    days = app.config.followup.joint_within_days
    if now.date() <= working_days_ahead(app, base, days):
        return False
    key = f"case-noagreement:{case.id}"
    if repo.get_meta(key):
        return False
    repo.set_meta(key, now.isoformat())
    series = app.series.get(case.series_id)
    _tell(app, repo, case, "case_no_agreement.txt.j2", list(coordinators(case)) or list(case.parties), key,
          kind="alert", series_name=series.name if series else case.series_id, since=since,
          opened=case.opened_at, days=days)
    return True


# -- booking and telling ---------------------------------------------------------


def _book(app, case, kind: str, first: date, last: date, minutes: int):
    """The booking result with its meeting, or None when no common slot (or
    the calendars failed: the parties are told as for no slot)."""
    title = render("booking_title.txt.j2", app.language, tz=app.tz, kind=kind).strip()
    request = BookingRequest(kind=kind, first=first, last=last, duration=timedelta(minutes=minutes),
                             required=caseworkers(case), title=f"{title} [{case.id}]",
                             reference=f"case:{case.id}")
    try:
        result = app.booker().book(request)
    except (TransientError, PermanentError) as exc:
        log.warning("case booking failed kind=%s error=%s", kind, type(exc).__name__)
        return None
    return result if result.meeting is not None else None


def _tell(app, repo, case, template: str, to: list[str], key: str, kind: str = "notice", **context) -> list[str]:
    """Queue one mail about the case to ``to``; the masked CPR is in its body only."""
    to = list(dict.fromkeys(to))
    subject, body = render_mail(template, app.language, tz=app.tz, forum_name=app.forum_name,
                                case_id=case.id, cpr=repo.case_cpr(case.id).masked, holder=case.state.holder,
                                caseworkers=caseworkers(case), **context)
    message = text_mail(sender=app.forum_address, sender_name=app.forum_name, to=to, subject=subject,
                        body=body, sent_at=app.now(), language=app.language)
    # Tagged with the citizen: audited when sent, found by ``audit --cpr`` and ``erase``.
    repo.enqueue_mail(message, kind=kind, dedupe_key=key, recipients=to,
                      citizens=[[case.cpr_hash, case.series_id, case.session_start.isoformat()]])
    return to


def _short(text: str) -> str:
    from hashlib import sha256

    return sha256(text.encode()).hexdigest()[:16]


# -- forgetting a case (retention) -------------------------------------------


def forget(repo, case) -> dict:
    """Delete a case row (``tables.Case``) and all that hangs on it; the counts."""
    from sqlalchemy import delete

    from scheduler.store.tables import Booking, CaseMeeting, Decision, Meta

    counts = {
        "meetings": repo.db.execute(delete(CaseMeeting).where(CaseMeeting.case_id == case.id)).rowcount,
        "decisions": repo.db.execute(delete(Decision).where(Decision.case_id == case.id)).rowcount,
        "bookings": repo.db.execute(delete(Booking).where(Booking.reference == f"case:{case.id}")).rowcount,
    }
    repo.db.execute(delete(Meta).where(Meta.key.like(f"case-%:{case.id}")))
    repo.db.delete(case)
    repo.db.flush()
    return counts


# -- what a case shows (``sparring case show``) -------------------------------------


def describe(app, repo, case) -> dict:
    """The case as ``case show --json`` prints it: orchestration data only."""
    meetings = repo.case_meetings(case.id)
    return {
        "case": case.id,
        "series": case.series_id,
        "holder": case.state.holder,
        "parties": list(case.parties),
        "decisions": [{"decision": d.decision, "slot": d.slot, "session_start": _local(app, d.session_start),
                       "decided_by": d.decided_by, "decided_at": _local(app, d.decided_at),
                       "receiver": d.receiver} for d in repo.decisions_of_case(case.id)],
        "meetings": [{"kind": m.kind, "start": _local(app, m.start), "end": _local(app, m.end),
                      "status": m.status, "uid": m.uid} for m in meetings],
        "waiting_on": waiting_on(case, meetings),
    }


def waiting_on(case, meetings) -> dict | None:
    """What the case waits for and on whom; None once it is closed."""
    state = case.state
    if not state.open:
        return None
    if state.offered_to:
        return {"step": "handover", "on": [state.offered_to]}
    booked = {m.kind for m in meetings if m.status == "booked"}
    workers = list(caseworkers(case))
    steps = {
        rules.Stage.DECIDED: ("agreement", workers) if "coordination" in booked else ("coordination", [state.holder]),
        rules.Stage.COORDINATION_BOOKED: ("agreement", workers),
        rules.Stage.AGREED: ("joint", [state.holder]),
        rules.Stage.JOINT_BOOKED: ("followup_dates", workers),
        rules.Stage.FOLLOWING_UP: ("followups", workers),
    }
    step, on = steps[state.stage]
    return {"step": step, "on": on}


def _local(app, moment: datetime | None) -> str | None:
    return moment.astimezone(app.tz).isoformat() if moment else None
