"""Content checks of agenda items and the sentences that explain refusals."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from scheduler.mail.parse import MailKind, ParsedMail, parse_mail
from scheduler.cpr import Cpr
from scheduler.planning.items import ItemContent, Rejection, check_item, check_withdrawal
from scheduler.reasons import CODES, reason

FIXTURES = Path(__file__).parent / "fixtures" / "mail"
TODAY = date(2027, 1, 5)


def parsed(name: str) -> ParsedMail:
    return parse_mail((FIXTURES / f"{name}.eml").read_bytes())


@pytest.mark.parametrize(
    ("name", "code", "params"),
    [
        ("06-cpr-invalid-date", "cpr_date", {}),
        ("07-too-many-lines", "too_many_lines", {"count": 8, "max": 5}),
        ("17-two-cprs", "several_cprs", {"count": 2}),
        ("27-cpr-bad-format", "cpr_format", {}),
        ("28-cpr-future", "cpr_future", {}),
        ("29-no-text", "no_text", {}),
        ("12-out-of-office", "not_an_item", {}),
    ],
)
def test_rejections(name: str, code: str, params: dict) -> None:
    assert check_item(parsed(name), TODAY) == Rejection(code, params)


def test_no_cpr() -> None:
    mail = parse_mail(b"From: a@k.example\r\nSubject: Sparring\r\n\r\nHelbred: x\r\n")
    assert check_item(mail, TODAY) == Rejection("no_cpr")


def test_too_large() -> None:
    raw = (FIXTURES / "01-item-plain.eml").read_bytes()
    assert check_item(parse_mail(raw, max_bytes=100), TODAY) == Rejection("too_large")
    assert check_withdrawal(parse_mail(raw, max_bytes=100), TODAY) == Rejection("too_large")


@pytest.mark.parametrize(
    ("name", "digits", "lines", "acute"),
    [
        ("01-item-plain", "1205024127", 2, False),
        ("02-item-outlook-html", "0103851093", 2, False),
        ("03-item-latin1-qp", "1506972208", 2, False),
        ("04-reply-outlook-quote", "2304783317", 2, False),
        ("05-cpr-in-subject", "2001994321", 2, False),
        ("08-acute", "1205024127", 2, True),
        ("09-outside-sender", "1205024127", 2, False),
        ("11-base64-encoded-subject", "0505601017", 2, False),
        ("14-under-15", "0309144005", 2, False),  # the age is checked by the allocation
        ("15-attachment", "2304783317", 2, False),
        ("18-alternative", "1506972208", 2, False),
        ("19-cp1252-html-table", "1205024127", 2, False),
    ],
)
def test_accepted_items(name: str, digits: str, lines: int, acute: bool) -> None:
    content = check_item(parsed(name), TODAY)
    assert isinstance(content, ItemContent)
    assert (content.cpr.digits, content.line_count, content.acute) == (digits, lines, acute)


def test_line_limit_is_configurable_and_never_truncates() -> None:
    content = check_item(parsed("07-too-many-lines"), TODAY, max_lines=8)
    assert isinstance(content, ItemContent)
    assert content.health == ("Linje 1", "Linje 2", "Linje 3", "Linje 4")
    assert content.social == ("Linje 5", "Linje 6", "Linje 7", "Linje 8")
    assert check_item(parsed("01-item-plain"), TODAY, max_lines=1) == Rejection("too_many_lines", {"count": 2, "max": 1})


def test_attachments_are_carried_to_the_receipt() -> None:
    content = check_item(parsed("15-attachment"), TODAY)
    assert isinstance(content, ItemContent)
    assert content.attachments == ("lægeerklæring.docx", "bilag2.pdf")
    assert "Se vedhæftede" not in repr(content)


def test_withdrawal() -> None:
    cpr = check_withdrawal(parsed("13-withdraw"), TODAY)
    assert isinstance(cpr, Cpr) and cpr.digits == "1205024127"
    assert check_withdrawal(parsed("17-two-cprs"), TODAY) == Rejection("several_cprs", {"count": 2})
    assert check_withdrawal(parsed("28-cpr-future"), TODAY) == Rejection("cpr_future")
    assert parsed("13-withdraw").kind is MailKind.WITHDRAW


NEEDED = {"no_cpr", "several_cprs", "cpr_format", "cpr_date", "cpr_future", "no_text", "too_many_lines",
          "too_large", "under_15", "no_session", "not_allowed", "nothing_to_withdraw", "attachments_ignored"}


@pytest.mark.parametrize("language", ["da", "en"])
@pytest.mark.parametrize("code", sorted(CODES))
def test_each_reason_is_one_sentence(code: str, language: str) -> None:
    text = reason(code, language, count=3, max=5, limit=1_000_000, line=2, slot=3)
    assert text.endswith(".") and text[0].isupper()
    assert text.count(". ") == 0  # one sentence
    assert "?" not in text and "{" not in text


def test_all_needed_codes_exist_and_danish_is_default() -> None:
    assert NEEDED <= CODES
    assert reason("under_15").startswith("Borgeren er under 15 år")
    assert reason("under_15", "en").startswith("The citizen is under 15")
    assert reason("too_many_lines", count=8, max=5) == reason("too_many_lines", "da", count=8, max=5)
    assert "8 linjer" in reason("too_many_lines", count=8, max=5) and "højst 5" in reason("too_many_lines", count=8, max=5)
    assert "1 MB" in reason("too_large", limit=1_000_000)
    assert "1,5 MB" in reason("too_large", limit=1_500_000)


def test_reasons_never_echo_text_params() -> None:
    text = reason("several_cprs", count="120502-4127", cpr="120502-4127", health="Angst")
    assert "120502" not in text and "Angst" not in text


def test_unknown_code_gets_a_neutral_sentence() -> None:
    assert reason("something_new") == "Punktet kunne ikke behandles; kontakt koordinatoren."
    assert reason("no_cpr", "fr") == reason("no_cpr", "da")
