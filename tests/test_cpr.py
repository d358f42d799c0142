"""CPR numbers: century rule, validation codes, masking, age."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.cpr import Cpr, CprError, parse_cpr

TODAY = date(2027, 1, 5)


@pytest.mark.parametrize(
    ("text", "born"),
    [
        ("120502-4127", date(2002, 5, 12)),  # 4, YY <= 36: 2000s
        ("120552-4127", date(1952, 5, 12)),  # 4, YY > 36: 1900s
        ("010136-9000", date(2036, 1, 1)),  # 9, YY = 36 is the last 2000s year
        ("010137-9000", date(1937, 1, 1)),
        ("150697-2208", date(1997, 6, 15)),  # 0-3: 1900s
        ("010100-0000", date(1900, 1, 1)),
        ("050701-5555", date(2001, 7, 5)),  # 5-8, YY <= 57: 2000s
        ("050758-8555", date(1858, 7, 5)),  # 5-8, YY > 57: 1800s
        ("2001994321", date(1999, 1, 20)),
        ("200199 4321", date(1999, 1, 20)),
        ("290200-4000", date(2000, 2, 29)),  # 2000 is a leap year
    ],
)
def test_birth_date_from_the_seventh_digit(text: str, born: date) -> None:
    assert parse_cpr(text, date.max).birth_date == born


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("12050-4127", "format"),
        ("120502-41271", "format"),
        ("12-05-02-4127", "format"),
        ("abcdef-ghij", "format"),
        ("", "format"),
        ("١٢٠٥٠٢٤١٢٧", "format"),  # Arabic-Indic digits are digits to str.isdigit, not to us
        ("310290-1234", "date"),
        ("290201-4000", "date"),  # 2001 is not a leap year
        ("001390-1234", "date"),
        ("010135-4000", "future"),  # 2035
    ],
)
def test_invalid_numbers_give_a_code(text: str, code: str) -> None:
    with pytest.raises(CprError) as caught:
        parse_cpr(text, TODAY)
    assert caught.value.code == code
    assert not any(ch.isdigit() for ch in str(caught.value))  # the message never holds the number


def test_born_today_is_not_future() -> None:
    assert parse_cpr("050127-4000", TODAY).birth_date == TODAY


def test_no_modulus_11_check() -> None:
    # 120502-4128 fails modulus 11 if 4127 passes; both are valid since 2007.
    assert parse_cpr("120502-4128", TODAY).digits == "1205024128"


def test_masked_formatted_and_repr() -> None:
    cpr = parse_cpr("1205024127", TODAY)
    assert cpr.masked == "120502-xxxx"
    assert cpr.formatted == "120502-4127"
    assert "4127" not in repr(cpr) and "4127" not in str(cpr)


def test_leap_day_birthday_counts_from_first_of_march() -> None:
    cpr = parse_cpr("290200-4000", TODAY)
    assert cpr.age_on(date(2015, 2, 28)) == 14
    assert cpr.age_on(date(2015, 3, 1)) == 15
    assert cpr.age_on(date(2016, 2, 29)) == 16


def test_age_turns_on_the_birthday() -> None:
    cpr = parse_cpr("150697-2208", TODAY)
    assert cpr.age_on(date(2027, 6, 14)) == 29
    assert cpr.age_on(date(2027, 6, 15)) == 30


def _seventh_digits(year: int) -> list[int]:
    """The 7th digits under which ``year`` is issued (CPR-kontoret's table, written out)."""
    digits = []
    if 1900 <= year <= 1999:
        digits += [0, 1, 2, 3]
    if 2000 <= year <= 2036 or 1937 <= year <= 1999:
        digits += [4, 9]
    if 2000 <= year <= 2057 or 1858 <= year <= 1899:
        digits += [5, 6, 7, 8]
    return digits


birth_dates = st.dates(min_value=date(1858, 1, 1), max_value=date(2036, 12, 31))
serials = st.from_regex(r"\A[0-9]{3}\Z")


@given(born=birth_dates, serial=serials, pick=st.integers(0, 9), separator=st.sampled_from(["", "-", " "]))
def test_every_valid_date_round_trips(born: date, serial: str, pick: int, separator: str) -> None:
    allowed = _seventh_digits(born.year)
    seventh = allowed[pick % len(allowed)]
    cpr = parse_cpr(f"{born:%d%m%y}{separator}{seventh}{serial}", date.max)
    assert cpr.birth_date == born
    assert cpr.formatted == f"{born:%d%m%y}-{seventh}{serial}"


@given(born=birth_dates, serial=serials, seventh=st.integers(0, 9))
def test_a_digit_not_issued_for_the_year_never_gives_that_date(born: date, serial: str, seventh: int) -> None:
    if seventh in _seventh_digits(born.year):
        return
    try:
        assert parse_cpr(f"{born:%d%m%y}{seventh}{serial}", date.max).birth_date != born
    except CprError as error:
        assert error.code == "date"  # 29 February in the other century's common year


@given(born=birth_dates, serial=serials, pick=st.integers(0, 9))
def test_masked_never_reveals_the_last_four(born: date, serial: str, pick: int) -> None:
    allowed = _seventh_digits(born.year)
    tail = f"{allowed[pick % len(allowed)]}{serial}"
    cpr = parse_cpr(f"{born:%d%m%y}{tail}", date.max)
    shown = f"{born:%d%m%y}"
    assert cpr.masked == f"{shown}-xxxx"
    # The date is shown on purpose; the four digits may not follow it anywhere
    # (they can occur inside the date itself: 030999 holds 0309).
    for text in (cpr.masked, repr(cpr)):
        assert tail not in text.replace(shown, "-", 1)


@given(born=birth_dates, day=st.dates(min_value=date(1858, 1, 1), max_value=date(9000, 1, 1)),
       step=st.integers(1, 3000))
def test_age_is_monotone_in_the_day(born: date, day: date, step: int) -> None:
    cpr = Cpr("0" * 10, born)
    later = day + timedelta(days=step)
    assert cpr.age_on(later) >= cpr.age_on(day)
    assert cpr.age_on(later) - cpr.age_on(day) <= step // 365 + 1


# -- the guard: one detector for every form, masking every outgoing text (issue 11, 14) --

from datetime import datetime, timezone  # noqa: E402

from scheduler.mail.compose import text_mail  # noqa: E402
from scheduler.wire import to_bytes  # noqa: E402
from scheduler.model import Attendee, Meeting  # noqa: E402
from scheduler.cpr import has_cpr, mask_cprs  # noqa: E402

_BLANK = st.sampled_from(["", " ", "\t", "\xa0", "\u202f"])
_DASH = st.sampled_from(["-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212"])
# Every separator intake accepts between DDMMYY and XXXX (and more): none, a blank, a dash with blanks round it.
SEPARATOR = st.one_of(_BLANK, st.tuples(_BLANK, _DASH, _BLANK).map("".join))
CPRS = st.tuples(st.from_regex(r"\A[0-3][0-9][01][0-9]{3}\Z"), SEPARATOR, st.from_regex(r"\A[0-9]{4}\Z"))
# Text around it, without digits: what is left of the number's digits is then plain to see.
AROUND = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")), max_size=30)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch in "0123456789")


@given(CPRS, AROUND, AROUND)
def test_no_form_of_a_cpr_survives_the_guard(cpr, before, after):
    ddmmyy, separator, last = cpr
    text = f"{before}{ddmmyy}{separator}{last}{after}"
    assert has_cpr(text)
    masked = mask_cprs(text)
    assert _digits(masked) == ddmmyy and f"{ddmmyy}-xxxx" in masked
    assert mask_cprs(masked) == masked


# Six digits and four more with at most six other characters between: a CPR unmasked.
UNMASKED = re.compile(r"[0-9]{6}[^0-9x]{0,6}[0-9]{4}")


@given(CPRS, AROUND)
def test_no_cpr_reaches_a_mail_or_a_calendar_field(cpr, words):
    """Subject, display name, body and every calendar text: the number is masked on the way out."""
    text = f"{words} {''.join(cpr)} {words}"
    wire = to_bytes(text_mail(
        sender="sparring@kommune.example", sender_name=text, to=["karen@kommune.example"], subject=text,
        body=text, html=f"<p>{text}</p>", sent_at=datetime(2027, 1, 4, 8, tzinfo=timezone.utc)))
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    shown = [str(parsed["Subject"]), str(parsed["From"])]
    shown += [part.get_content() for part in parsed.walk() if not part.is_multipart()]
    start = datetime(2027, 1, 4, 8, tzinfo=timezone.utc)
    meeting = Meeting(uid="u", summary=text, start=start, end=start.replace(hour=9), organizer="s@k.example",
                      organizer_name=text, attendees=(Attendee("a@k.example", text),), description=text,
                      location=text)
    shown += [meeting.summary, meeting.description, meeting.location, meeting.organizer_name,
              meeting.attendees[0].name]
    for field in shown:
        assert not UNMASKED.search(field)


