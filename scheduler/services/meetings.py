"""When meetings get booked: mail requests, acute items, declines, and the
cooperation meetings twice a year. Each flow runs after the decision that
caused it is committed (``repo.after_commit``), talks to the calendars, and
answers by mail through the outbox.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from scheduler.mail.compose import text_mail
from scheduler.planning import workdays
from scheduler.ports import PermanentError, TransientError
from scheduler.render import render_mail
from scheduler.services.alerts import task_failed
from scheduler.services.booking import BookingRequest
from scheduler.store.repository import PENDING

log = logging.getLogger("sparring.meetings")


def _mail(app, template: str, to: list[str], key: str, kind: str = "receipt", reply_to: str | None = None,
          **context) -> None:
    subject, body = render_mail(template, app.language, tz=app.tz, forum_name=app.forum_name, **context)
    message = text_mail(sender=app.forum_address, sender_name=app.forum_name, to=to, subject=subject,
                        body=body, sent_at=app.now(), language=app.language, in_reply_to=reply_to,
                        auto="auto-replied" if reply_to else "auto-generated")
    with app.transaction() as repo:
        repo.enqueue_mail(message, kind=kind, dedupe_key=key, recipients=to)


def from_mail(app, request, sender: str, message_id: str, key: str) -> None:
    """A "Netværksmøde"/"Koordineringsmøde" mail: book it, answer the sender."""
    duration = timedelta(minutes=request.duration or app.config.booking.default_duration)
    booking = BookingRequest(kind=request.kind, first=request.first, last=request.last, duration=duration,
                             required=request.required, optional=request.optional,
                             external=request.external, title=request.title, reference=f"mail:{key[:40]}")
    try:
        result = app.booker().book(booking, joint=False)
    except (TransientError, PermanentError) as exc:
        log.warning("booking by mail failed: %s", type(exc).__name__)
        result = None
    except Exception as exc:  # a bug must not cost the sender their answer
        task_failed(app, "from_mail", exc)
        result = None
    _mail(app, "receipt_booking.txt.j2", [sender], f"receipt:{key}", reply_to=message_id,
          result=result, request=booking)


def acute(app, item_id: int) -> None:
    """An acute item: the earliest common 10-20 minutes with the coordinators
    and the caseworker within the next working days, or an alert. Not for an
    item gone before this runs (withdrawn in the same intake batch): its
    withdrawal found no meeting to cancel."""
    cfg = app.config.booking.acute
    if not cfg.enabled:
        return
    with app.transaction() as repo:
        item = repo.item(item_id)
    if item.status != PENDING:
        return
    series = app.series[item.series_id]
    first = app.now().date()
    last = working_days_ahead(app, first, cfg.working_days)
    people = (*series.coordinators, item.sender)
    result = None
    for minutes in dict.fromkeys((cfg.duration, cfg.min_duration)):
        request = BookingRequest(kind="acute", first=first, last=last, duration=timedelta(minutes=minutes),
                                 required=people, reference=f"item:{item_id}")
        try:
            result = app.booker().book(request)
        except (TransientError, PermanentError) as exc:
            log.warning("acute booking failed: %s", type(exc).__name__)
            break
        if result.candidate is not None:
            return
    _mail(app, "alert_acute_no_slot.txt.j2", list(series.coordinators), f"acute-noslot:{item_id}",
          kind="alert", series_name=series.name, last=last, days=cfg.working_days, sender=item.sender)


def working_days_ahead(app, first: date, count: int) -> date:
    """The ``count``-th working day after ``first`` (the pure rule: ``planning.workdays``)."""
    return workdays.after(first, count, app.planner.closed.is_working_day)


def reply_refusal(repo, reply, sender: str | None, allow) -> str | None:
    """Why a decline must not count (a reason code), or None when it may.

    Anyone can mail a REPLY with a meeting's UID: a decline counts only from
    an attendee of that meeting, inside the allowlist, whose own address is
    both the reply's ATTENDEE and the mail's From. Other answers move
    nothing, so they are not judged.
    """
    if reply.partstat.upper() != "DECLINED":
        return None
    stored = repo.booking_by_uid(reply.uid)
    if stored is None:
        return None  # not a booking (a slot, a session): a decline moves nothing
    request, _ = stored
    attendee, sender = _address(reply.attendee), _address(sender or "")
    invited = {_address(a) for a in (*request.required, *request.optional, *request.external)}
    if attendee != sender or attendee not in invited or not allow.permits(sender):
        log.warning("calendar reply ignored: the decline is not from an attendee of the meeting kind=%s",
                    request.kind)
        return "reply_not_attendee"
    return None


def _address(text: str) -> str:
    text = text.strip().lower()
    return text[len("mailto:"):] if text.startswith("mailto:") else text


def on_reply(app, reply) -> None:
    """An iTIP REPLY (judged by ``reply_refusal``): a required participant's
    decline rebooks the meeting."""
    if reply.partstat.upper() != "DECLINED":
        return
    try:
        result = app.booker().rebook(reply.uid, reply.attendee.lower())
    except (TransientError, PermanentError) as exc:
        log.warning("rebooking failed: %s", type(exc).__name__)
        return
    if result is not None and result.meeting is not None:
        log.info("meeting rebooked after a decline kind=%s", result.request.kind)
        with app.transaction() as repo:  # a case's meeting keeps its new time (``case show``)
            repo.set_case_meeting(reply.uid, status="booked", now=app.now(), start=result.meeting.start,
                                  end=result.meeting.end)


# -- cooperation meetings -----------------------------------------------------


def due_windows(app, today: date) -> list[tuple[str, date, date]]:
    """(reference, first, last) of the cooperation windows to book now: the
    window opens within ``lead_weeks`` and has not closed."""
    cfg = app.config.booking.cooperation
    lead = timedelta(weeks=cfg.lead_weeks)
    due = []
    for year in (today.year, today.year + 1):
        for index, window in enumerate(cfg.windows):
            first = date(year, *map(int, window.start.split("-")))
            last = date(year, *map(int, window.end.split("-")))
            if first - lead <= today <= last:
                due.append((f"cooperation:{year}-{index}", max(first, today + timedelta(days=1)), last))
    return due


def book_cooperation(app, today: date | None = None) -> list[str]:
    """Book every due cooperation meeting once; tell the organiser when none fits."""
    cfg = app.config.booking.cooperation
    if not cfg.enabled or not cfg.required:
        return []
    booked = []
    for reference, first, last in due_windows(app, today or app.now().date()):
        with app.transaction() as repo:
            if repo.bookings_for(reference):
                continue
        request = BookingRequest(kind="cooperation", first=first, last=last,
                                 duration=timedelta(minutes=cfg.duration), required=cfg.required,
                                 optional=cfg.optional, title=cfg.title, location=cfg.location,
                                 reference=reference)
        result = app.booker().book(request)
        if result.candidate is None:
            with app.transaction() as repo:
                repo.save_booking(request, None, status="no_slot", now=app.now())
            app.booker()._no_slot_notice(request)
        else:
            booked.append(reference)
    return booked


def at(moment: datetime) -> str:
    return moment.isoformat()
