"""Benchmark of the slot finder (issue 6, item 7): ``python -m bench.slots``.

150 participants with seeded, realistic calendars over six months (3-6
meetings of 30-60 minutes a working day between 08:00 and 16:30, a tentative
one now and then, a week or two out of office, an all-day event here and
there), a 15-minute grid and a one-hour meeting, in two scenarios (see
``SCENARIOS``). Prints the core's median time to the best five slots, the
brute-force reference's time for the same answer, their ratio, and whether
the answers agree.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time as clock
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduler.model import BusyInterval, BusyKind
from scheduler.planning import slots_reference
from scheduler.planning.closures import AnnualClosure, ClosedDays
from scheduler.planning.slots import SlotRequest, find_slots

TZ = ZoneInfo("Europe/Copenhagen")
CLOSED = ClosedDays(
    annual=(AnnualClosure(12, 24, "Juleaftensdag"), AnnualClosure(5, 1, "1. maj", time(12)))
)
FIRST, LAST = date(2025, 1, 6), date(2025, 7, 4)  # winter and summer time, Easter, 1 May
TARGET_MS, TARGET_RATIO = 50.0, 20.0


def person_calendar(rng: random.Random) -> list[BusyInterval]:
    """One person's busy time, in date order as a backend returns it."""
    out: list[BusyInterval] = []
    holiday = FIRST + timedelta(days=rng.randrange((LAST - FIRST).days))
    away = range(holiday.toordinal(), holiday.toordinal() + rng.choice((5, 7, 14)))
    day = FIRST
    while day <= LAST:
        if day.weekday() < 5:
            if day.toordinal() == away.start:
                start = datetime.combine(day, time(0), tzinfo=TZ)
                end = start + timedelta(days=len(away))
                out.append(BusyInterval(start, end, BusyKind.OUT_OF_OFFICE))
            elif day.toordinal() not in away:
                out.extend(_working_day(rng, day))
        day += timedelta(days=1)
    return out


def _working_day(rng: random.Random, day: date) -> list[BusyInterval]:
    if rng.random() < 0.02:  # course, conference: the whole day
        start = datetime.combine(day, time(8), tzinfo=TZ)
        return [BusyInterval(start, start + timedelta(hours=8))]
    # 08:00-16:30 on the quarter hour
    quarters = sorted(rng.sample(range(32, 66), rng.randint(3, 6)))
    out, free_from = [], 0
    for q in quarters:
        q = max(q, free_from)
        length = rng.choice((2, 2, 3, 4))  # 30 to 60 minutes
        start = datetime.combine(day, time(q // 4, q % 4 * 15), tzinfo=TZ)
        kind = BusyKind.TENTATIVE if rng.random() < 0.1 else BusyKind.BUSY
        out.append(BusyInterval(start, start + timedelta(minutes=15 * length), kind))
        free_from = q + length
    return out


def build_request(seed: int, participants: int = 150, required: int = 5) -> SlotRequest:
    rng = random.Random(seed)
    people = [f"medarbejder{i:03d}@kommune.dk" for i in range(participants)]
    return SlotRequest(
        window_start=datetime.combine(FIRST, time(0), tzinfo=TZ),
        window_end=datetime.combine(LAST, time(23, 59), tzinfo=TZ),
        duration=timedelta(hours=1),
        required=tuple(people[:required]),
        optional=tuple(people[required:]),
        busy={p: person_calendar(rng) for p in people},
    )


def timed(fn, runs: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        began = clock.perf_counter()
        result = fn()
        times.append(clock.perf_counter() - began)
    return times, result


SCENARIOS = (  # (name, required people); the other participants are optional
    ("typical", 3),  # a network or coordination meeting: a slot within days
    ("hard", 6),  # common free hours are rare: months are swept to the first slot
)


def run(name: str, req: SlotRequest, runs: int) -> None:
    core_times, core = timed(lambda: find_slots(req, CLOSED, TZ, 5), runs)
    ref_times, ref = timed(lambda: slots_reference.find_slots(req, CLOSED, TZ, 5), 1)
    core_ms, ref_ms = statistics.median(core_times) * 1000, ref_times[0] * 1000
    spread = SlotRequest(**{**req.__dict__, "strategy": "spread"})
    spread_ms = statistics.median(timed(lambda: find_slots(spread, CLOSED, TZ, 5), 5)[0]) * 1000
    best = f"{core[0].start.isoformat()}, {core[0].optional_free} optional free" if core else "none"
    print(f"[{name}] {len(req.required)} required + {len(req.optional)} optional; "
          f"{len(core)} slots found, best {best}")
    print(f"  core:      {core_ms:8.1f} ms  median of {runs}  (target < {TARGET_MS:.0f} ms)")
    print(f"  reference: {ref_ms:8.1f} ms  1 run")
    print(f"  ratio:     {ref_ms / core_ms:8.1f} x  (target >= {TARGET_RATIO:.0f} x)")
    agree = "yes" if core == ref else "NO"
    print(f"  answers equal: {agree}; spread strategy: {spread_ms:.1f} ms median")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.slots", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--runs", type=int, default=15, help="core runs; the median is reported")
    args = parser.parse_args()
    print(f"slots: 150 participants, {FIRST}..{LAST}, 15-minute grid, 09:00-15:00, "
          "60-minute meeting, best 5 (earliest strategy)")
    for name, required in SCENARIOS:
        req = build_request(args.seed, required=required)
        if name == SCENARIOS[0][0]:
            count = sum(len(v) for v in req.busy.values())
            print(f"calendars: {count} busy intervals (seed {args.seed})")
        run(name, req, args.runs)


if __name__ == "__main__":
    main()
