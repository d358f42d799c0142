"""A caseworker declines a case meeting: it is rebooked, and the case keeps the new time."""

from __future__ import annotations

from scheduler.services import casework
from tests.appkit import at, build, ingest
from tests.test_booking import busy_file
from tests.test_casework import KAREN, MYND, open_case, shown
from tests.test_meetings import decline


def test_a_declined_joint_conversation_is_rebooked_and_case_show_has_the_new_time(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    step = casework.agree(app, case_id, MYND)
    (start, _, uid), = step.booked
    assert start == at("2027-01-21T09:00")
    busy_file(tmp_path, KAREN, ("20270121T000000", "20270122T000000"))  # Karen's calendar: away that day
    outcome = ingest(app, decline(uid, KAREN, KAREN, "decline-joint"), "2027-01-20T13:00")
    assert outcome.extra["code"] == "calendar_reply"
    joint = [m for m in shown(app, case_id)["meetings"] if m["kind"] == "joint"]
    assert [(m["start"], m["status"], m["uid"]) for m in joint] == [("2027-01-22T09:00:00+01:00", "booked", uid)]
