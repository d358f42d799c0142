"""Issue 5 item 7: the daemon killed with SIGKILL at random points, 50 times.

Fifty rounds over six simulated weeks (``--now`` moves 20 hours a round):
each round drops two new mails in the inbox (arrival = file mtime, inside
the round's period), starts ``run --once`` or ``run`` and kills it with
SIGKILL a seeded-random, log-uniform 5 ms to 1.5 s after its imports are
done, so kills land during publishing, intake, agenda compilation and
sending. A last ``run --once`` then runs to completion. Afterwards:

* no mail lost: every mail is in exactly one of processed/ rejected/
  quarantine/ ignored/, the folder of its decision (or ignored/ when the
  decision was committed just before a kill and the mail was then seen again
  as a duplicate), and the decisions and items in the database equal those
  of an undisturbed in-process run over the same mails;
* no item duplicated: at most one pending item per citizen and session;
* no agenda missing: every session whose agenda window (deadline to start)
  held a completed run has a coordinators' agenda, and where nothing about
  the session changed after its deadline it lists exactly its items;
* nothing sent more than twice: no outgoing message (by its Message-ID),
  no receipt per mail, no agenda per session and recipient;
* every receipt sent: each mail from an allowlisted sender that is not
  automatic has a receipt replying to it; the outbox is empty at the end.
"""

from __future__ import annotations

import math
import random
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from scheduler.clock import FixedClock
from scheduler.config import load_config
from scheduler.ports import IncomingMail
from scheduler.services.intake import Intake
from scheduler.store.keys import new_key
from scheduler.store.tables import Item, Mail, OutboxEntry
from scheduler.wiring import make_app
from tests import mails
from tests.daemonkit import (
    CONFIG,
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
    restamp,
)

# Runs sparring as processes, which read the real clock (see tests/conftest.py).
pytestmark = pytest.mark.servers
TZ = ZoneInfo("Europe/Copenhagen")
SEED = 20270104
ROUNDS = 50
PER_ROUND = 2
START = datetime(2027, 1, 4, 8, 0, tzinfo=TZ)  # a Monday, four hours before a deadline
STEP = timedelta(hours=20)
# After every back-off of a claimed entry, and inside the agenda window (deadline
# to start) of unge/2027-02-18, on which nothing changes after its deadline.
FINAL = START + ROUNDS * STEP + timedelta(hours=14)
WORKERS = [f"{n}@kommune.example" for n in ("karen.provesen", "ole.eksempelsen", "mette.testesen", "jonas.proeve")]
MONTHS = ["januar", "februar", "marts", "april", "maj", "juni", "juli", "august", "september",
          "oktober", "november", "december"]


@dataclass
class Dropped:
    name: str
    message_id: str
    raw: bytes
    received: datetime
    round: int
    answered: bool  # allowlisted and not automatic: must get a receipt


def _cpr(rng: random.Random, young: bool) -> str:
    year = rng.randint(1998, 2010) if young else rng.randint(1950, 1990)
    seventh = 4 if year >= 2000 else rng.randint(0, 3)
    return f"{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}{year % 100:02d}-{seventh}{rng.randint(0, 999):03d}"


class MailMaker:
    """A seeded stream of realistic mail: items in three encodings, acute
    items, withdrawals, resends, rejections, outsiders and automatic mail."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.young = [_cpr(rng, True) for _ in range(24)]
        self.adult = [_cpr(rng, False) for _ in range(8)]
        self.sent: list[Dropped] = []
        self.placed: list[tuple[str, str]] = []  # (sender, cpr)

    def make(self, name: str, received: datetime, round_: int) -> Dropped:
        rng, n = self.rng, len(self.sent)
        mid, date = f"f{n:03d}", format_datetime(received)
        sender = rng.choice(WORKERS)
        kind = rng.choices(["young", "adult", "acute", "withdraw", "resend", "too_long", "outsider",
                            "ooo", "bounce"], [46, 15, 4, 7, 5, 6, 6, 6, 5])[0]
        if kind == "resend" and not self.sent:
            kind = "young"
        if kind == "resend":
            earlier = rng.choice(self.sent)
            dropped = Dropped(name, earlier.message_id, earlier.raw, received, round_, False)
        elif kind in ("young", "adult", "acute"):
            cpr = rng.choice(self.young if kind != "adult" else self.adult)
            self.placed.append((sender, cpr))
            subject = "AKUT: sparring" if kind == "acute" else "Sparring"
            raw = self._item(sender, subject, date, mid, cpr)
            dropped = Dropped(name, f"<{mid}@mail.kommune.example>", raw, received, round_, True)
        elif kind == "withdraw":
            sender, cpr = rng.choice(self.placed) if self.placed else (sender, rng.choice(self.young))
            raw = mails.plain(sender, "Træk tilbage", date, mid, f"Træk venligst borgeren tilbage.\nCPR: {cpr}\n")
            dropped = Dropped(name, f"<{mid}@mail.kommune.example>", raw, received, round_, True)
        else:
            raw = self._other(kind, sender, date, mid)
            answered = kind == "too_long"
            dropped = Dropped(name, f"<{mid}@mail.kommune.example>", raw, received, round_, answered)
        self.sent.append(dropped)
        return dropped

    def _item(self, sender: str, subject: str, date: str, mid: str, cpr: str) -> bytes:
        form = self.rng.randrange(3)
        if form == 0:
            return mails.plain(sender, subject, date, mid,
                               f"CPR: {cpr}\nHelbred: Angst.\nSociale udfordringer: Gæld.\n\nVenlig hilsen\n")
        if form == 1:
            return mails.latin1_qp(sender, subject, date, mid,
                                   f"Cpr nummer {cpr}\nHelbred: Søvnbesvær.\nSociale udfordringer: Ensomhed.\n")
        return mails.outlook_html(sender, subject, date, mid, [f"CPR-nr.: {cpr}", "Helbred: Rygsmerter.",
                                                                "Sociale forhold: Ingen bolig.", "Venlig hilsen"])

    def _other(self, kind: str, sender: str, date: str, mid: str) -> bytes:
        if kind == "too_long":
            return mails.plain(sender, "Sparring", date, mid,
                               f"CPR: {self.rng.choice(self.young)}\nHelbred: 1\n2\n3\n4\nSociale udfordringer: 5\n6\n")
        if kind == "outsider":
            return mails.plain("Someone <someone@freemail.example>", "Sparring", date, mid,
                               f"CPR: {self.rng.choice(self.young)}\nHelbred: x\nSociale udfordringer: y\n")
        if kind == "ooo":
            return mails.plain(sender, "Automatisk svar: Sparringsforum", date, mid, "Jeg er på ferie.\n",
                               "Auto-Submitted: auto-replied\r\n")
        return mails.bounce(date, mid)


def _round_now(round_: int) -> datetime:
    return START + round_ * STEP


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def _plan_mail() -> list[Dropped]:
    maker = MailMaker(random.Random(SEED))
    dropped = []
    for round_ in range(1, ROUNDS + 1):
        begin = _round_now(round_ - 1)
        for i in range(PER_ROUND):
            received = begin + (i + 1) * STEP / (PER_ROUND + 1)
            dropped.append(maker.make(f"r{round_:02d}-{i}", received.replace(microsecond=0), round_))
    return dropped


# -- the undisturbed reference ------------------------------------------------


def _open_app(data_dir: Path, now: datetime):
    config = load_config(CONFIG)
    return make_app(config, FixedClock(now), data_dir)


def _reference(tmp_path: Path, dropped: list[Dropped], due: list) -> tuple[dict, list, dict]:
    """Decide every mail in arrival order, undisturbed; snapshot each due
    session's items as they stood at its deadline."""
    app = _open_app(tmp_path / "reference", START)
    intake = Intake(app)
    at_deadline: dict[str, list[str]] = {}
    pending = sorted(due, key=lambda s: s.deadline)
    for mail in dropped:
        while pending and pending[0].deadline < mail.received:
            session = pending.pop(0)
            at_deadline[session.key] = _masked_items(app, session.key)
        app.clock.set(_round_now(mail.round))
        intake.process(IncomingMail(f"{mail.name}.eml", mail.raw, mail.received.astimezone(UTC)))
    for session in pending:
        at_deadline[session.key] = _masked_items(app, session.key)
    final = {s.key: _masked_items(app, s.key) for s in due}
    unchanged = {key: items for key, items in at_deadline.items() if final[key] == items}
    return _decisions(app), _items(app), unchanged


def _masked_items(app, session_key: str) -> list[str]:
    with app.transaction() as repo:
        return sorted(v.cpr.masked for v in repo.items_of_session(session_key))


def _decisions(app) -> dict[str, tuple[str, str | None]]:
    with app.transaction() as repo:
        return {m.message_key: (m.outcome, m.reason_code) for m in repo.db.scalars(select(Mail))}


def _items(app) -> list[tuple]:
    with app.transaction() as repo:
        views = [repo.item(i) for i in repo.db.scalars(select(Item.id))]
    return sorted((v.cpr.digits, v.session_key, v.status, v.acute, v.sender, _minute(v.received_at), v.health,
                   v.social) for v in views)


def _minute(moment: datetime) -> datetime:
    """Arrivals are whole minutes; a process reads its mtimes a second or so
    early (its clock starts a moment after the test stamped them)."""
    return (moment + timedelta(seconds=30)).replace(second=0, microsecond=0)


# -- reading the results ------------------------------------------------------


def _session_of(subject: str) -> str:
    """``unge/2027-01-14`` from a Danish agenda subject."""
    series = "unge" if "op til og med 29" in subject else "voksne"
    day, month, year = re.search(r"den (\d+)\. (\w+) (\d{4})", subject).groups()
    return f"{series}/{year}-{MONTHS.index(month) + 1:02d}-{int(day):02d}"


def _agendas(data: Path) -> dict[tuple[str, str], list[Path]]:
    found: dict[tuple[str, str], list[Path]] = {}
    for path in outbox_kind(data, "agenda"):
        message = read_mail(path)
        found.setdefault((_session_of(str(message["Subject"])), str(message["To"])), []).append(path)
    return found


def _pending_outbox(db: Path) -> int:
    """Outbox entries left undelivered (0 before the first run made the database)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
    except sqlite3.OperationalError:  # killed before the schema was committed
        return 0
    finally:
        conn.close()


def _run_round(data: Path, env: dict, log: Path, now: datetime, mode: tuple[str, ...], delay: float) -> int:
    proc = Proc(data, *mode, env=env, log_path=log, now=_iso(now))
    try:
        proc.wait_log(re.escape(IMPORTED), 60)
        time.sleep(delay)  # the injected fault's timing, not an assertion
        return proc.kill()
    finally:
        proc.close()


def _restamp_waiting(data: Path, dropped: list[Dropped], now: datetime) -> None:
    """The mails in the inbox arrived at their ``received`` time on the
    simulated timeline; ``--now`` reads file mtimes as wall-clock times, so
    each round's process gets them stamped for its own ``--now`` (rounds
    are 20 simulated hours apart, but only seconds on the wall clock)."""
    waiting = {p.name for p in eml_files(data / "inbox")}
    for mail in dropped:
        if f"{mail.name}.eml" in waiting:
            restamp(data / "inbox" / f"{mail.name}.eml", mail.received, now)


def _inject(data: Path, env: dict, log: Path, dropped: list[Dropped]) -> tuple[list, list[datetime]]:
    """The fifty rounds; returns (mode, exit code, mails left, outbox left)
    per round and the --now of every run that completed."""
    rng = random.Random(SEED)
    results, completed_at = [], []
    for round_ in range(1, ROUNDS + 1):
        for mail in (m for m in dropped if m.round == round_):
            drop_mail(data / "inbox", mail.name, mail.raw)
        _restamp_waiting(data, dropped, _round_now(round_))
        mode = ("run",) if rng.random() < 0.3 else ("run", "--once")
        delay = 0.005 * math.exp(rng.random() * math.log(1.5 / 0.005))  # log-uniform 5 ms - 1.5 s
        rc = _run_round(data, env, log, _round_now(round_), mode, delay)
        if rc == 0 and mode == ("run", "--once"):
            completed_at.append(_round_now(round_))
        results.append((mode, rc, len(eml_files(data / "inbox")), _pending_outbox(data / "sparring.db")))
    for _ in range(10):  # a killed holder's lease lapses after its TTL
        _restamp_waiting(data, dropped, FINAL)
        final = cli(data, "run", "--once", env=env, now=_iso(FINAL))
        if final.returncode != 1 or "holds the lease" not in final.stderr:
            break
        time.sleep(0.5)
    assert final.returncode == 0, final.stderr
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(final.stderr)
    return results, [*completed_at, FINAL]


def _check_mail(app, data: Path, dropped: list[Dropped], expected: dict) -> None:
    """No mail lost: each in exactly one folder, the one of its decision."""
    assert not eml_files(data / "inbox")
    decisions = _decisions(app)
    assert decisions == expected
    folder_of = {"accepted": "processed", "moved": "processed", "withdrawn": "processed",
                 "rejected": "rejected", "quarantined": "quarantine", "ignored": "ignored"}
    first_of: dict[str, str] = {}
    for mail in dropped:
        places = [f for f in FOLDERS for p in eml_files(data / f)
                  if re.fullmatch(rf"{mail.name}(-\d+)?\.eml", p.name)]
        assert len(places) == 1, (mail.name, places)
        mine = app.cipher.lookup_hash(mail.message_id.strip("<>"), purpose="message-id")
        first = first_of.setdefault(mine, mail.name) == mail.name  # later ones are resends
        decided = folder_of[decisions[mine][0]] if first else "ignored"
        assert places[0] in (decided, "ignored"), (mail.name, places, decisions[mine])


def _check_agendas(data: Path, sessions: list, completed_at: list[datetime], unchanged: dict) -> None:
    """No agenda missing, and the right items on them. (An acute item after
    the deadline sends an updated agenda besides: never in sessions left
    unchanged after their deadline.)"""
    coordinators = {s: paths for (s, to), paths in _agendas(data).items() if "koordinator" in to}
    assert set(coordinators) <= {s.key for s in sessions}
    must = {s.key for s in sessions if any(s.deadline <= now < s.start for now in completed_at)}
    assert must and must <= set(coordinators), sorted(must - set(coordinators))
    checked = []
    for key, paths in coordinators.items():
        if key in unchanged:
            assert len(paths) <= 2, key
            for path in paths:
                listed = sorted(re.findall(r"CPR: (\d{6}-xxxx)", plain_body(read_mail(path))))
                assert listed == unchanged[key], key
            checked.append(key)
    assert "unge/2027-02-18" in checked, (checked, sorted(unchanged))


def _check_sending(app, data: Path, dropped: list[Dropped]) -> None:
    """Every receipt sent; no outgoing message (a resend is the same message,
    Message-ID and all) more than twice; the outbox delivered."""
    sent = [read_mail(p) for p in eml_files(data / "outbox")]
    assert max(Counter(str(m["Message-ID"]) for m in sent).values()) <= 2
    receipts = Counter(str(m["In-Reply-To"]) for m in sent if m["In-Reply-To"])
    assert max(receipts.values()) <= 2
    assert {m.message_id for m in dropped if m.answered} <= set(receipts)
    with app.transaction() as repo:
        statuses = Counter(repo.db.scalars(select(OutboxEntry.status)))
    assert set(statuses) == {"done"}, statuses


def test_sigkill_fifty_times_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    key = new_key()
    monkeypatch.setenv("SPARRING_SECRET_KEY", key)
    env = environment(key, SPARRING_LEASE_TTL="0.6", SPARRING_LEASE_RENEW="0.25")
    data, log = tmp_path / "var", tmp_path / "daemon.log"
    dropped = _plan_mail()
    results, completed_at = _inject(data, env, log, dropped)

    killed = [r for r in results if r[1] == -9]
    print(f"rounds (mode, exit): {Counter(r[:2] for r in results)}")
    assert len(killed) >= 25, results
    assert any(left for _, _, left, _ in killed), "no kill interrupted an intake"
    assert any(pending for _, _, _, pending in killed), "no kill interrupted the sending"
    assert not CPR_LIKE.search(log.read_text(encoding="utf-8"))

    app = _open_app(data, FINAL)
    sessions = [s for s in app.planner.sessions(START.date(), FINAL.date() + timedelta(days=7))
                if s.planned and START < s.deadline <= FINAL]
    expected_decisions, expected_items, unchanged = _reference(tmp_path, dropped, sessions)
    _check_mail(app, data, dropped, expected_decisions)
    items = _items(app)
    assert items == expected_items  # decided exactly as undisturbed
    pending = Counter((digits, session) for digits, session, status, *_ in items if status == "pending")
    assert max(pending.values()) == 1  # no item duplicated
    _check_agendas(data, sessions, completed_at, unchanged)
    _check_sending(app, data, dropped)
