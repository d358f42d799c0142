"""The agenda of a session: slot times in order, the citizen, the item text.

Built from the pending items (acute first, then arrival), rendered with
Jinja2 as text, HTML or JSON. Who sees what is decided by the caller: the
coordinators get every item in full; a caseworker the timetable and only
their own item (``only_sender``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from scheduler.mail.decisions import reference as session_reference
from scheduler.model import Series, Session
from scheduler.cpr import mask_cprs
from scheduler.render import render, render_mail
from scheduler.store.repository import ItemView, Repository


@dataclass(frozen=True)
class AgendaLine:
    number: int
    start: datetime
    end: datetime
    acute: bool
    cpr: str | None  # None: not shown to this reader
    health: tuple[str, ...]
    social: tuple[str, ...]
    sender: str
    own: bool
    item_id: int = 0


@dataclass(frozen=True)
class Agenda:
    series: Series
    session: Session
    lines: tuple[AgendaLine, ...]
    compiled_at: datetime
    late: bool = False
    updated: bool = False  # sent again after the deadline: an acute item came
    delayed: bool = False  # late because the mail server was away, not sparring
    full_cpr: bool = False  # agenda.cpr_display = "full": the numbers stand unmasked
    tz: tzinfo | None = None  # the service's zone, for every time shown
    for_coordinators: bool = False  # the full agenda: it says how to answer with decisions

    def context(self, forum_name: str) -> dict:
        reference = session_reference(self.series.id, self.session.start.date()) if self.for_coordinators else ""
        return {"series": self.series, "session": self.session, "lines": self.lines,
                "compiled_at": self.compiled_at, "late": self.late, "updated": self.updated,
                "delayed": self.delayed,
                "forum_name": forum_name, "capacity": self.session.capacity, "reference": reference}

    def as_json(self) -> dict:
        return {
            "series": self.series.id,
            "session_start": self.session.start.isoformat(),
            "session_end": self.session.end.isoformat(),
            "deadline": self.session.deadline.isoformat(),
            "status": self.session.status.value,
            "capacity": self.session.capacity,
            "items": [
                {"slot": line.number, "start": line.start.isoformat(), "end": line.end.isoformat(),
                 "acute": line.acute, "cpr": line.cpr, "health": list(line.health),
                 "social": list(line.social), "sender": line.sender}
                for line in self.lines
            ],
        }


def build_agenda(repo: Repository, app, session: Session, *, full_cpr: bool,
                 only_sender: str | None = None, late: bool = False, updated: bool = False) -> Agenda:
    series = app.series[session.series_id]
    items = repo.items_of_session(session.key)
    lines = tuple(_line(n, item, session, series, full_cpr, only_sender) for n, item in enumerate(items))
    return Agenda(series, session, lines, app.now(), late, updated, full_cpr, app.tz,
                  for_coordinators=only_sender is None)


def _line(n: int, item: ItemView, session: Session, series: Series, full_cpr: bool,
          only_sender: str | None) -> AgendaLine:
    start = session.slot_start(n, series.slot_length)
    visible = only_sender is None or item.sender == only_sender
    # Masked display masks a number written into the case text too.
    shown = (lambda texts: texts) if full_cpr else (lambda texts: tuple(map(mask_cprs, texts)))
    return AgendaLine(
        number=n + 1,
        start=start,
        end=start + series.slot_length,
        acute=item.acute,
        cpr=(item.cpr.formatted if full_cpr else item.cpr.masked) if visible else None,
        health=shown(item.health) if visible else (),
        social=shown(item.social) if visible else (),
        sender=item.sender,
        own=only_sender is not None and visible,
        item_id=item.id,
    )


def render_agenda(agenda: Agenda, fmt: str, language: str, forum_name: str) -> str:
    if fmt == "json":
        import json

        return json.dumps(agenda.as_json(), ensure_ascii=False, indent=1) + "\n"
    return render(f"agenda.{'html' if fmt == 'html' else 'txt'}.j2", language, tz=_zone(agenda),
                  **agenda.context(forum_name))


def agenda_mail_parts(agenda: Agenda, language: str, forum_name: str) -> tuple[str, str, str]:
    """Subject, text body and HTML body of the agenda mail."""
    subject, text = render_mail("agenda.txt.j2", language, tz=_zone(agenda), **agenda.context(forum_name))
    html = render("agenda.html.j2", language, tz=_zone(agenda), **agenda.context(forum_name))
    return subject, text, html


def _zone(agenda: Agenda) -> tzinfo:
    return agenda.tz or agenda.session.start.tzinfo
