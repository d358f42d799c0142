"""Booking meetings by free/busy: cooperation, network, coordination, acute.

Internal people are booked by their free/busy (read from the calendar
backend); external ones (the citizen's network) are invited only. The pure
slot finder chooses; this module reads the calendars, writes the meeting
through ``CalendarSync`` (so invitations, SEQUENCE and the outbox work as
for sessions) and remembers the booking so that a decline can rebook it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta

from scheduler.model import Attendee, BookingRequest, Meeting, new_uid
from scheduler.planning.slots import Candidate, SlotRequest, find_slots
from scheduler.ports import CalendarBackend
from scheduler.reasons import reason
from scheduler.render import render
from scheduler.services import metrics

KINDS = ("cooperation", "network", "coordination", "acute", "joint")


@dataclass
class BookingResult:
    request: BookingRequest
    candidate: Candidate | None = None
    meeting: Meeting | None = None
    warnings: tuple[str, ...] = ()
    reason: str | None = None
    joint: Candidate | None = None
    invited: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict:
        if self.candidate is None:
            return {"start": None, "reason": self.reason}
        out = {
            "start": self.candidate.start.isoformat(),
            "end": self.candidate.end.isoformat(),
            "required_free": True,
            "optional_free": self.candidate.optional_free,
            "invited": list(self.invited),
            "warnings": list(self.warnings),
        }
        if self.candidate.room:
            out["room"] = self.candidate.room
        if self.joint is not None:
            out["joint_conversation"] = {"start": self.joint.start.isoformat(), "end": self.joint.end.isoformat()}
        return out


class Booker:
    def __init__(self, app, calendar: CalendarBackend) -> None:
        self.app = app
        self.calendar = calendar
        self.cfg = app.config.booking

    # -- finding -----------------------------------------------------------

    def find(self, req: BookingRequest) -> Candidate | None:
        found = self.candidates(req, limit=1)
        return found[0] if found else None

    def candidates(self, req: BookingRequest, limit: int = 5, strategy: str | None = None) -> list[Candidate]:
        start, end = self._window(req)
        if start >= end:
            return []
        people = _unique(req.required + req.optional)
        rooms = tuple(self.cfg.rooms)
        metrics.count(self.app, "freebusy_requests")
        busy = self.calendar.free_busy(people + rooms, start, end)
        hours = tuple(time.fromisoformat(t) for t in self.cfg.working_hours)
        slot_request = SlotRequest(
            window_start=start,
            window_end=end,
            duration=req.duration,
            required=_unique(req.required),
            optional=_unique(req.optional),
            busy={a: busy.get(a, []) for a in people},
            working_hours=hours,
            grid=timedelta(minutes=self.cfg.grid_minutes),
            buffer=timedelta(minutes=self.cfg.buffer_minutes),
            rooms={r: busy.get(r, []) for r in rooms},
            strategy=strategy or self.cfg.strategy,
            language=self.app.language,
        )
        return find_slots(slot_request, self.app.planner.closed, self.app.tz, limit=limit)

    def _window(self, req: BookingRequest) -> tuple[datetime, datetime]:
        tz = self.app.tz
        start = datetime.combine(req.first, time(0), tzinfo=tz)
        end = datetime.combine(req.last + timedelta(days=1), time(0), tzinfo=tz)
        floor = req.not_before or self.app.now()
        return max(start, floor), end

    # -- booking -----------------------------------------------------------

    def book(self, req: BookingRequest, *, dry_run: bool = False, joint: bool = False) -> BookingResult:
        candidate = self.find(req)
        if candidate is None:
            return BookingResult(req, reason=reason("no_slot", self.app.language, first=req.first, last=req.last))
        result = BookingResult(req, candidate, warnings=candidate.warnings,
                               invited=_unique(req.required + req.optional + req.external
                                               + ((candidate.room,) if candidate.room else ())))
        if req.kind == "coordination":
            result.joint = self._joint_offer(req, candidate)
        if dry_run:
            return result
        result.meeting = self._write(req, candidate, result.invited)
        if joint and result.joint is not None:
            joint_req = replace(req, kind="joint", title=None, reference=f"joint:{result.meeting.uid}")
            self._write(joint_req, result.joint, result.invited)
        return result

    def _joint_offer(self, req: BookingRequest, meeting: Candidate) -> Candidate | None:
        """The joint conversation with the citizen follows the coordination meeting."""
        follow = replace(req, kind="joint", first=meeting.start.date(),
                         last=max(req.last, meeting.start.date() + timedelta(days=14)),
                         not_before=meeting.end, optional=())
        return self.find(follow)

    def _write(self, req: BookingRequest, candidate: Candidate, invited: tuple[str, ...]) -> Meeting:
        meeting = self.meeting_for(req, candidate, invited)
        with self.app.transaction() as repo:
            self.app.calendar_sync.apply(repo, meeting, "booking")
            repo.save_booking(req, meeting, status="booked", now=self.app.now())
        return meeting

    def meeting_for(self, req: BookingRequest, candidate: Candidate, invited: tuple[str, ...],
                    uid: str | None = None) -> Meeting:
        required = set(req.required) | set(req.external) | ({candidate.room} if candidate.room else set())
        domain = self.app.forum_address.rpartition("@")[2]
        return Meeting(
            uid=uid or new_uid(req.kind, domain),
            summary=req.title or render("booking_title.txt.j2", self.app.language, tz=self.app.tz, kind=req.kind).strip(),
            start=candidate.start,
            end=candidate.end,
            organizer=self.app.forum_address,
            organizer_name=self.app.forum_name,
            attendees=tuple(Attendee(a, required=a in required) for a in invited),
            description=render(f"booking_{_body(req.kind)}.txt.j2", self.app.language, tz=self.app.tz,
                               kind=req.kind, external=req.external, case=req.reference.startswith("case:")),
            location=candidate.room or req.location,
            categories=(req.kind,),
        )

    # -- declines ----------------------------------------------------------

    def rebook(self, uid: str, declined_by: str) -> BookingResult | None:
        """A required person declined: find the next slot in the same window."""
        with self.app.transaction() as repo:
            stored = repo.booking_by_uid(uid)
        if stored is None:
            return None
        req, old_start = stored
        if declined_by not in req.required:
            return None
        busy_old = req  # the decliner's own calendar shows why; also skip the old time
        candidates = [c for c in self.candidates(busy_old, limit=20) if c.start != old_start]
        if not candidates:
            self._no_slot_notice(req, rebooking=True)
            return BookingResult(req, reason=reason("no_slot", self.app.language, first=req.first, last=req.last))
        candidate = candidates[0]
        invited = _unique(req.required + req.optional + req.external)
        meeting = self.meeting_for(req, candidate, invited, uid=uid)
        with self.app.transaction() as repo:
            self.app.calendar_sync.apply(repo, meeting, "booking")
            repo.save_booking(req, meeting, status="rebooked", now=self.app.now())
        return BookingResult(req, candidate, meeting, candidate.warnings, invited=invited)

    def _no_slot_notice(self, req: BookingRequest, rebooking: bool = False) -> None:
        from scheduler.mail.compose import text_mail
        from scheduler.render import render_mail

        organiser = self.app.config.booking.cooperation.organiser or self.app.config.service.admin
        subject, body = render_mail("booking_no_slot.txt.j2", self.app.language, tz=self.app.tz, request=req,
                                    rebooking=rebooking, forum_name=self.app.forum_name)
        message = text_mail(sender=self.app.forum_address, sender_name=self.app.forum_name, to=[organiser],
                            subject=subject, body=body, sent_at=self.app.now(), language=self.app.language)
        with self.app.transaction() as repo:
            repo.enqueue_mail(message, kind="alert", recipients=[organiser],
                              dedupe_key=f"noslot:{req.kind}:{req.reference or req.first}:{rebooking}")


def _body(kind: str) -> str:
    return "coordination" if kind in ("coordination", "joint") else "meeting"


def _unique(addresses) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for address in addresses:
        seen.setdefault(address.strip().lower(), None)
    return tuple(a for a in seen if a)
