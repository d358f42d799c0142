"""``sparring run``: the service. The only module that imports APScheduler.

Wiring: configuration → adapters → jobs. The main thread runs the intake
loop (IMAP IDLE, or polling) and renews the lease; APScheduler runs the
timed jobs (agendas at deadlines, publishing, purge) from a job store in
the same database, so they survive restarts and missed ones run once,
late, when the service is back: after the mail that waited in the
mailbox has been taken in, so items that arrived in time are on them.
The outbox has a thread of its own (``sender``): a failing or stalled
mail server never holds up intake or the jobs. The systemd watchdog is
fed by the intake loop, and only while the sender is not stuck.
SIGTERM/SIGINT stop it after the current job.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from scheduler import jobs, systemd
from scheduler.clock import on_the_wall, wall_offset
from scheduler.faults import describe
from scheduler.ports import PermanentError, TransientError
from scheduler.sender import Sender
from scheduler.services import deadlines, lease, metrics
from scheduler.services.dispatch import Dispatcher
from scheduler.services.intake import Intake
from scheduler.services.outage import Episode
from scheduler.store.db import connection_lost, disk_full, where
from scheduler.wiring import make_calendar, make_source, make_transport

log = logging.getLogger("sparring.daemon")


class _NoScheduler:
    """Stands in for APScheduler in ``--once`` runs: timed jobs are not kept."""

    def add_job(self, *args, **kwargs) -> None:
        return None


class TimelineTrigger(BaseTrigger):
    """A trigger read on the clock's timeline (``--now``), fired on the wall
    clock APScheduler reads: its times shifted by the clock's offset."""

    def __init__(self, trigger: BaseTrigger, offset: timedelta) -> None:
        self.trigger = trigger
        self.offset = offset

    def get_next_fire_time(self, previous_fire_time, now):
        previous = self._on_timeline(previous_fire_time) if previous_fire_time else None
        following = self.trigger.get_next_fire_time(previous, self._on_timeline(now))
        return on_the_wall(following, self.offset) if following else None

    def _on_timeline(self, wall: datetime) -> datetime:
        return wall.astimezone(timezone.utc) + self.offset

    def __str__(self) -> str:
        return f"{self.trigger} shifted by {self.offset}"


MAX_RETRY_AFTER = 900  # seconds: the longest a server's Retry-After keeps the intake away
LEASE_LOST = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts it again, as a standby


class Daemon:
    def __init__(self, app, poll_seconds: float | None = None) -> None:
        self.app = app
        self.config = app.config
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self.poll = poll_seconds or self.config.poll_seconds
        self.dispatcher = Dispatcher(app, make_transport(self.config, app.data_dir, app.clock),
                                     make_calendar(self.config, app.data_dir))
        self.scheduler: BackgroundScheduler | None = None
        self.sender: Sender | None = None
        # No progress inside a send round for this long is a hang (every adapter has socket timeouts).
        self.stall_after = 2.0 * self.config.outbox.smtp.timeout_seconds + 30
        self._renewed = time.monotonic()
        self._stall_logged = False
        self.lease_lost = False
        # Logged once each, when they begin and when they end, not every round.
        self.database = Episode(logging.getLogger("sparring.database"))
        self.disk = Episode(logging.getLogger("sparring.disk"))

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())

    def run_once(self) -> int:
        """Do what is due now and exit: publish, missed agendas, the whole
        inbox, the outbox. For cron-style operation and for tests."""
        held = lease.acquire(self.app, self.holder)
        if not held:
            log.error("another instance holds the lease; nothing done" if held is False else
                      f"the {where(self.app.engine)} could not be reached; nothing done")
            return 1
        try:
            jobs.RUNTIME = jobs.Runtime(self.app, self.dispatcher, _NoScheduler())
            jobs.publish()
            jobs.cooperation()
            jobs.cases()
            jobs.coordination()
            jobs.backlog()
            intake = Intake(self.app)
            source = make_source(self.config, self.app.data_dir, self.app, cipher=self.app.cipher,
                                 clock=self.app.clock)
            try:
                self._drain(intake, source)
            finally:
                source.close()
                intake.close()
            self._catch_up()
            while self.dispatcher.run_once().sent:
                pass
        finally:
            lease.release(self.app, self.holder)
        return 0

    def run(self) -> int:
        systemd.notify("STATUS=waiting for the lease")
        while not self.stopping.is_set() and not lease.acquire(self.app, self.holder):
            log.info("standby: another instance holds the lease")
            systemd.notify("STATUS=standby", "WATCHDOG=1")
            self.stopping.wait(lease.RENEW_EVERY.total_seconds())
        if self.stopping.is_set():
            return 0
        self.app.reload_sessions()  # a standby's planner is as old as its start: the extra sessions added since
        metrics.heartbeat(self.app, "daemon", force=True)  # its jobs are overdue from here on, not from before
        try:
            self.sender = Sender(self.app, self.dispatcher, self.stopping)
            self._start_scheduler()
            self.sender.start()
            systemd.notify("READY=1", "STATUS=running")
            log.info("running holder=%s source=%s", self.holder, self.config.intake.source)
            self._intake_loop()
        finally:
            systemd.notify("STOPPING=1")
            self.stopping.set()
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=True)
            if self.sender is not None:
                self.sender.stop(timeout=self.config.outbox.smtp.timeout_seconds + 5.0)
            self._release()
            log.info("stopped")
        return LEASE_LOST if self.lease_lost else 0

    def _release(self) -> None:
        try:
            lease.release(self.app, self.holder)
        except Exception as exc:  # the database is away: the lease lapses by itself
            if not connection_lost(exc):
                raise

    def _start_scheduler(self) -> None:
        tz = self.app.tz
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.app.engine, tablename="apscheduler_jobs")},
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=tz,
        )
        jobs.RUNTIME = jobs.Runtime(self.app, self.dispatcher, self.scheduler, sender=self.sender,
                                    database=self.database)
        # Paused until the waiting mail is in (``_intake_loop``): a stored agenda
        # job that misfired while we were down must not run before it.
        self.scheduler.start(paused=True)
        daily = lambda hour: TimelineTrigger(CronTrigger(hour=hour, minute=0, timezone=tz),  # noqa: E731
                                             wall_offset(self.app.clock))
        self.scheduler.add_job("scheduler.jobs:publish", daily(2), id="publish", replace_existing=True)
        self.scheduler.add_job("scheduler.jobs:purge", daily(3), id="purge", replace_existing=True)
        self.scheduler.add_job("scheduler.jobs:dispatch", "interval", seconds=30, id="dispatch",
                               replace_existing=True)
        self.scheduler.add_job("scheduler.jobs:catch_up", "interval", seconds=60, id="catch_up",
                               replace_existing=True)
        self.scheduler.add_job("scheduler.jobs:cooperation", daily(6), id="cooperation", replace_existing=True)
        hourly = TimelineTrigger(CronTrigger(minute=5, timezone=tz), wall_offset(self.app.clock))
        self.scheduler.add_job("scheduler.jobs:cases", hourly, id="cases", replace_existing=True)
        self.scheduler.add_job("scheduler.jobs:coordination", "interval", hours=1, id="coordination",
                               replace_existing=True)
        self.scheduler.add_job("scheduler.jobs:backlog", hourly, id="backlog", replace_existing=True)
        jobs.publish()
        jobs.cooperation()

    def _drain(self, intake: Intake, source) -> None:
        """Take in all the mail that waits. Before ``_catch_up``: a mail that
        reached the mailbox before a deadline belongs on that agenda."""
        while not self.stopping.is_set() and self._intake_once(intake, source):
            if not self._keep_lease():  # a long backlog must not let the lease lapse
                return

    def _catch_up(self) -> None:
        """Agendas whose deadline passed while no instance ran: send them, late.

        Only since sparring came into use (its first start or first mail): a
        new installation sends no late agendas for sessions before it existed.
        """
        since = max(self.app.now() - timedelta(days=14), deadlines.in_use_since(self.app))
        for key in deadlines.missed_agendas(self.app, since):
            log.warning("agenda missed while down; sending late session=%s", key)
            jobs.agenda(key)

    def _intake_loop(self) -> None:
        intake = Intake(self.app)
        intake.start()
        source = make_source(self.config, self.app.data_dir, self.app, cipher=self.app.cipher,
                             clock=self.app.clock)
        log.info("watching %s", self._watched())
        jobs.RUNTIME.extra["source"] = source
        watchdog = systemd.watchdog_interval()
        self._renewed = time.monotonic()
        try:
            self._drain(intake, source)
            if self.stopping.is_set():
                return
            self._catch_up()
            self.scheduler.resume()
            while not self.stopping.is_set():
                took = self._intake_once(intake, source)
                if not self._keep_lease():
                    return
                self._feed_watchdog()
                if took:
                    continue  # more may wait (a burst): fetch again before idling
                timeout = min(self.poll, watchdog or self.poll, lease.RENEW_EVERY.total_seconds())
                source.wait(timeout)
        finally:
            source.close()
            intake.close()

    def _watched(self) -> str:
        """Where mail is taken from, for the operator who drops a mail in."""
        intake = self.config.intake
        if intake.source == "folder":
            return f"folder={(self.app.data_dir / 'inbox').resolve()}"
        if intake.source == "imap":
            return f"imap={intake.imap.host}:{intake.imap.port}/{intake.imap.folder}"
        return f"{intake.source}=inbox"

    def _feed_watchdog(self) -> None:
        """WATCHDOG=1 while the jobs progress: a sender stuck past every
        socket timeout is not fed for, so systemd restarts the service."""
        stuck = self.sender.stalled(self.stall_after) if self.sender is not None else None
        if stuck is None:
            self._stall_logged = False
            systemd.notify("WATCHDOG=1")
        elif not self._stall_logged:
            self._stall_logged = True
            log.error("the outbox sender has made no progress for %.0f s; the systemd watchdog is "
                      "no longer fed", stuck)

    def _keep_lease(self) -> bool:
        """Renew the lease when due. While the database cannot be asked (a
        restart, a failover) the lease is still ours until the TTL of its last
        renewal runs out; once lost, stop so the other acts alone."""
        asked = time.monotonic()
        if asked - self._renewed < lease.RENEW_EVERY.total_seconds():
            return True
        held = lease.acquire(self.app, self.holder)
        if held:
            self._renewed = asked
            self.database.end("database reachable again: sparring carries on")
            return True
        if held is None and asked - self._renewed < lease.TTL.total_seconds():
            self._database_lost()
            return True
        log.error("lease lost; stopping so the other instance acts alone" if held is False else
                  "lease lapsed while the database could not be reached; stopping (a restart waits as standby)")
        self.lease_lost = True
        self.stopping.set()
        return False

    def _database_lost(self) -> None:
        self.database.begin(f"database unreachable: the {where(self.app.engine)} does not answer; sparring "
                            "waits and tries again, the mail stays in the mailbox, nothing is lost")

    def _intake_failed(self, exc: Exception) -> None:
        """One clear line per episode for a full disk or a lost database (the
        batch was rolled back, the mail stays in the mailbox); else the class
        only: an unknown error's text may hold anything."""
        if disk_full(exc):
            self.disk.begin(f"disk full: the {where(self.app.engine)} has no space left; no new mail is "
                            "taken in until there is, the mail stays in the mailbox, nothing is lost")
        elif connection_lost(exc):
            self._database_lost()
        else:
            log.error("intake round failed error=%s", describe(exc))

    def _intake_once(self, intake: Intake, source) -> bool:
        """One fetch-decide-settle round; True if any mail was taken in."""
        try:
            outcomes = intake.run(source)
        except TransientError as exc:
            log.warning("mail source unavailable: %s", exc)
            # A server that said how long to stay away (Graph's Retry-After) is obeyed, up to 15 minutes.
            self.stopping.wait(max(min(self.poll, 30), min(exc.retry_after or 0, MAX_RETRY_AFTER)))
            return False
        except PermanentError as exc:
            # Bad credentials or certificate: keep the scheduler (agendas, outbox)
            # running and try again slowly; the log says what to fix.
            log.error("mail source refused us: %s", exc)
            self.stopping.wait(300)
            return False
        except Exception as exc:  # not a mail's fault (those are quarantined by Intake): retried
            self._intake_failed(exc)
            self.stopping.wait(min(self.poll, 30, lease.RENEW_EVERY.total_seconds()))
            return False
        metrics.heartbeat(self.app, "intake")  # the source answered: a refusing one lets /healthz fail
        if outcomes:  # written to the database: it is there, with room
            self.disk.end("disk space is back: taking in mail again")
            self.database.end("database reachable again: sparring carries on")
            counts = Counter(outcome.outcome for outcome in outcomes)
            log.info("intake mails=%d %s", len(outcomes), " ".join(f"{k}={n}" for k, n in sorted(counts.items())))
            if self.sender is not None:
                self.sender.wake()  # answer now, on the sender's thread: never waited for here
            else:
                while self.dispatcher.run_once().sent:
                    pass
            self._backlog()
        return bool(outcomes)

    def _backlog(self) -> None:
        """The backlog check after a round: the queue may be full now, or a
        reply added an extra session. A lost database is the intake's episode;
        anything else is logged, and the hourly job tries again."""
        try:
            jobs.backlog_round()
        except Exception as exc:
            if connection_lost(exc) or disk_full(exc):
                self._intake_failed(exc)
            else:
                log.error("backlog check failed error=%s", describe(exc))
