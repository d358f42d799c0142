"""Cases, decisions and case meetings in the store (issue 15)."""

import pytest

from scheduler.planning import cases as rules
from tests.appkit import at, build

CPR = "0707614285"


def _open(repo, now):
    return repo.open_case(series_id="unge", session_start=at("2027-01-14T10:00"), slot=1, cpr_digits=CPR,
                          referrer="Karen@kommune.example", receiver="rikke@kommune.example",
                          coordinators=("koordinator.social@kommune.example", "karen@kommune.example"),
                          now=now, actor="koordinator.social@kommune.example")


def test_a_case_is_stored_without_personal_data_in_the_clear(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-14T11:00", monkeypatch)
    with app.transaction() as repo:
        case = _open(repo, app.now())
    assert len(case.id) <= 12 and CPR not in case.id
    assert case.state == rules.CaseState(rules.Stage.DECIDED, "rikke@kommune.example")
    assert case.parties == ("karen@kommune.example", "rikke@kommune.example", "koordinator.social@kommune.example")
    raw = (tmp_path / "sparring.db").read_bytes()
    assert CPR.encode() not in raw and CPR[:6].encode() not in raw
    with app.transaction() as repo:
        assert repo.case_cpr(case.id).digits == CPR
        assert repo.case(case.id.lower()) == case
        assert [c.id for c in repo.cases(open_only=True)] == [case.id]


def test_a_case_advances_only_as_the_rules_allow_and_closing_sets_its_purge(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-14T11:00", monkeypatch)
    with app.transaction() as repo:
        case = _open(repo, app.now())
        with pytest.raises(rules.CaseError):
            repo.advance_case(case.id, rules.JointBooked(), app.now(), "system")
        repo.advance_case(case.id, rules.CoordinationBooked(), app.now(), "system")
        repo.add_case_meeting(case.id, "coordination", start=at("2027-01-18T09:00"), end=at("2027-01-18T10:00"),
                              status="booked", uid="sparring-coordination-x@kommune.example", now=app.now())
        agreed = repo.advance_case(case.id, rules.Agreed("rikke@kommune.example"), app.now(), "rikke@kommune.example")
        closed = repo.advance_case(case.id, rules.Closed("rikke@kommune.example"), app.now(), "rikke@kommune.example")
    assert agreed.agreed_at == app.now() and closed.closed_at == app.now()
    with app.transaction() as repo:
        assert repo.cases(open_only=True) == []
        assert repo.case_meetings(case.id)[0].kind == "coordination"
        assert repo.case_of_meeting("sparring-coordination-x@kommune.example") == case.id
        assert repo.set_case_meeting("sparring-coordination-x@kommune.example", status="held", now=app.now())
        assert repo.case_meetings(case.id)[0].status == "held"


def test_the_latest_decision_counts_and_every_one_is_audited(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-14T11:00", monkeypatch)
    common = dict(series_id="unge", session_key="unge/2027-01-14", session_start=at("2027-01-14T10:00"),
                  slot=2, item_id=None, cpr_hash=None, receiver=None, decided_by="koordinator.social@kommune.example")
    with app.transaction() as repo:
        repo.record_decision(decision="postponed", note="mangler lægeerklæring", now=at("2027-01-14T11:00"), **common)
        repo.record_decision(decision="no-basis", note=None, now=at("2027-01-14T12:00"), **common)
    with app.transaction() as repo:
        latest = repo.latest_decision("unge/2027-01-14", 2)
        assert (latest.decision, latest.note) == ("no-basis", None)
        assert [d.note for d in repo.decisions_of_session("unge/2027-01-14")] == ["mangler lægeerklæring", None]
        assert repo.latest_decision("unge/2027-01-14", 3) is None
    with app.connection() as conn:
        actions = [r[0] for r in conn.exec_driver_sql("SELECT action FROM audit ORDER BY id")]
    assert actions.count("decision-recorded") == 2
    assert b"mangler" not in (tmp_path / "sparring.db").read_bytes()
