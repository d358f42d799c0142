"""``sparring run`` as a real process: answers mail, stops cleanly on SIGTERM,
catches up on missed agendas once, and hands over between two instances on
one PostgreSQL database through the lease. Logs are grepped for CPR numbers.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from scheduler.store.keys import new_key
from tests import mails
from tests.appkit import item_mail
from tests.daemonkit import (
    CPR_LIKE,
    FOLDERS,
    IMPORTED,
    Proc,
    cli,
    drop_mail,
    eml_files,
    environment,
    outbox_kind,
    plain_body,
    read_mail,
    wait_for,
    write_config,
)

# Runs sparring as processes, which read the real clock (see tests/conftest.py).
pytestmark = pytest.mark.servers
TZ = ZoneInfo("Europe/Copenhagen")
STOP_TIMEOUT = 20  # seconds; the systemd unit allows 120
FOLDER_OF = {"accepted": "processed", "moved": "processed", "withdrawn": "processed",
             "rejected": "rejected", "quarantined": "quarantine", "ignored": "ignored",
             "duplicate": "ignored"}


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0)
    return sock


def _drain(sock: socket.socket) -> list[str]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


def test_demo_daemon_answers_mail_reports_status_and_stops_on_sigterm(tmp_path):
    data = tmp_path / "var"
    notify = _notify_socket(tmp_path / "notify.sock")
    env = environment(None, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    # --now: a Monday morning on the week's timeline, whatever day the test runs.
    proc = Proc(data, "run", env=env, log_path=tmp_path / "daemon.log", demo=True, now="2027-01-04T08:00")
    try:
        proc.wait_log(r'msg="running holder=', 60)
        proc.wait_log(rf'msg="watching folder={re.escape(str((data / "inbox").resolve()))}"', 10)
        assert (data / "inbox").is_dir(), "created at start, for the first mail to be dropped in"
        week = mails.week_one()
        start = datetime.now(TZ) - timedelta(minutes=5)  # the wall clock: run maps it onto --now
        for n, (name, raw) in enumerate(sorted(week.items())):
            drop_mail(data / "inbox", name, raw, start + timedelta(seconds=n))
        answered = [n for n, (outcome, _, _) in mails.EXPECTED.items()
                    if outcome not in ("ignored", "quarantined", "duplicate")]
        wait_for(lambda: len(outbox_kind(data, "receipt")) >= len(answered) and not eml_files(data / "inbox"),
                 30, f"{len(answered)} receipts and an empty inbox")

        proc.signal(signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0
    finally:
        proc.close()
    log = proc.log()
    assert re.search(r'msg="stopped"\s*$', log), log[-1500:]
    # The intake lines count per outcome (all arrive on Monday morning here: none moved).
    counted = Counter()
    for line in re.findall(r'msg="intake mails=\d+ ([^"]*)"', log):
        counted.update({k: int(n) for k, n in (pair.split("=") for pair in line.split())})
    expected = Counter("accepted" if o == "moved" else o for o, _, _ in mails.EXPECTED.values())
    assert counted == expected, log[-3000:]
    assert not CPR_LIKE.search(log)
    states = "\n".join(_drain(notify))
    assert "READY=1" in states and "STOPPING=1" in states

    replied_to = {str(read_mail(p)["In-Reply-To"]) for p in outbox_kind(data, "receipt")}
    assert replied_to == {f"<e{name[:2]}@mail.kommune.example>" for name in answered}
    for name, (outcome, _, _) in mails.EXPECTED.items():
        assert [f for f in FOLDERS if (data / f / f"{name}.eml.enc").exists()] == [FOLDER_OF[outcome]], name

    status = cli(data, "status", env=env, demo=True)
    assert status.returncode == 0, status.stderr
    assert re.search(r"^last intake: 2027-01-04 0[78]:\d\d$", status.stdout, re.MULTILINE), status.stdout
    assert re.search(r"^outbox: pending 0, failed 0, done [1-9]\d*$", status.stdout, re.MULTILINE), status.stdout
    assert re.search(rf"^daemon: not running \(last: \S+:{proc.pid}\)$", status.stdout, re.MULTILINE), status.stdout


def _coordinator_agendas(data: Path) -> dict[str, list[Path]]:
    """Agenda files to the coordinators, by the session date in their subject."""
    found: dict[str, list[Path]] = {}
    for path in outbox_kind(data, "agenda"):
        message = read_mail(path)
        if "koordinator" in str(message["To"]):
            found.setdefault(str(message["Subject"]), []).append(path)
    return found


def test_missed_agenda_is_sent_once_late_with_the_mail_that_waited(tmp_path):
    """Down at the deadline: ``run --once`` afterwards takes in the mail that
    arrived before the deadline, then sends the agenda once, marked late."""
    data, env = tmp_path / "var", environment(new_key())
    (tmp_path / "a.eml").write_bytes(item_mail("150303-4321", "a1"))
    ingested = cli(data, "ingest", "--eml", str(tmp_path / "a.eml"), env=env, now="2027-01-08T09:00")
    assert ingested.returncode == 0 and ingested.stdout.startswith("accepted"), ingested
    # Arrived in the mailbox before the deadline (Mon 11 Jan 12:00); nobody read it.
    drop_mail(data / "inbox", "waiting", item_mail("110698-2345", "b2", sender="ole@kommune.example"),
              datetime(2027, 1, 10, 18, 0, tzinfo=TZ), now=datetime(2027, 1, 12, 9, 0, tzinfo=TZ))

    first = cli(data, "run", "--once", env=env, now="2027-01-12T09:00")
    assert first.returncode == 0, first.stderr
    after_first = eml_files(data / "outbox")
    agendas = _coordinator_agendas(data)
    unge = [s for s in agendas if "op til og med 29" in s]
    voksne = [s for s in agendas if "30 år og ældre" in s]
    assert len(unge) == 1 and len(agendas[unge[0]]) == 1, agendas
    assert len(voksne) == 1 and len(agendas[voksne[0]]) == 1, agendas
    assert "efter fristen" in unge[0] and "14. januar 2027" in unge[0]
    body = plain_body(read_mail(agendas[unge[0]][0]))
    assert "2 af 6 tider er brugt" in body
    assert {"CPR: 150303-xxxx", "CPR: 110698-xxxx"} <= set(re.findall(r"CPR: \d{6}-xxxx", body))
    assert eml_files(data / "processed")[0].name == "waiting.eml"

    second = cli(data, "run", "--once", env=env, now="2027-01-12T09:30")
    assert second.returncode == 0, second.stderr
    assert eml_files(data / "outbox") == after_first
    assert "agenda" not in second.stderr
    for output in (ingested, first, second):
        assert not CPR_LIKE.search(output.stderr)


@pytest.fixture
def lease_db(postgres_server):
    """A database of its own: the lease row must not be shared with other tests."""
    name = f"lease_{os.getpid()}_{time.monotonic_ns()}"
    postgres_server.sql(f"CREATE DATABASE {name}")
    yield postgres_server.url(name)
    postgres_server.sql(f"DROP DATABASE {name} WITH (FORCE)")


def test_standby_takes_over_the_lease_when_the_active_instance_is_killed(tmp_path, lease_db):
    ttl, renew = 6, 2
    config = write_config(tmp_path / "sparring.toml", storage_url=lease_db)
    env = environment(new_key(), SPARRING_LEASE_TTL=str(ttl), SPARRING_LEASE_RENEW=str(renew))
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    # --now: the mails dropped just now arrive on Monday 4 January, whatever day the test runs.
    active = Proc(first_dir, "run", env=env, config=config, log_path=tmp_path / "a.log", now="2027-01-04T09:00")
    standby = None
    try:
        active.wait_log(r'msg="running holder=', 60)
        standby = Proc(second_dir, "run", env=env, config=config, log_path=tmp_path / "b.log",
                       now="2027-01-04T09:00")
        standby.wait_log(r'msg="standby', 60)
        early = drop_mail(second_dir / "inbox", "early", item_mail("150303-4321", "s1"))
        # Two more looks at the lease, still on standby: the mail must wait.
        wait_for(lambda: standby.log().count('msg="standby') >= 3, 4 * renew + 10, "two more standby rounds")
        assert early.exists() and not outbox_kind(second_dir, "receipt")
        status = cli(second_dir, "status", env=env, config=config)
        assert re.search(rf"^daemon: \S+:{active.pid} ", status.stdout, re.MULTILINE), status.stdout

        active.kill()
        killed_at = time.monotonic()
        standby.wait_log(r'msg="running holder=', ttl + renew + 30)
        assert time.monotonic() - killed_at < 60  # the promise: within a minute
        drop_mail(second_dir / "inbox", "late", item_mail("110698-2345", "s2"))
        wait_for(lambda: len(outbox_kind(second_dir, "receipt")) == 2 and not eml_files(second_dir / "inbox"),
                 30, "both mails answered by the new active instance")
        standby.signal(signal.SIGTERM)
        assert standby.wait(STOP_TIMEOUT) == 0
    finally:
        active.close()
        if standby is not None:
            standby.close()
    assert 'msg="standby' not in active.log()
    assert {p.name for p in eml_files(second_dir / "processed")} == {"early.eml", "late.eml"}
    for proc in (active, standby):
        assert not CPR_LIKE.search(proc.log())


def test_a_move_cut_short_by_a_crash_leaves_the_mail_in_one_folder(tmp_path):
    """SIGKILL between the sealed copy into processed/ and the unlink from the
    inbox leaves the mail in both; the restart sees it as a duplicate and
    must only drop the inbox copy, not file it a second time."""
    data, env = tmp_path / "var", environment(new_key())
    drop_mail(data / "inbox", "cut", item_mail("150303-4321", "c1"), datetime(2027, 1, 8, 9, 0, tzinfo=TZ),
              now=datetime(2027, 1, 8, 9, 5, tzinfo=TZ))
    assert cli(data, "run", "--once", env=env, now="2027-01-08T09:05").returncode == 0
    drop_mail(data / "inbox", "cut", item_mail("150303-4321", "c1"), datetime(2027, 1, 8, 9, 0, tzinfo=TZ))

    again = cli(data, "run", "--once", env=env, now="2027-01-08T09:10")
    assert again.returncode == 0, again.stderr
    assert [p.relative_to(data).as_posix() for f in ("inbox", *FOLDERS) for p in eml_files(data / f)] \
        == ["processed/cut.eml"]
    assert len(outbox_kind(data, "receipt")) == 1


def _said(result) -> list[str]:
    """What a command wrote on stderr, without the test's boot line."""
    return [line for line in result.stderr.splitlines() if line != IMPORTED]


def test_simulate_and_run_refuse_each_others_data_directory(tmp_path):
    """Issue 11 item 9: a simulation in the daemon's data directory marked
    agendas sent that the daemon then never sent. Each now refuses a
    directory the other wrote, with one sentence naming another."""
    live, rehearsal, env = tmp_path / "var", tmp_path / "simulation", environment(new_key())
    assert cli(live, "run", "--once", env=env, now="2027-01-04T09:00").returncode == 0
    before = eml_files(live / "outbox")
    refused = cli(live, "simulate", "--from", "2027-01-01", "--to", "2027-01-31", env=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert len(_said(refused)) == 1 and "--data-dir var/simulation" in refused.stderr, refused.stderr
    assert str(live) in refused.stderr and eml_files(live / "outbox") == before

    simulated = cli(rehearsal, "simulate", "--from", "2027-01-01", "--to", "2027-01-31", env=env)
    assert simulated.returncode == 0, simulated.stderr
    again = cli(rehearsal, "simulate", "--from", "2027-02-01", "--to", "2027-02-28", env=env)
    assert again.returncode == 0, again.stderr  # a rehearsal may be run again
    refused = cli(rehearsal, "run", "--once", env=env, now="2027-03-01T09:00")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert len(_said(refused)) == 1 and "simulate" in refused.stderr and str(rehearsal) in refused.stderr
    assert "var/simulation" in refused.stderr
