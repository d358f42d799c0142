"""The forum's statistics as numbers: periods, age groups, measures, suppression.

Pure: the services count (live rows and stored aggregates) and hand the counts to
:class:`StatisticsTable`, which the web page, the CSV download and ``sparring statistics``
all render through :meth:`StatisticsTable.cells`, so the CSV equals the table by construction.
Small counts are suppressed so that no citizen can be singled out.
"""

from __future__ import annotations

import calendar
import csv
import re
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

AGE_GROUPS = ("15-17", "18-29", "30+")
CHILD_GROUP = "0-14"  # only where a series allows under-15s; shown only when non-zero
TOTAL = "total"

DECISION_KINDS = ("start", "no-basis", "postponed", "referred")
COUNTS = ("brought", "acute", "moved_capacity", "late", "withdrawn")
MEDIANS = ("wait_arrival_session", "wait_decision_coordination", "wait_decision_joint")
MEASURES = COUNTS + tuple(f"decision:{kind}" for kind in DECISION_KINDS) + MEDIANS

MIN_SHOWN = 5  # counts 1..4 are "<5"; a median over fewer values is not shown


def age_group(birth: date, on: date) -> str:
    """The citizen's age group on ``on`` (the session's date)."""
    age = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if age < 15:
        return CHILD_GROUP
    if age < 18:
        return AGE_GROUPS[0]
    return AGE_GROUPS[1] if age < 30 else AGE_GROUPS[2]


def suppress(count: int) -> str:
    """A count as shown: 0 stays 0, 1..4 become "<5"."""
    return "<5" if 0 < count < MIN_SHOWN else str(count)


HIDDEN = ".."  # a count hidden only so that a "<5" in its row cannot be worked out from the total


def suppress_row(by_group: Mapping[str, int], total: int) -> tuple[dict[str, str], str]:
    """A row of counts as shown: counts 1..4 are "<5" (primary suppression);
    should the total and the other cells still pin one of those down, the
    smallest other counts are hidden too (secondary suppression, as
    statistics offices do), and the total when nothing else is left."""
    shown = {group: suppress(count) for group, count in by_group.items()}
    small = [group for group, count in by_group.items() if 0 < count < MIN_SHOWN]
    if not small:
        return shown, suppress(total)
    if total < MIN_SHOWN:  # "<5" in total too: four cells "<5" would each be 1
        undetermined = _undetermined(by_group, (1, MIN_SHOWN - 1), set(small), small)
        return shown, suppress(total) if undetermined else HIDDEN
    hidden = set(small)
    others = sorted((count, group) for group, count in by_group.items() if count >= MIN_SHOWN)
    while not _undetermined(by_group, (total, total), hidden, small):
        if not others:
            return shown, HIDDEN
        count, group = others.pop(0)
        hidden.add(group)
        shown[group] = HIDDEN
    return shown, str(total)


def _undetermined(by_group: Mapping[str, int], total: tuple[int, int], hidden: set[str], small: list[str]) -> bool:
    """Whether each small count can still take two values or more, given the
    shown counts and the total (a range when it shows as "<5"): the hidden
    counts add up to what is left, a small one lies in 1..4 and a hidden
    larger one in 5..the total."""
    shown = sum(count for group, count in by_group.items() if group not in hidden)
    left_low, left_high = total[0] - shown, total[1] - shown
    bounds = {group: (1, MIN_SHOWN - 1) if group in small else (MIN_SHOWN, total[1]) for group in hidden}
    low, high = sum(lo for lo, _ in bounds.values()), sum(hi for _, hi in bounds.values())
    for group in small:
        lo, hi = bounds[group]
        least = max(lo, left_low - (high - hi))
        most = min(hi, left_high - (low - lo))
        if most <= least:
            return False
    return True


def median_shown(values: Iterable[float]) -> float | None:
    """The median, or None over fewer than five values."""
    values = list(values)
    return float(statistics.median(values)) if len(values) >= MIN_SHOWN else None


# ASCII digits only: "\d" takes "２０２７" too, which then reaches the CSV's file name header.
_QUARTER = re.compile(r"([0-9]{4})-Q([1-4])")
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_YEAR = re.compile(r"([0-9]{4})")


YEARS = range(1900, 3000)  # a session's year, with room around it for date arithmetic


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


@dataclass(frozen=True)
class Period:
    """A stretch of session dates: a quarter, a month or a year, both ends included."""

    label: str
    first: date
    last: date

    @classmethod
    def parse(cls, text: str) -> Period:
        text = text.strip()
        if (m := _YEAR.match(text)) and int(m[1]) not in YEARS:
            raise ValueError(f"The period {text!r} is outside the years {YEARS[0]} to {YEARS[-1]}.")
        if m := _QUARTER.fullmatch(text):
            year, quarter = int(m[1]), int(m[2])
            return cls(text, date(year, 3 * quarter - 2, 1), _month_end(year, 3 * quarter))
        if m := _MONTH.fullmatch(text):
            year, month = int(m[1]), int(m[2])
            return cls(text, date(year, month, 1), _month_end(year, month))
        if m := _YEAR.fullmatch(text):
            return cls(text, date(int(m[1]), 1, 1), date(int(m[1]), 12, 31))
        raise ValueError(f"The period {text!r} is not a quarter (2027-Q1), a month (2027-03) or a year (2027).")

    @classmethod
    def containing(cls, day: date) -> Period:
        """The quarter holding ``day``."""
        return cls.parse(f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}")

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last


Value = int | float | None


@dataclass(frozen=True)
class StatRow:
    measure: str
    by_group: dict[str, Value]
    total: Value


def _shown_row(row: StatRow, groups: tuple[str, ...]) -> list[str]:
    """The row's cells after its label: the groups, then the total."""
    if row.measure in MEDIANS:  # a median cannot be worked back from the others
        values = [*(row.by_group.get(group) for group in groups), row.total]
        return ["" if value is None else f"{value:.1f}" for value in values]
    shown, total = suppress_row({group: int(row.by_group.get(group) or 0) for group in groups}, int(row.total or 0))
    return [*(shown[group] for group in groups), total]


@dataclass(frozen=True)
class StatisticsTable:
    """One period's numbers (unsuppressed); ``cells`` is what anyone is shown."""

    period: Period
    rows: list[StatRow] = field(default_factory=list)

    @property
    def groups(self) -> tuple[str, ...]:
        child = any(row.by_group.get(CHILD_GROUP) for row in self.rows)
        return ((CHILD_GROUP,) if child else ()) + AGE_GROUPS

    def row(self, measure: str) -> StatRow:
        return next(row for row in self.rows if row.measure == measure)

    def cells(self, language: str, labels: Callable[[str], Mapping[str, str]] | None = None) -> list[list[str]]:
        """Header row and one row per measure, suppressed, labels in ``language``."""
        names = (labels or measure_labels)(language)
        groups = self.groups
        header = [names["measure"], *groups, names[TOTAL]]
        body = [[names.get(row.measure, row.measure), *_shown_row(row, groups)] for row in self.rows]
        return [header, *body]

    def csv(self, language: str, labels: Callable[[str], Mapping[str, str]] | None = None) -> str:
        out = _Text()
        csv.writer(out, lineterminator="\r\n").writerows(self.cells(language, labels))
        return "".join(out)


class _Text(list):
    """What ``csv.writer`` writes to, without an I/O module in the core."""

    write = list.append


_LABELS = {
    "da": {
        "measure": "Mål", TOTAL: "I alt",
        "brought": "Sager bragt på et møde", "acute": "Akutte", "moved_capacity": "Flyttet (fuldt møde)",
        "late": "For sent (flyttet)", "withdrawn": "Trukket tilbage",
        "decision:start": "Afgørelse: opstart", "decision:no-basis": "Afgørelse: intet grundlag",
        "decision:postponed": "Afgørelse: udsat", "decision:referred": "Afgørelse: henvist",
        "wait_arrival_session": "Median dage fra modtagelse til møde",
        "wait_decision_coordination": "Median dage fra afgørelse til koordineringsmøde",
        "wait_decision_joint": "Median dage fra afgørelse til fællessamtale",
    },
    "en": {
        "measure": "Measure", TOTAL: "Total",
        "brought": "Items brought to a session", "acute": "Acute", "moved_capacity": "Moved (session full)",
        "late": "Late (moved)", "withdrawn": "Withdrawn",
        "decision:start": "Decision: start", "decision:no-basis": "Decision: no basis",
        "decision:postponed": "Decision: postponed", "decision:referred": "Decision: referred",
        "wait_arrival_session": "Median days from arrival to session",
        "wait_decision_coordination": "Median days from decision to koordineringsmøde",
        "wait_decision_joint": "Median days from decision to fællessamtale",
    },
}


def measure_labels(language: str) -> dict[str, str]:
    """Labels of the measures and the header in Danish (default) or English."""
    return dict(_LABELS.get(language, _LABELS["da"]))
