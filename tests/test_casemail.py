"""What caseworkers write about a case: Enighed and Opfølgning (pure)."""

from datetime import date

from hypothesis import given, strategies as st

from scheduler.mail.casemail import CaseMail, case_reference, parse_case_mail, read_date
from scheduler.planning.items import Rejection


def test_agreement_in_a_reply_to_the_invitation():
    found = parse_case_mail("SV: Koordineringsmøde [K-7F3Q]", ["Enighed", "Vh Bo"])
    assert found == CaseMail("K-7F3Q", "agree")


def test_agreement_as_the_subject():
    assert parse_case_mail("Enighed [K-7F3Q]", []) == CaseMail("K-7F3Q", "agree")
    assert parse_case_mail("re: enighed k-7f3q", ["tak"]) == CaseMail("K-7F3Q", "agree")


def test_followup_dates_one_a_line_in_any_common_form():
    found = parse_case_mail("Opfølgning [K-7F3Q]", ["Hej", "2027-03-01", "1-6-2027", "01.09.2027", "Bo"])
    assert found == CaseMail("K-7F3Q", "followup", (date(2027, 3, 1), date(2027, 6, 1), date(2027, 9, 1)))


def test_followup_keyword_on_the_first_line():
    found = parse_case_mail("Re: Fællessamtale [K-AB12]", ["Opfølgning", "2027-03-01"])
    assert found == CaseMail("K-AB12", "followup", (date(2027, 3, 1),))


def test_a_line_that_is_no_date_is_named_by_its_number():
    found = parse_case_mail("Re: [K-AB12]", ["Opfølgning", "2027-03-01", "2027-02-30"])
    assert found == Rejection("followup_line", {"line": 3})


def test_refusals():
    assert parse_case_mail("Enighed", []) == Rejection("case_reference", {})
    assert parse_case_mail("Re: [K-AB12]", ["Hej"]) == Rejection("case_keyword", {})
    assert parse_case_mail("Opfølgning [K-AB12]", ["ingen dato"]) == Rejection("followup_none", {})
    many = [f"2027-03-{d:02d}" for d in range(1, 15)]
    assert parse_case_mail("Opfølgning [K-AB12]", many).code == "followup_many"


def test_a_cpr_number_is_never_a_case_reference():
    assert case_reference("Enighed 010190-1234") is None
    assert case_reference("K-0101901234") is None


@given(st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_dates_read_back_in_every_form(day):
    for text in (day.isoformat(), f"{day.day}-{day.month}-{day.year}", f"{day:%d.%m.%Y}", f"{day.day}/{day.month}/{day.year}"):
        assert read_date(text) == day
