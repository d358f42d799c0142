"""The daemon's job functions: module-level, so APScheduler's SQLAlchemy job
store can keep them as references ("scheduler.jobs:agenda") across restarts.

They reach the running service through ``RUNTIME``, set by the daemon before
the scheduler starts; the stored jobs themselves hold only a session key.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from scheduler.clock import on_the_wall, wall_offset
from scheduler.services import backlog as backlog_service
from scheduler.services import casework, deadlines, decisions, meetings, metrics, publishing, retention
from scheduler.services.outage import Episode
from scheduler.store.db import connection_lost, disk_full, where

log = logging.getLogger("sparring.jobs")


@dataclass
class Runtime:
    app: object
    dispatcher: object
    scheduler: object = None
    extra: dict = field(default_factory=dict)
    database: Episode = field(default_factory=lambda: Episode(logging.getLogger("sparring.database")))
    sender: object = None  # the outbox thread (``sparring run``); None: send here and now

    def send(self, limit: int = 200) -> None:
        """Have what was queued sent: the sender woken, or (``--once``) sent now.
        A job never waits for a mail server: a stalled one holds up only the sender."""
        if self.sender is not None:
            self.sender.wake()
        else:
            self.dispatcher.run_once(limit=limit)


RUNTIME: Runtime | None = None


def _runtime() -> Runtime:
    if RUNTIME is None:
        raise RuntimeError("the sparring daemon is not running in this process")
    return RUNTIME


def _outlasts_outages(job):
    """A job that meets a lost database or a full disk logs it once (the
    episode) instead of a traceback per run: what it did was rolled back,
    and it runs again (``catch_up`` for a missed agenda). A run that ends is
    the job's heartbeat (``/healthz``)."""

    @functools.wraps(job)
    def run(*args):
        try:
            done = job(*args)
            metrics.heartbeat(_runtime().app, job.__name__)  # /healthz: the job is not overdue
            return done
        except Exception as exc:
            if not (connection_lost(exc) or disk_full(exc)):
                raise
            rt = _runtime()
            what = "has no space left" if disk_full(exc) else "does not answer"
            rt.database.begin(f"timed jobs wait: the {where(rt.app.engine)} {what}; they run again, "
                              "nothing is lost")

    return run


@_outlasts_outages
def agenda(session_key: str) -> None:
    """Compile and send the agenda of one session (at its deadline)."""
    rt = _runtime()
    if deadlines.send_agenda(rt.app, session_key):
        log.info("agenda queued session=%s", session_key)
        rt.send()


@_outlasts_outages
def reminder(session_key: str) -> None:
    """Remind the caseworkers' list of a coming deadline."""
    rt = _runtime()
    if deadlines.send_reminder(rt.app, session_key):
        rt.send()


@_outlasts_outages
def publish() -> None:
    """Publish sessions over the horizon and schedule their agenda jobs."""
    rt = _runtime()
    app = rt.app
    publishing.publish_horizon(app)
    schedule_agendas(rt)
    rt.send(limit=5000)


def schedule_agendas(rt: Runtime) -> None:
    app = rt.app
    now = app.now()
    end = now + timedelta(days=31 * app.config.calendar.horizon_months)
    shift = wall_offset(app.clock)  # APScheduler fires on the wall clock, not on --now's timeline
    for session in deadlines.agenda_due(app, now, end):
        rt.scheduler.add_job(
            "scheduler.jobs:agenda", "date", run_date=on_the_wall(session.deadline, shift),
            args=[session.key],
            id=f"agenda:{session.key}", replace_existing=True,
            misfire_grace_time=None, coalesce=True,
        )
    for session, moment in deadlines.reminders_due(app, now, end):
        rt.scheduler.add_job(
            "scheduler.jobs:reminder", "date", run_date=on_the_wall(moment, shift), args=[session.key],
            id=f"reminder:{session.key}", replace_existing=True,
            misfire_grace_time=3600, coalesce=True,  # a reminder hours late is still useful; days late is not
        )


@_outlasts_outages
def cooperation() -> None:
    """Book the cooperation meetings whose window is due (daily)."""
    rt = _runtime()
    booked = meetings.book_cooperation(rt.app)
    if booked:
        log.info("cooperation meetings booked count=%d", len(booked))
    rt.send()


@_outlasts_outages
def catch_up() -> None:
    """Agendas whose deadline passed unsent while the service ran (the job at
    the deadline met a database that was away): sent now, late."""
    rt = _runtime()
    app = rt.app
    since = max(app.now() - timedelta(days=14), deadlines.in_use_since(app))
    for key in deadlines.missed_agendas(app, since, settled_after=deadlines.LATE_AFTER):
        log.warning("agenda missed at its deadline; sending late session=%s", key)
        agenda(key)


@_outlasts_outages
def cases() -> None:
    """Cases: meetings that have ended are held, a case whose last follow-up
    was held closes, agreement overdue is told to the coordinators (hourly)."""
    rt = _runtime()
    due = casework.tick(rt.app)
    if due.closed or due.escalated:
        log.info("cases closed=%d escalated=%d", len(due.closed), len(due.escalated))
    rt.send()


@_outlasts_outages
def coordination() -> None:
    """Book the koordineringsmøder still missing for opened cases (hourly)."""
    rt = _runtime()
    if decisions.book_pending(rt.app):
        rt.send()


@_outlasts_outages
def backlog() -> None:
    """The backlog warning, hourly (and in ``--once``), with the answers left undone."""
    backlog_round(resume=True)


def backlog_round(resume: bool = False) -> None:
    """The backlog check; the intake loop runs it after each round (a lost
    database is then the round's). An extra session added since (here, or by
    another process) gets its agenda job."""
    rt = _runtime()
    rt.app.reload_sessions()
    warned = backlog_service.check(rt.app, resume=resume)
    if rt.extra.get("extras") != rt.app.planner.extras:
        rt.extra["extras"] = rt.app.planner.extras
        schedule_agendas(rt)
    if warned:
        rt.send()


@_outlasts_outages
def dispatch() -> None:
    """The stored periodic job of earlier versions: now only a wake-up (the sender keeps its own times)."""
    _runtime().send()


@_outlasts_outages
def purge() -> None:
    rt = _runtime()
    source = rt.extra.get("source")
    report = retention.purge(rt.app, source if hasattr(source, "purge_settled") else None)
    log.info("purged items=%d mails=%d", report.items, report.mails)
