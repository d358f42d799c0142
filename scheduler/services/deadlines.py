"""At a session's deadline: compile the agenda and mail it, once.

The coordinators of the series get every item in full; each caseworker with
an item gets the timetable with only their own item in full (or as
configured). Agendas go only to allowlisted internal addresses. Whether an
agenda was sent is recorded with it in one transaction, so a restart never
sends it twice; one compiled after its deadline (the service was down) is
marked late.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from scheduler.mail.compose import text_mail
from scheduler.wire import to_bytes
from scheduler.render import render_mail
from scheduler.services.agenda import agenda_mail_parts, build_agenda
from scheduler.services.allowlist import Allowlist
from scheduler.store.tables import SessionState

# An agenda compiled more than this after its deadline is marked late.
LATE_AFTER = timedelta(minutes=5)


def agenda_due(app, first: datetime, last: datetime):
    """Planned sessions whose deadline lies in ``first``..``last``."""
    days = (first.date() - timedelta(days=1), last.date() + timedelta(days=40))
    for session in app.planner.sessions(*days):
        if session.planned and first <= session.deadline <= last:
            yield session


def send_agenda(app, session_key: str) -> bool:
    """Compile and queue the agenda of one session; False if already sent."""
    session = app.session_by_key(session_key)
    if not session.planned:
        return False
    now = app.now()
    with app.transaction() as repo:
        state = repo.db.get(SessionState, session_key, with_for_update=True)
        if state is not None and state.agenda_sent_at is not None:
            return False
        late = now - session.deadline > LATE_AFTER
        if state is None:
            state = SessionState(session_key=session_key, agenda_late=False, cancel_sent=False, updated_at=now)
            repo.db.add(state)
        _queue_agendas(app, repo, session, late)
        state.agenda_sent_at, state.agenda_late, state.updated_at = now, late, now
        if app.config.agenda.cancel_empty and not repo.items_of_session(session_key):
            app.calendar_sync.cancel_session(repo, session)
    return True


def queue_update(app, repo, session, cause: str) -> bool:
    """The agenda again, marked updated, if it has already gone out (an acute
    item placed after the deadline). Part of the caller's transaction."""
    state = repo.db.get(SessionState, session.key)
    if state is None or state.agenda_sent_at is None:
        return False
    _queue_agendas(app, repo, session, late=False, updated=cause)
    return True


def _queue_agendas(app, repo, session, late: bool, updated: str = "") -> None:
    series = app.series[session.series_id]
    allow = Allowlist(app.config.intake.allow)
    full = app.config.agenda.cpr_display == "full"
    agenda = build_agenda(repo, app, session, full_cpr=full, late=late, updated=bool(updated))
    coordinators = [a for a in series.coordinators if allow.permits(a)]
    suffix = f":{updated}" if updated else ""
    _queue(app, repo, agenda, coordinators, f"agenda:{session.key}{suffix}")
    mode = app.config.agenda.caseworker_copy
    if mode == "none":
        return
    for sender in sorted({line.sender for line in agenda.lines} - set(coordinators)):
        if not allow.permits(sender):
            continue
        own = build_agenda(repo, app, session, full_cpr=full, late=late, updated=bool(updated),
                           only_sender=sender if mode == "own_item" else "\0nobody")
        _queue(app, repo, own, [sender], f"agenda:{session.key}:{sender}{suffix}")


def _queue(app, repo, agenda, to: list[str], key: str) -> None:
    """Queue the agenda mail; one compiled on time carries a second version,
    marked late (the same Message-ID), which the dispatcher sends instead
    should a mail server outage keep it back past ``LATE_AFTER``."""
    if not to:
        return
    message = _agenda_mail(app, agenda, to)
    extra = {}
    if not (agenda.late or agenda.updated):
        late = _agenda_mail(app, replace(agenda, late=True, delayed=True), to, message["Message-ID"])
        extra = {"late_message": to_bytes(late).decode("ascii", "surrogateescape"),
                 "late_from": (agenda.session.deadline + LATE_AFTER).isoformat()}
    repo.enqueue_mail(message, kind="agenda", dedupe_key=key, recipients=to,
                      about=[line.item_id for line in agenda.lines if line.cpr is not None], extra=extra)


def _agenda_mail(app, agenda, to: list[str], message_id: str | None = None):
    subject, text, html = agenda_mail_parts(agenda, app.language, app.forum_name)
    return text_mail(sender=app.forum_address, sender_name=app.forum_name, to=to, subject=subject,
                     body=text, html=html, sent_at=app.now(), language=app.language, message_id=message_id,
                     full_cpr=agenda.full_cpr)


def in_use_since(app) -> datetime:
    """The first start of the service, or its first mail if earlier; recorded
    on the first call."""
    from sqlalchemy import func, select

    from scheduler.store.tables import Mail

    with app.transaction() as repo:
        first_start = repo.get_meta("first_start")
        if first_start is None:
            first_start = app.now().isoformat()
            repo.set_meta("first_start", first_start)
        first_mail = repo.db.scalar(select(func.min(Mail.received_at)))
    started = datetime.fromisoformat(first_start)
    return min(started, first_mail) if first_mail else started


def missed_agendas(app, since: datetime, settled_after: timedelta = timedelta(0)) -> list[str]:
    """Sessions whose deadline passed since ``since`` (and at least
    ``settled_after`` ago: a deadline just passed is its own job's) and that
    have not started, with no agenda sent: what must be caught up on."""
    now = app.now()
    keys = []
    with app.transaction() as repo:
        for session in agenda_due(app, since, now - settled_after):
            if session.start <= now:
                continue
            state = repo.db.get(SessionState, session.key)
            if state is None or state.agenda_sent_at is None:
                keys.append(session.key)
    return keys


# -- reminders ------------------------------------------------------------------


def reminders_due(app, first: datetime, last: datetime):
    """(session, moment) for reminders falling in ``first``..``last``."""
    hours = app.config.agenda.reminder_hours
    if hours == 0:
        return
    lead = timedelta(hours=hours)
    for session in agenda_due(app, first, last + lead):
        moment = session.deadline - lead
        if first <= moment <= last and app.series[session.series_id].remind:
            yield session, moment


def send_reminder(app, session_key: str) -> bool:
    """Remind the series' list of the coming deadline, once."""
    session = app.session_by_key(session_key)
    series = app.series[session.series_id]
    if not session.planned or not series.remind or app.now() >= session.deadline:
        return False
    with app.transaction() as repo:
        free = session.capacity - len(repo.booked_in(session_key))
        subject, body = render_mail("reminder.txt.j2", app.language, tz=app.tz, series=series, session=session,
                                    free=max(free, 0), forum_name=app.forum_name, mailbox=app.forum_address)
        message = text_mail(sender=app.forum_address, sender_name=app.forum_name, to=list(series.remind),
                            subject=subject, body=body, sent_at=app.now(), language=app.language)
        return repo.enqueue_mail(message, kind="reminder", dedupe_key=f"reminder:{session_key}",
                                 recipients=list(series.remind))
