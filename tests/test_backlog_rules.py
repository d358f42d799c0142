"""The pure side of the backlog warning: extra sessions in the planner, the reply's words."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.config import load_config
from scheduler.mail.extra import find_reference, read_answer, reference
from scheduler.planning.sessions import Planner, extra_session

TZ = ZoneInfo("Europe/Copenhagen")
CONFIG = load_config(Path(__file__).parent.parent / "config" / "sparring.toml")
PLANNER = Planner(CONFIG.all_series(), CONFIG.closed_days(), TZ)
UNGE = PLANNER.get_series("unge")


@settings(max_examples=60, deadline=None)
@given(st.dates(date(2027, 1, 1), date(2028, 12, 31)), st.integers(9 * 4, 14 * 4),
       st.integers(0, 3 * 24 * 60))
def test_an_extra_session_is_listed_once_in_order_and_found_by_its_key(day, quarter, before):
    if day.weekday() == UNGE.weekday:  # an extra session is never on a day the series meets
        day += timedelta(days=1)
    start = datetime.combine(day, time(quarter // 4, quarter % 4 * 15), tzinfo=TZ)
    created = start - timedelta(minutes=before)
    extra = extra_session(UNGE, start, created, PLANNER.closed)
    planner = PLANNER.with_extras([("unge", start, created), ("gone", start, created)])
    around = (day - timedelta(days=20), day + timedelta(days=20))
    listed = planner.sessions(*around)
    assert [s for s in listed if s.extra] == [extra] and extra.note == "ekstra" and extra.planned
    assert [s for s in listed if not s.extra] == PLANNER.sessions(*around), "the rule's sessions are untouched"
    assert listed == sorted(listed, key=lambda s: (s.start, s.series_id))
    assert planner.session_on(UNGE, day) == extra and extra.key == f"unge/{day.isoformat()}"
    assert planner.sessions(*around, series_id="voksne") == PLANNER.sessions(*around, series_id="voksne")
    assert created <= extra.deadline <= start, "the agenda deadline: not before it was added, nor after it starts"
    assert extra.deadline <= max(created, datetime.combine(day - timedelta(days=1), UNGE.deadline.at, tzinfo=TZ))


@given(st.sampled_from(["Ekstra møde: ja", "ekstra mode: JA", "EKSTRA MØDE:ja", "Ekstra  moede :  Ja tak",
                        "Extra session: yes", "  Ekstra Møde: Ja"]))
def test_ja_is_read_whatever_the_case_and_accents(line):
    assert read_answer(["Hej", "", line, "Venlig hilsen"]) is True


def test_nej_declines_and_other_text_says_nothing():
    assert read_answer(["Ekstra møde: nej"]) is False
    assert read_answer(["Extra meeting: no thanks"]) is False
    assert read_answer(["Ja tak", "Ekstra møde", "møde: ja", "Ekstra møde: jaaa"]) is None


def test_the_reference_names_series_and_time_only():
    start = datetime(2027, 1, 5, 9, 0, tzinfo=TZ)
    subject = "Re: SV: Kø i Unge: forslag om ekstra møde " + reference("unge", start)
    assert reference("unge", start) == "[Ekstra unge 2027-01-05 09:00]"
    assert find_reference(subject) == "unge" and find_reference("Re: [ekstra UNGE]") == "unge"
    assert find_reference("Dagsorden [SF unge 2027-01-14]") is None
