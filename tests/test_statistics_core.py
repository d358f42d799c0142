"""Issue 16: the statistics' pure core (periods, age groups, suppression, the table) by property."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.planning.statistics import (
    AGE_GROUPS,
    MEASURES,
    MEDIANS,
    Period,
    StatisticsTable,
    StatRow,
    age_group,
    median_shown,
    suppress,
    suppress_row,
)

years = st.integers(min_value=1900, max_value=2999)
counts = st.integers(min_value=0, max_value=10_000)
waits = st.floats(min_value=0, max_value=400, allow_nan=False)


@given(counts)
def test_suppression_never_shows_1_to_4(n):
    shown = suppress(n)
    assert shown not in {"1", "2", "3", "4"}
    assert shown == ("<5" if 1 <= n <= 4 else str(n))


@given(st.lists(waits, max_size=12))
def test_a_median_over_fewer_than_five_values_is_not_shown(values):
    shown = median_shown(values)
    assert (shown is None) == (len(values) < 5)
    if shown is not None:
        assert min(values) <= shown <= max(values)


@given(years, st.sampled_from(["Q1", "Q2", "Q3", "Q4", "01", "06", "12", None]))
def test_a_period_parses_back_from_its_label(year, part):
    text = f"{year:04d}" + (f"-{part}" if part else "")
    period = Period.parse(text)
    assert Period.parse(period.label) == period and period.label == text
    assert period.first <= period.last and period.first.year == period.last.year == year
    assert period.first in period and period.last in period
    assert period.first - timedelta(days=1) not in period and period.last + timedelta(days=1) not in period


@given(years)
def test_every_day_of_a_year_falls_in_exactly_one_quarter(year):
    quarters = [Period.parse(f"{year:04d}-Q{q}") for q in range(1, 5)]
    day = date(year, 1, 1)
    while day.year == year:
        holding = [q for q in quarters if day in q]
        assert holding == [Period.containing(day)]
        day += timedelta(days=1)


@pytest.mark.parametrize("text", ["2027-Q0", "2027-Q5", "2027-13", "2027-00", "27", "2027-1", "Q1-2027", "", "20271"])
def test_a_bad_period_says_what_is_accepted(text):
    with pytest.raises(ValueError, match=r"2027-Q1.*2027-03.*2027\)\.$"):
        Period.parse(text)


@pytest.mark.parametrize("text", ["0001", "1899-Q4", "3000-01"])
def test_a_period_far_off_names_the_years(text):
    with pytest.raises(ValueError, match=r"outside the years 1900 to 2999\.$"):
        Period.parse(text)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2899, 12, 31)), st.integers(min_value=0, max_value=100 * 366))
def test_the_age_group_is_the_age_on_the_day(birth, days):
    on = birth + timedelta(days=days)
    group = age_group(birth, on)
    age = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    assert group == ("0-14" if age < 15 else "15-17" if age < 18 else "18-29" if age < 30 else "30+")


def _table(data) -> StatisticsTable:
    rows = []
    for measure in MEASURES:
        if measure in MEDIANS:
            values = data.draw(st.lists(waits, max_size=8))
            by_group = {g: median_shown(data.draw(st.lists(waits, max_size=8))) for g in AGE_GROUPS}
            rows.append(StatRow(measure, by_group, median_shown(values)))
        else:
            by_group = {g: data.draw(counts) for g in ("0-14", *AGE_GROUPS)}
            rows.append(StatRow(measure, by_group, sum(by_group.values())))
    return StatisticsTable(Period.parse("2027-Q1"), rows)


@given(st.data(), st.sampled_from(["da", "en"]))
def test_the_csv_is_the_table_and_shows_no_small_count(data, language):
    table = _table(data)
    cells = table.cells(language)
    assert list(csv.reader(io.StringIO(table.csv(language)))) == cells
    assert len(cells) == len(MEASURES) + 1
    child = any(row.by_group.get("0-14") for row in table.rows)
    assert cells[0][1:-1] == (["0-14"] if child else []) + list(AGE_GROUPS)
    for line in cells[1:]:
        assert not {"1", "2", "3", "4"} & set(line[1:])


def _readings(shown: dict[str, str], total: str, width: int) -> list[dict[str, int]]:
    """Every row of counts (each 0..width) that shows as ``shown`` and ``total``."""
    groups = list(shown)
    fits = lambda cell, n: (cell == "0" and n == 0) or (cell == "<5" and 0 < n < 5) or (  # noqa: E731
        cell == ".." and n >= 5) or cell == str(n)
    rows = [{}]
    for group in groups:
        rows = [{**row, group: n} for row in rows for n in range(width + 1) if fits(shown[group], n)]
    return [row for row in rows if total == ".." or fits(total, sum(row.values()))]


@settings(max_examples=600)
@given(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=4))
def test_no_count_under_five_can_be_worked_out_from_the_total_and_the_others(values):
    """Whoever reads a row (its cells and total) cannot pin a "<5" to one number."""
    by_group = {f"g{n}": value for n, value in enumerate(values)}
    total = sum(values)
    shown, shown_total = suppress_row(by_group, total)
    assert shown_total != ".." or total > 0
    readings = _readings(shown, shown_total, width=max(total, 12))
    assert by_group in readings
    for group, value in by_group.items():
        assert (shown[group] == str(value)) == (value == 0 or shown[group] not in ("<5", ".."))
        if 0 < value < 5:
            assert len({row[group] for row in readings}) >= 2, (by_group, shown, shown_total)


def test_a_small_count_beside_the_total_hides_the_next_smallest_count():
    assert suppress_row({"15-17": 1, "18-29": 7, "30+": 0}, 8) == ({"15-17": "<5", "18-29": "..", "30+": "0"}, "8")
    assert suppress_row({"15-17": 3, "18-29": 41, "30+": 6}, 50) == (
        {"15-17": "<5", "18-29": "41", "30+": ".."}, "50")
    assert suppress_row({"15-17": 0, "18-29": 9, "30+": 12}, 21) == ({"15-17": "0", "18-29": "9", "30+": "12"}, "21")


def test_four_small_counts_under_a_small_total_hide_the_total():
    """Four cells "<5" under a total "<5" would each be 1."""
    assert suppress_row({"0-14": 1, "15-17": 1, "18-29": 1, "30+": 1}, 4)[1] == ".."
    assert suppress_row({"15-17": 1, "18-29": 0, "30+": 0}, 1) == ({"15-17": "<5", "18-29": "0", "30+": "0"}, "<5")
