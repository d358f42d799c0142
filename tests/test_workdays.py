"""Working-day periods: the pure helpers behind "within N working days"."""

from datetime import date, timedelta

from hypothesis import given, strategies as st

from scheduler.planning import workdays


def weekdays(day: date) -> bool:
    return day.weekday() < 5


def test_after_skips_the_weekend():
    friday = date(2027, 1, 15)
    assert workdays.after(friday, 1, weekdays) == date(2027, 1, 18)
    assert workdays.after(friday, 10, weekdays) == date(2027, 1, 29)


def test_window_starts_on_the_next_working_day():
    saturday = date(2027, 1, 16)
    assert workdays.window(saturday, 5, weekdays) == (date(2027, 1, 18), date(2027, 1, 22))
    assert workdays.window(date(2027, 1, 20), 1, weekdays) == (date(2027, 1, 20), date(2027, 1, 20))


closed = st.sets(st.dates(date(2027, 1, 1), date(2027, 3, 31)), max_size=30)


@given(st.dates(date(2027, 1, 1), date(2027, 2, 28)), st.integers(1, 20), closed)
def test_window_holds_exactly_count_working_days(first, count, holidays):
    def open_(day):
        return day.weekday() < 5 and day not in holidays

    start, last = workdays.window(first, count, open_)
    days = [start + timedelta(days=n) for n in range((last - start).days + 1)]
    assert sum(map(open_, days)) == count
    assert open_(start) and open_(last) and start >= first
    assert not any(open_(first + timedelta(days=n)) for n in range((start - first).days))
    assert workdays.after(first, count, open_) > first
