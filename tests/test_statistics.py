"""Issue 16: the forum's statistics after a simulated quarter, before and after the purge.

A quarter of mails goes through ``simulate`` (items of all three age groups,
acute ones, late ones, too many for a session, a replacement, a withdrawal,
the coordinators' decisions by reply). The test counts what it expects on
its own, from the database rows and the CPR numbers it sent, and compares.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from email.utils import format_datetime
from statistics import median

import pytest
import time_machine
from sqlalchemy import select

from scheduler.cli import main
from scheduler.config import load_config
from scheduler.mail.folder import FolderSource
from scheduler.planning.allocation import age_on
from scheduler.cpr import parse_cpr
from scheduler.planning.statistics import MEASURES, Period
from scheduler.services import access, deadlines, statistics
from scheduler.services.retention import purge
from scheduler.services.simulate import simulate
from scheduler.store.tables import Case, CaseMeeting, Decision, Item, Mail, StatCount
from tests.appkit import CONFIG, TZ, at, build, ingest

KAREN = "karen@kommune.example"
COORDINATOR = "koordinator.social@kommune.example"
Q1 = Period.parse("2027-Q1")
THURSDAYS = [date(2027, 1, 14) + timedelta(weeks=w) for w in range(11)]  # unge sessions, 14 Jan .. 25 Mar


def cpr(n: int, born: int) -> str:
    """A valid, fictitious CPR number: citizen ``n`` born in ``born``."""
    digit = 4 if born >= 2000 else 1
    return f"{1 + n % 28:02d}{1 + n // 28 % 12:02d}{born % 100:02d}-{digit}{n:03d}"


def item(number: str, mid: str, subject: str = "Sparring") -> bytes:
    return (f"From: {KAREN}\r\nTo: sparring@kommune.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{mid}@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"CPR: {number}\r\nHelbred: Angst.\r\nSociale udfordringer: Gæld.\r\n").encode()


def reply(day: date, text: str, mid: str) -> bytes:
    return (f"From: {COORDINATOR}\r\nTo: sparring@kommune.example\r\n"
            f"Subject: Re: Dagsorden [SF unge {day.isoformat()}]\r\nMessage-ID: <{mid}@kommune.example>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n").encode()


class Mailbox:
    """The quarter's mails, dropped into the inbox dated at their arrival."""

    def __init__(self, inbox) -> None:
        self.inbox, self.cprs, self.n = inbox, [], 0

    def drop(self, raw: bytes, arrival: datetime) -> None:
        self.n += 1
        path = self.inbox / f"{self.n:04d}.eml"
        path.write_bytes(f"Date: {format_datetime(arrival)}\r\n".encode() + raw)  # simulate's arrival

    def citizen(self, born: int) -> str:
        number = cpr(len(self.cprs), born)
        self.cprs.append(number)
        return number


def quarter(inbox) -> list[str]:
    """The mails of the first quarter of 2027; returns every CPR number sent."""
    box = Mailbox(inbox)
    for week, thursday in enumerate(THURSDAYS):
        monday = datetime.combine(thursday - timedelta(days=3), datetime.min.time(), TZ)
        births = [2010, 2004, 2001, 2009, 1998] + ([2003, 2005, 2000] if week % 3 == 0 else [])  # 3 extra: full
        for n, born in enumerate(births):
            subject = "Akut sparring" if week % 2 and n == 0 else "Sparring"
            box.drop(item(box.citizen(born), f"w{week}i{n}", subject), monday + timedelta(hours=8, minutes=n))
        box.drop(item(box.citizen(2002), f"w{week}late"), monday + timedelta(hours=13))  # after the deadline
        if week % 2 == 0:  # the adults' series, monthly
            box.drop(item(box.citizen(1980), f"w{week}adult"), monday + timedelta(hours=9))
        box.drop(reply(thursday, "1: opstart\r\n2: intet grundlag\r\n3: udsat\r\n4: henvist Jobcenter Nord",
                       f"w{week}dec"), monday + timedelta(days=3, hours=11, minutes=30))
    again = box.cprs[1]  # sent anew before the deadline: replaces the first
    box.drop(item(again, "again"), datetime(2027, 1, 11, 10, 0, tzinfo=TZ))
    gone = box.cprs[6 + 8 * 1]  # withdrawn the day after it came
    box.drop(item(gone, "gone", "Træk tilbage"), datetime(2027, 1, 26, 9, 0, tzinfo=TZ))
    return box.cprs


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """(app, numbers sent) after ``simulate`` over the quarter."""
    tmp_path = tmp_path_factory.mktemp("quarter")
    monkeypatch = pytest.MonkeyPatch()
    app, dispatcher = build(tmp_path, "2027-01-01T00:00", monkeypatch, config=load_config(CONFIG))
    (tmp_path / "inbox").mkdir()
    numbers = quarter(tmp_path / "inbox")
    simulate(app, dispatcher, date(2027, 1, 1), date(2027, 3, 31),
             FolderSource(tmp_path / "inbox", cipher=app.cipher, durable=False))
    yield app, numbers, tmp_path
    monkeypatch.undo()


# -- what the test expects, counted on its own ---------------------------------------------


def group_of(birth: date, day: date) -> str:
    age = age_on(birth, day)
    return "0-14" if age < 15 else "15-17" if age < 18 else "18-29" if age < 30 else "30+"


def expected(app, numbers: list[str]) -> dict[tuple[str, str], object]:
    """(measure, group or "total") -> count or list of waiting days, for the sessions of Q1."""
    births = {app.cipher.lookup_hash(n.replace("-", ""), purpose="cpr"): parse_cpr(n, date.max).birth_date
              for n in numbers}
    counts: Counter = Counter()
    waits: dict[tuple[str, str], list[float]] = defaultdict(list)

    def add(measure, birth, day, value=None):
        for where in (group_of(birth, day), "total"):
            if value is None:
                counts[(measure, where)] += 1
            else:
                waits[(measure, where)].append(value)

    with app.transaction() as repo:
        items = repo.db.execute(select(Item, Mail.reason_code).join(Mail, Mail.id == Item.mail_id)).all()
        decisions = repo.db.scalars(select(Decision).order_by(Decision.decided_at, Decision.id)).all()
        cases = repo.db.scalars(select(Case)).all()
        meetings = repo.db.scalars(select(CaseMeeting)).all()
    citizens = defaultdict(list)
    for row, reason in items:
        citizens[(row.session_key, row.cpr_hash)].append((row, reason))
    for (_, who), rows in citizens.items():
        day = rows[0][0].session_start.astimezone(TZ).date()
        if day not in Q1:
            continue
        statuses = {r.status for r, _ in rows}
        if "pending" in statuses:
            add("brought", births[who], day)
            if any(r.acute for r, _ in rows if r.status == "pending"):
                add("acute", births[who], day)
            arrival = min(r.received_at for r, _ in rows if r.status in ("pending", "replaced"))
            add("wait_arrival_session", births[who], day, (day - arrival.astimezone(TZ).date()).days)
        elif "withdrawn" in statuses:
            add("withdrawn", births[who], day)
        for reason, measure in (("moved_full", "moved_capacity"), ("moved_late", "late")):
            if reason in {m for _, m in rows}:
                add(measure, births[who], day)
    latest = {(d.session_key, d.slot): d for d in decisions}  # ordered: the last one stays
    for d in latest.values():
        day = d.session_start.astimezone(TZ).date()
        if day in Q1:
            add(f"decision:{d.decision}", births[d.cpr_hash], day)
            if d.decision == "postponed":
                add("brought", births[d.cpr_hash], day)
    for case in cases:
        day = case.session_start.astimezone(TZ).date()
        for kind, measure in (("coordination", "wait_decision_coordination"), ("joint", "wait_decision_joint")):
            starts = [m.start for m in meetings if m.case_id == case.id and m.kind == kind
                      and m.status in ("booked", "held") and m.start]
            if day in Q1 and starts:
                add(measure, births[case.cpr_hash], day,
                    (min(starts).astimezone(TZ).date() - case.opened_at.astimezone(TZ).date()).days)
    return {**counts, **{k: (median(v) if len(v) >= 5 else None) for k, v in waits.items()}}


def numbers_of(table) -> dict[tuple[str, str], object]:
    found = {}
    for row in table.rows:
        for where, value in [*row.by_group.items(), ("total", row.total)]:
            if value:  # 0 and None are what the expectation leaves out
                found[(row.measure, where)] = value
    return found


# -- the tests ---------------------------------------------------------------------------------


def test_the_quarter_has_every_kind_of_number(simulated):
    app, _, _ = simulated
    table = statistics.table(app, Q1)
    totals = {row.measure: row.total for row in table.rows}
    for measure in ("brought", "acute", "moved_capacity", "late", "withdrawn", "decision:start",
                    "decision:no-basis", "decision:postponed", "decision:referred"):
        assert totals[measure], measure
    assert totals["brought"] > 40
    assert totals["wait_arrival_session"] is not None and totals["wait_decision_coordination"] is not None
    assert totals["wait_decision_joint"] is None  # no Enighed this quarter
    assert {row.measure for row in table.rows} == set(MEASURES)


def test_the_numbers_equal_those_counted_from_the_rows(simulated):
    app, numbers, _ = simulated
    table = statistics.table(app, Q1)
    want = {k: v for k, v in expected(app, numbers).items() if v}
    assert numbers_of(table) == want


def test_one_series_and_the_other_add_up_to_all(simulated):
    app, _, _ = simulated
    young, adults = statistics.table(app, Q1, "unge"), statistics.table(app, Q1, "voksne")
    for measure in ("brought", "late", "decision:start"):
        assert young.row(measure).total + adults.row(measure).total == statistics.table(app, Q1).row(measure).total
    assert adults.row("brought").by_group["30+"] and not young.row("brought").by_group["30+"]


def test_purge_and_erasure_leave_the_numbers_as_they_were(simulated):
    app, numbers, tmp_path = simulated
    before = statistics.table(app, Q1)
    access.erase(app, numbers[3])  # before its retention: its counts are folded, not lost
    assert statistics.table(app, Q1) == before
    app.clock.set(at("2027-12-31T12:00"))
    purge(app)
    with app.transaction() as repo:
        assert repo.db.scalar(select(Item.id).limit(1)) is None, "the items went"
        assert repo.db.scalar(select(Decision.id).where(Decision.case_id.is_(None)).limit(1)) is None
        assert repo.db.scalar(select(StatCount.id).limit(1)) is not None
        columns = set(StatCount.__table__.columns.keys())
    assert columns == {"id", "series_id", "session_date", "age_group", "measure", "value", "count"}
    assert statistics.table(app, Q1) == before
    purge(app)  # again: nothing folded twice
    assert statistics.table(app, Q1) == before


def test_an_erased_citizens_coming_item_counts_as_withdrawn_not_brought(tmp_path, monkeypatch):
    """Erased before its session, the item never reaches the agenda: the session's
    numbers say withdrawn, as they would had it been withdrawn, not brought."""
    app, _ = build(tmp_path, "2027-01-04T09:00", monkeypatch)
    numbers = [cpr(n, born) for n, born in enumerate((2004, 2010, 1998))]
    for n, number in enumerate(numbers):
        ingest(app, item(number, f"e{n}"), f"2027-01-04T09:0{n}")
    january = Period.parse("2027-01")
    before = statistics.table(app, january)
    assert (before.row("brought").total, before.row("withdrawn").total) == (3, 0)
    access.erase(app, numbers[1])  # the session of 7 January is three days ahead
    after = statistics.table(app, january)
    assert (after.row("brought").total, after.row("withdrawn").total) == (2, 1)
    assert after.row("brought").by_group["15-17"] == 0 and after.row("withdrawn").by_group["15-17"] == 1


def test_the_cli_prints_the_quarter_of_now_and_its_csv_suppressed(simulated, capsys):
    app, _, tmp_path = simulated
    args = ["--config", str(CONFIG), "--data-dir", str(tmp_path), "--now", "2027-02-10T09:00"]
    with time_machine.travel(datetime(2031, 5, 5, 3, 0, tzinfo=TZ), tick=False):  # the wall clock: never today
        assert main([*args, "statistics", "--csv", "--lang", "en"]) == 0
        out = capsys.readouterr().out
        assert main([*args, "statistics", "--series", "unge"]) == 0
        text = capsys.readouterr().out
    table = statistics.table(app, Q1)
    assert out == table.csv("en")
    rows = [line.split(",") for line in out.splitlines()]
    assert rows[0] == ["Measure", "15-17", "18-29", "30+", "Total"]
    acute = next(r for r in rows if r[0] == "Acute")
    row = table.row("acute")
    assert acute[1:] == [("<5" if 0 < n < 5 else str(n))
                         for n in (*(row.by_group[g] for g in ("15-17", "18-29", "30+")), row.total)]
    assert "<5" in out
    joint = next(r for r in rows if r[0].startswith("Median days from decision to fællessamtale"))
    assert joint[1:] == ["", "", "", ""]
    assert text.startswith("2027-Q1 (2027-01-01 - 2027-03-31), unge")
    assert "Sager bragt på et møde" in text and not any(n.replace("-", "") in text for n in simulated[1])


@pytest.mark.parametrize("period", ["2027-Q5", "27-03", "januar"])
def test_a_bad_period_is_one_sentence_and_exit_2(simulated, capsys, period):
    _, _, tmp_path = simulated
    code = main(["--config", str(CONFIG), "--data-dir", str(tmp_path), "--now", "2027-02-10T09:00",
                 "statistics", "--period", period])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "2027-Q1" in err and period in err and "Traceback" not in err


def test_a_corrected_decision_counts_as_corrected_after_its_first_row_outlives_the_second(tmp_path, monkeypatch):
    """``opstart`` corrected to ``intet grundlag``: the closed case keeps the
    first row longer than the second; the slot still counts as corrected."""
    _corrected_then_purged(tmp_path, monkeypatch)


@pytest.mark.servers
def test_the_fold_and_the_table_on_postgresql(tmp_path, monkeypatch, postgres_server):
    name = f"stats{os.getpid()}"
    postgres_server.sql(f"CREATE DATABASE {name}")
    try:
        app = _corrected_then_purged(tmp_path, monkeypatch, postgres_server.url(name))
        app.engine.dispose()
    finally:
        postgres_server.sql(f"DROP DATABASE {name} WITH (FORCE)")


def _corrected_then_purged(tmp_path, monkeypatch, db_url=None):
    config = load_config(CONFIG)
    config = config.model_copy(update={"followup": config.followup.model_copy(update={"retention_days": 365})})
    app, dispatcher = build(tmp_path, "2027-01-08T08:00", monkeypatch, config=config, db_url=db_url)
    ingest(app, item(cpr(0, 2004), "one"), "2027-01-08T09:00")
    app.clock.set(at("2027-01-11T12:00"))
    assert deadlines.send_agenda(app, "unge/2027-01-14")
    for text, mid, now in (("1: opstart", "first", "2027-01-14T11:30"),
                           ("1: intet grundlag", "second", "2027-01-14T12:00")):
        assert ingest(app, reply(date(2027, 1, 14), text, mid), now).outcome == "accepted"
        dispatcher.run_once(limit=100)

    def decided():
        table = statistics.table(app, Q1)
        return {kind: table.row(f"decision:{kind}").total for kind in ("start", "no-basis")}

    assert decided() == {"start": 0, "no-basis": 1}
    app.clock.set(at("2027-03-20T12:00"))
    purge(app)
    with app.transaction() as repo:
        assert [d.decision for d in repo.db.scalars(select(Decision))] == ["start"], "the case keeps its row"
    assert decided() == {"start": 0, "no-basis": 1}
    return app
