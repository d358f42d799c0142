"""``--now`` starts a running clock (issue 11 item 3).

The folder source dates a mail by its file's mtime, a wall-clock time: under
``--now`` it is put on ``--now``'s timeline. And ``run --now T`` keeps the
clock running from ``T``, so a deadline a few seconds after ``T`` fires.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from scheduler import cli, jobs
from scheduler.clock import FixedClock, RunningClock, SystemClock, wall_offset
from scheduler.config import load_config
from scheduler.daemon import Daemon
from scheduler.store.keys import new_key
from scheduler.store.tables import Mail, SessionState
from scheduler.wiring import make_app
from tests.appkit import CONFIG, TZ, at, item_mail
from tests.daemonkit import drop_mail, outbox_kind, wait_for


def test_a_running_clock_starts_at_now_and_moves_on():
    start = at("2027-01-04T11:59")
    clock = RunningClock(start)
    first = clock.now()
    time.sleep(0.05)
    assert start <= first < clock.now() < start + timedelta(seconds=5)
    wall = datetime.now(timezone.utc)
    assert abs(clock.from_wall(wall) - clock.now()) < timedelta(seconds=1)
    assert clock.from_wall(wall - timedelta(minutes=3)) - clock.from_wall(wall) == timedelta(minutes=-3)
    assert abs(wall_offset(clock) - (start - wall)) < timedelta(seconds=5)


def test_the_system_and_a_fixed_clock_take_wall_times_as_they_are():
    wall = datetime(2027, 1, 4, 10, 0, tzinfo=timezone.utc)
    assert SystemClock(TZ).from_wall(wall) == wall == FixedClock(at("2030-01-01T00:00")).from_wall(wall)
    assert wall_offset(SystemClock(TZ)) == timedelta(0)


def test_now_option_and_variable_start_a_running_clock(tmp_path, monkeypatch):
    args = cli.build_parser().parse_args(["--config", str(CONFIG), "--now", "2027-01-04T11:59", "status"])
    clock = cli.Context(args).clock
    assert isinstance(clock, RunningClock) and clock.start == at("2027-01-04T11:59")
    monkeypatch.setenv("SPARRING_NOW", "2027-01-04T11:58")
    args = cli.build_parser().parse_args(["--config", str(CONFIG), "status"])
    assert cli.Context(args).clock.start == at("2027-01-04T11:58")


def test_a_mail_dropped_now_is_dated_on_the_now_timeline(tmp_path, monkeypatch, capsys):
    """Dropped just now (its mtime is the wall clock's now) under ``--now``
    Monday 09:00: it arrived before Monday's 12:00 deadline, so it goes on
    Thursday's session, not on one of the real date's."""
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    data = tmp_path / "var"
    drop_mail(data / "inbox", "now", item_mail("150303-4321", "n1"), datetime.now(timezone.utc))
    # ... and one that arrived an hour before that, on the same timeline.
    drop_mail(data / "inbox", "hour", item_mail("110698-2345", "h1", sender="ole@kommune.example"),
              datetime.now(timezone.utc) - timedelta(hours=1))
    code = cli.main(["--config", str(CONFIG), "--data-dir", str(data), "--now", "2027-01-04T09:00",
                     "ingest", "--json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["outcome"], r["session_start"]) for r in rows] == [
        ("accepted", "2027-01-07T10:00:00+01:00"), ("accepted", "2027-01-07T10:00:00+01:00")]
    app = make_app(load_config(CONFIG), FixedClock(at("2027-01-04T09:00")), data)
    with app.transaction() as repo:
        arrivals = sorted(repo.db.scalars(select(Mail.received_at)))
    arrivals = [a.replace(tzinfo=a.tzinfo or timezone.utc) for a in arrivals]
    assert at("2027-01-04T07:59") <= arrivals[0] <= at("2027-01-04T08:01")
    assert at("2027-01-04T08:59") <= arrivals[1] <= at("2027-01-04T09:01")


def test_run_with_now_just_before_a_deadline_sends_the_agenda_at_the_deadline(tmp_path, monkeypatch):
    """``run --now`` three seconds before Monday's 12:00 deadline: the
    scheduler, which reads the wall clock, fires the agenda job three
    seconds later, on time (not marked late), and not by the catch-up of
    missed agendas at start."""
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    deadline = at("2027-01-04T12:00")
    data = tmp_path / "var"
    app = make_app(load_config(CONFIG), RunningClock(deadline - timedelta(seconds=3)), data)
    fired_in: list[str] = []
    agenda = jobs.agenda

    def recorded(key: str) -> None:
        fired_in.append(threading.current_thread().name)
        agenda(key)

    monkeypatch.setattr(jobs, "agenda", recorded)
    daemon = Daemon(app, poll_seconds=0.1)
    runner = threading.Thread(target=daemon.run, name="intake")
    runner.start()
    try:
        wait_for(lambda: outbox_kind(data, "agenda"), 30, "the agenda of Thursday 7 January")
    finally:
        daemon.stopping.set()
        runner.join(30)
    key = next(s.key for s in app.planner.sessions(deadline.date(), deadline.date() + timedelta(days=3))
               if s.deadline == deadline)
    with app.transaction() as repo:
        state = repo.db.get(SessionState, key)
    sent_at = state.agenda_sent_at.replace(tzinfo=state.agenda_sent_at.tzinfo or timezone.utc)
    assert deadline <= sent_at < deadline + timedelta(seconds=30) and not state.agenda_late
    assert fired_in and "intake" not in fired_in, "fired by the scheduler, not caught up at start"


def test_a_mail_never_arrives_after_the_clocks_now(tmp_path):
    from scheduler.mail.folder import FolderSource

    inbox = tmp_path / "inbox"
    drop_mail(inbox, "late", item_mail("150303-4321", "x"), at("2027-01-04T12:00"))
    [mail] = FolderSource(inbox, FixedClock(at("2027-01-04T09:00"))).fetch(10)
    assert mail.received_at == at("2027-01-04T09:00")
    os.utime(inbox / "late.eml", (at("2027-01-04T08:00").timestamp(),) * 2)
    [mail] = FolderSource(inbox, FixedClock(at("2027-01-04T09:00"))).fetch(10)
    assert mail.received_at == at("2027-01-04T08:00")


def test_the_daily_jobs_run_at_their_hour_on_the_now_timeline():
    """Publishing at 02:00 under ``--now``: 02:00 on ``--now``'s timeline,
    whatever hour the wall clock shows then."""
    from apscheduler.triggers.cron import CronTrigger

    from scheduler.daemon import TimelineTrigger

    offset = timedelta(days=400, hours=5, minutes=17)  # from winter time to summer time
    trigger = TimelineTrigger(CronTrigger(hour=2, minute=0, timezone=TZ), offset)
    wall_now = datetime(2026, 3, 10, 15, 0, tzinfo=TZ)  # on the timeline: 2027-04-14 21:17 CEST
    first = trigger.get_next_fire_time(None, wall_now)
    assert first.astimezone(timezone.utc) + offset == datetime(2027, 4, 15, 2, 0, tzinfo=TZ)
    second = trigger.get_next_fire_time(first, first)
    assert second.astimezone(timezone.utc) + offset == datetime(2027, 4, 16, 2, 0, tzinfo=TZ)


def test_a_running_clock_keeps_real_time_across_a_dst_switch():
    """Started a moment before the spring switch (02:00 CET becomes 03:00
    CEST): it shows summer time, and no hour is lost or gained."""
    start = datetime(2027, 3, 28, 1, 59, 59, 990000, tzinfo=TZ)
    clock = RunningClock(start)
    time.sleep(0.05)
    now = clock.now()
    assert now.utcoffset() == timedelta(hours=2) and (now.hour, now.minute) == (3, 0)
    assert timedelta(0) < now.astimezone(timezone.utc) - start.astimezone(timezone.utc) < timedelta(seconds=5)
    assert clock.from_wall(datetime.now(timezone.utc)).utcoffset() == timedelta(hours=2)


def test_retention_under_now_compares_file_times_on_its_timeline(tmp_path, monkeypatch):
    """``purge --now`` a year ahead: a mail filed just now is not a year old.
    The files' mtimes are wall-clock times, the cut-off is on ``--now``'s timeline."""
    from scheduler.services.retention import purge

    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    data = tmp_path / "var"
    app = make_app(load_config(CONFIG), RunningClock(datetime.now(TZ) + timedelta(days=365)), data)
    wall = datetime.now(timezone.utc)
    kept = drop_mail(data / "processed", "new", b"x", wall)
    gone = drop_mail(data / "processed", "old", b"x", wall - timedelta(days=app.config.storage.retention_days + 1))
    assert purge(app).files == 1
    assert kept.exists() and not gone.exists()
