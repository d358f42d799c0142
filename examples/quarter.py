"""A quarter of the forum (2027-Q1) as mails in an inbox folder, for ``simulate``.

    python3 examples/quarter.py var/quarter      # writes var/quarter/inbox/*.eml

The README's tour of the overview page uses it, and so do the browser tests.

Caseworkers send items for the weekly series "unge" (Thursdays, 6 slots,
deadline Monday 12:00) and the monthly "voksne": on time, late (after the
deadline), acute, too many for one session (moved for capacity), a second
mail for the same citizen and session (it replaces the first), withdrawals;
the coordinator answers each agenda of January and February with decisions;
on 1 March the caseworker agrees each case so opened (``Enighed``), which
books its fællessamtale: written between the two runs of ``simulate``, as
the case references are made by sparring.
Every CPR number is fictitious and valid; each citizen has one.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Europe/Copenhagen")
FIRST, LAST = date(2027, 1, 1), date(2027, 3, 31)
SPLIT = date(2027, 2, 28)  # simulated in two runs: the cases opened by then are agreed on 1 March
PERIOD = "2027-Q1"
KAREN, OLE = "karen@kommune.example", "ole@kommune.example"
COORDINATOR = "koordinator.social@kommune.example"
THURSDAYS = [date(2027, 1, 7) + timedelta(weeks=w) for w in range(12)]
VOKSNE = [date(2027, 1, 13), date(2027, 2, 10), date(2027, 3, 10)]
DECISIONS = "1: opstart\r\n2: intet grundlag\r\n3: henvist Jobcenter Nord\r\n4: udsat - mangler papirer\r\n"


def cpr(n: int, born_year: int) -> str:
    """Citizen ``n``'s number: born on a day of ``born_year`` (2000s: 7th digit 4)."""
    day, month = 1 + n % 28, 1 + n // 28 % 12
    seventh = 4 if born_year >= 2000 else 1
    return f"{day:02d}{month:02d}{born_year % 100:02d}-{seventh}{n % 1000:03d}"


def _mail(mid: str, sender: str, subject: str, at: datetime, body: str) -> bytes:
    return (f"From: {sender}\r\nTo: sparring@kommune.example\r\nSubject: {subject}\r\n"
            f"Date: {at.strftime('%a, %d %b %Y %H:%M:%S %z')}\r\nMessage-ID: <{mid}@kommune.example>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def item(mid: str, number: str, at: datetime, acute: bool = False, sender: str = KAREN) -> bytes:
    subject = "AKUT: sparring" if acute else "Sparring"
    return _mail(mid, sender, subject, at, f"CPR: {number}\r\nHelbred: Angst.\r\nSociale udfordringer: Gæld.\r\n")


def withdrawal(mid: str, number: str, at: datetime, sender: str = KAREN) -> bytes:
    return _mail(mid, sender, "Træk tilbage", at, f"Træk venligst borgeren tilbage.\r\nCPR: {number}\r\n")


def decisions(mid: str, session: date) -> bytes:
    at = datetime.combine(session, datetime.min.time(), TZ).replace(hour=11, minute=30)
    return _mail(mid, COORDINATOR, f"Re: Dagsorden [SF unge {session.isoformat()}]", at,
                 f"Hej\r\n\r\n{DECISIONS}\r\nVenlig hilsen\r\nKoordinatoren\r\n")


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def mails() -> dict[str, bytes]:
    """The quarter's mails by file name."""
    out: dict[str, bytes] = {}
    n = 0

    def citizen(born: int) -> str:
        nonlocal n
        n += 1
        return cpr(n, born)

    for week, thursday in enumerate(THURSDAYS):
        friday = thursday - timedelta(days=6)  # before the deadline (Monday 12:00)
        count = 10 if week == 3 else 3  # week 3: more than the session holds
        numbers = [citizen(2010 if i == 2 else 2002) for i in range(count)]  # 16 or 24 on the day
        for i, number in enumerate(numbers):
            out[f"w{week:02d}-item{i}"] = item(f"w{week}i{i}", number, _at(friday, 9, i))
        if week in (0, 2, 4, 6, 8, 10):  # late: after the deadline of this week's session
            out[f"w{week:02d}-late"] = item(f"w{week}late", citizen(2001), _at(thursday - timedelta(days=2), 9))
        if week in (1, 2, 5, 7, 9):  # acute: into this week's session even after the deadline
            out[f"w{week:02d}-acute"] = item(f"w{week}acute", citizen(2003), _at(thursday - timedelta(days=1), 13),
                                             acute=True)
        if week in (4, 8):  # a second mail for the same citizen and session replaces the first
            out[f"w{week:02d}-replace"] = item(f"w{week}repl", numbers[1], _at(friday, 15))
        if week in (5, 6, 9, 10, 11):  # withdrawn before the session
            out[f"w{week:02d}-withdraw"] = withdrawal(f"w{week}wd", numbers[0], _at(friday, 16))
        if week < 8:
            out[f"w{week:02d}-decisions"] = decisions(f"w{week}dec", thursday)
    for month, wednesday in enumerate(VOKSNE):
        for i in range(2):
            out[f"v{month}-item{i}"] = item(f"v{month}i{i}", citizen(1980), _at(wednesday - timedelta(days=8), 10, i),
                                            sender=OLE)
    return out


def agreements(cases: list[tuple[str, str]]) -> dict[str, bytes]:
    """``Enighed`` on each (case id, its caseworker), 1 March."""
    return {f"agree-{case}": _mail(f"agree{case}", sender, f"Re: Koordineringsmøde [{case}]",
                                   _at(SPLIT + timedelta(days=1), 9, i), "Enighed\r\n")
            for i, (case, sender) in enumerate(cases)}


def write_inbox(data_dir: Path, named: dict[str, bytes]) -> None:
    inbox = data_dir / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for name, raw in named.items():
        (inbox / f"{name}.eml").write_bytes(raw)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 examples/quarter.py DATA_DIR   (writes DATA_DIR/inbox/*.eml)")
    write_inbox(Path(sys.argv[1]), mails())
    print(f"{len(mails())} mails of {PERIOD} in {Path(sys.argv[1]) / 'inbox'}")
