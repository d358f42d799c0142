"""ExchangeCalendar and build_account against the fake EWS server.

The assertions read the SOAP requests exchangelib actually sent.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from exchangelib.protocol import Protocol

from scheduler.config import ExchangeConfig
from scheduler.errors import ConfigError
from scheduler.exchange.account import HostAdapter, build_account, check_endpoint
from scheduler.exchange.calendar import ExchangeCalendar
from scheduler.model import Attendee, BusyKind, Meeting, Recurrence
from scheduler.ports import PermanentError, TransientError
from tests.servers.ews import NS

TZ = ZoneInfo("Europe/Copenhagen")
CPR = re.compile(r"\d{6}-?\d{4}")
COORDINATORS = ("koordinator.social@kommune.example", "koordinator.unge@kommune.example")


def exchange_config(url: str, **changes) -> ExchangeConfig:
    return ExchangeConfig(service_endpoint=url, mailbox="sparring@kommune.example",
                          username="sparring", auth="basic", **changes)


@pytest.fixture
def account(ews_server, ews):
    Protocol.clear_cache()  # a fresh session and retry policy per test
    return build_account(exchange_config(ews_server.url), "hemmeligt", max_wait=2)


@pytest.fixture
def calendar(account):
    return ExchangeCalendar(account, TZ)


def series(uid: str = "sparring-series-unge@kommune.example", **changes) -> Meeting:
    start = datetime(2027, 1, 7, 10, 0, tzinfo=TZ)
    meeting = Meeting(
        uid=uid, summary="Sparringsforum for borgere op til og med 29 år", start=start,
        end=start + timedelta(hours=1), organizer="sparring@kommune.example",
        attendees=tuple(Attendee(a) for a in COORDINATORS),
        description="Dagsordenen udsendes ved fristen.", location="Mødelokale 2, Rådhuset",
        recurrence=Recurrence(interval=1),
    )
    return replace(meeting, **changes)


def single(n: int) -> Meeting:
    start = datetime(2027, 1, 6, 14, 0, tzinfo=TZ) + timedelta(weeks=n)
    return Meeting(uid=f"sparring-session-voksne-{n}@kommune.example", summary="Sparringsforum 30+",
                   start=start, end=start + timedelta(minutes=30), organizer="sparring@kommune.example",
                   attendees=(Attendee(COORDINATORS[0]),))


def texts(el, *paths: str) -> list[str]:
    return [x.text or "" for p in paths for x in el.iterfind(p, NS)]


# -- creating, updating, cancelling ---------------------------------------------


def test_series_is_created_once_with_recurrence_and_invitations(calendar, ews):
    calendar.put(series())

    [request] = ews.bodies("CreateItem")
    assert request.get("SendMeetingInvitations") == "SendToAllAndSaveCopy"
    item = request.find("m:Items/t:CalendarItem", NS)
    weekly = item.find("t:Recurrence/t:WeeklyRecurrence", NS)
    assert texts(weekly, "t:Interval", "t:DaysOfWeek", "t:FirstDayOfWeek") == ["1", "Thursday", "Monday"]
    assert texts(item, "t:Recurrence/t:NoEndRecurrence/t:StartDate")[0].startswith("2027-01-07")
    assert texts(item, "t:UID") == ["sparring-series-unge@kommune.example"]
    assert texts(item, "t:Sensitivity") == ["Private"]
    assert texts(item, "t:RequiredAttendees/t:Attendee/t:Mailbox/t:EmailAddress") == list(COORDINATORS)
    assert item.find("t:StartTimeZone", NS).get("Id") == "Romance Standard Time"
    for text in texts(item, "t:Subject", "t:Body", "t:Location"):
        assert not CPR.search(text)


def test_put_again_updates_the_same_item_also_after_a_restart(calendar, account, ews):
    calendar.put(series())
    calendar.put(series(summary="Sparringsforum (nyt lokale)", sequence=1))
    ExchangeCalendar(account, TZ).put(series(summary="Sparringsforum (igen)", sequence=2))

    assert ews.count("CreateItem") == 1
    updates = ews.bodies("UpdateItem")
    assert len(updates) == 2
    assert {u.get("SendMeetingInvitationsOrCancellations") for u in updates} == {"SendToAllAndSaveCopy"}
    # The restarted calendar found the item by its GlobalObjectId, not by a new create.
    assert ews.count("FindItem") == 2
    assert len(ews.in_folder("calendar")) == 1


def test_cancel_sends_cancellations_and_is_idempotent(calendar, ews):
    calendar.put(series())
    calendar.cancel(series(cancelled=True))
    calendar.cancel(series(cancelled=True))
    ExchangeCalendar(calendar.account, TZ).cancel(series(cancelled=True))

    [delete] = ews.bodies("DeleteItem")
    assert delete.get("SendMeetingCancellations") == "SendOnlyToAll"
    assert ews.in_folder("calendar") == []


def test_one_occurrence_is_moved_or_cancelled_through_its_instance_index(calendar, ews):
    calendar.put(series())
    moved_from = datetime(2027, 1, 21, 10, 0, tzinfo=TZ)
    occurrence = series(recurrence=None, recurrence_id=moved_from,
                        start=moved_from + timedelta(days=1), end=moved_from + timedelta(days=1, hours=1))
    calendar.put(occurrence)
    cancelled = datetime(2027, 2, 4, 10, 0, tzinfo=TZ)
    calendar.cancel(series(recurrence=None, recurrence_id=cancelled, cancelled=True))
    ExchangeCalendar(calendar.account, TZ).cancel(series(recurrence=None, recurrence_id=cancelled, cancelled=True))

    [update] = ews.bodies("UpdateItem")
    occ = update.find("m:ItemChanges/t:ItemChange/t:OccurrenceItemId", NS)
    assert occ.get("InstanceIndex") == "3"
    assert update.get("SendMeetingInvitationsOrCancellations") == "SendToAllAndSaveCopy"
    deletes = ews.bodies("DeleteItem")
    assert [d.find("m:ItemIds/t:OccurrenceItemId", NS).get("InstanceIndex") for d in deletes] == ["5", "5"]
    assert all(d.get("SendMeetingCancellations") == "SendOnlyToAll" for d in deletes)
    [master] = ews.in_folder("calendar")
    assert master.deleted == {5}
    assert ews.count("GetItem") == 1  # the restarted calendar read the series' start and interval once


def test_exdates_of_a_new_series_are_deleted_in_one_request(calendar, ews):
    holidays = (datetime(2027, 3, 25, 10, 0, tzinfo=TZ), datetime(2027, 5, 13, 10, 0, tzinfo=TZ))
    calendar.put(series(recurrence=Recurrence(interval=1, until=date(2027, 12, 30), exdates=holidays)))

    item = ews.bodies("CreateItem")[0].find("m:Items/t:CalendarItem", NS)
    assert texts(item, "t:Recurrence/t:EndDateRecurrence/t:EndDate")[0].startswith("2027-12-30")
    [delete] = ews.bodies("DeleteItem")
    assert [o.get("InstanceIndex") for o in delete.iterfind("m:ItemIds/t:OccurrenceItemId", NS)] == ["12", "19"]


def test_an_occurrence_of_an_unknown_series_is_a_permanent_error(calendar):
    with pytest.raises(PermanentError, match="series"):
        calendar.put(series(recurrence=None, recurrence_id=datetime(2027, 1, 14, 10, 0, tzinfo=TZ)))


def test_a_year_of_single_events_costs_one_create_per_hundred(calendar, ews):
    calendar.put_many([single(n) for n in range(120)])

    creates = ews.bodies("CreateItem")
    assert [len(c.find("m:Items", NS)) for c in creates] == [100, 20]
    assert ews.count("FindItem") == 2  # the UID lookups, 100 per request
    assert len(ews.in_folder("calendar")) == 120
    calendar.put_many([single(n) for n in range(120)])  # now known: updates only
    assert ews.count("CreateItem") == 2 and ews.count("UpdateItem") == 2


# -- free/busy -------------------------------------------------------------------


def test_free_busy_is_split_by_100_mailboxes_and_42_days(calendar, ews):
    people = [f"person{n:03d}@kommune.example" for n in range(150)]
    for p in people:
        ews.availability[p] = []
    start = datetime(2027, 1, 4, 0, 0, tzinfo=TZ)
    result = calendar.free_busy(people, start, start + timedelta(days=183))

    requests = ews.bodies("GetUserAvailability")
    assert len(requests) == 2 * 5
    for r in requests:
        assert len(r.find("m:MailboxDataArray", NS)) <= 100
        window = r.find("t:FreeBusyViewOptions/t:TimeWindow", NS)
        first, last = (datetime.fromisoformat(texts(window, p)[0]) for p in ("t:StartTime", "t:EndTime"))
        assert last - first <= timedelta(days=42)
    assert ews.count("GetServerTimeZones") == 1
    assert result == {p: [] for p in people}


def test_free_busy_maps_busy_types_and_unknown_mailboxes(calendar, ews):
    ews.availability["a@kommune.example"] = [
        ("2027-03-01T09:00:00", "2027-03-01T10:00:00", "Busy"),
        ("2027-03-01T11:00:00", "2027-03-01T11:30:00", "Tentative"),
        ("2027-03-02T08:00:00", "2027-03-02T16:00:00", "OOF"),
        ("2027-03-02T17:00:00", "2027-03-02T18:00:00", "Free"),
        ("2027-03-03T09:00:00", "2027-03-03T10:00:00", "NoData"),
    ]
    start, end = datetime(2027, 3, 1, tzinfo=TZ), datetime(2027, 3, 5, tzinfo=TZ)
    result = calendar.free_busy(["a@kommune.example", "ukendt@andet.example"], start, end)

    kinds = [(i.start, i.kind) for i in result["a@kommune.example"]]
    assert kinds == [
        (datetime(2027, 3, 1, 9, 0, tzinfo=TZ), BusyKind.BUSY),
        (datetime(2027, 3, 1, 11, 0, tzinfo=TZ), BusyKind.TENTATIVE),
        (datetime(2027, 3, 2, 8, 0, tzinfo=TZ), BusyKind.OUT_OF_OFFICE),
        (datetime(2027, 3, 3, 9, 0, tzinfo=TZ), BusyKind.UNKNOWN),
    ]
    [unknown] = result["ukendt@andet.example"]
    assert (unknown.start, unknown.end, unknown.kind) == (start, end, BusyKind.UNKNOWN)


# -- throttling, errors, account --------------------------------------------------


def test_server_busy_is_waited_out_and_retried(calendar, ews):
    ews.fail_next("CreateItem", backoff_ms=20)
    calendar.put(series())
    assert ews.count("CreateItem") == 2
    assert len(ews.in_folder("calendar")) == 1


def test_server_busy_beyond_patience_is_transient_with_retry_after(calendar, ews):
    ews.fail_next("CreateItem", backoff_ms=30_000)  # longer than max_wait=2
    with pytest.raises(TransientError) as caught:
        calendar.put(series())
    assert caught.value.retry_after == 30.0
    assert "2027" not in str(caught.value)


def test_wrong_password_is_permanent(ews_server, ews):
    Protocol.clear_cache()
    account = build_account(exchange_config(ews_server.url), "forkert", max_wait=2)
    with pytest.raises(PermanentError, match="UnauthorizedError"):
        ExchangeCalendar(account, TZ).put(series())


@pytest.mark.parametrize("url, problem", [
    ("http://mail.kommune.example/EWS/Exchange.asmx", "plain http"),
    ("mail.kommune.example", "must be a URL"),
    ("", "must be a URL"),
])
def test_endpoint_must_be_https_except_to_loopback(url, problem):
    with pytest.raises(ConfigError, match=problem):
        check_endpoint(exchange_config(url))


def test_ca_file_is_used_for_its_host_only(tmp_path, monkeypatch):
    ca = tmp_path / "kommune-ca.pem"
    ca.write_text("")
    build_account(exchange_config("https://mail.kommune.example/EWS/Exchange.asmx", ca_file=str(ca)), "x")
    seen = {}
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send",
                        lambda self, request, **kw: seen.setdefault(request.url, kw["verify"]))
    for url in ("https://mail.kommune.example/EWS/Exchange.asmx", "https://andet.example/EWS/Exchange.asmx"):
        HostAdapter().send(requests.Request("POST", url).prepare(), verify=True)
    assert seen == {"https://mail.kommune.example/EWS/Exchange.asmx": str(ca),
                    "https://andet.example/EWS/Exchange.asmx": True}
