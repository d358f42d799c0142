"""Issue 13.7: Authentication-Results (RFC 8601) from the trusted server only."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from scheduler.mail.authresults import failed, trusted_results
from tests.appkit import build, ingest, item_mail

SERVER = "mx.kommune.example"


def _with(*headers: str, mid: str = "a1") -> bytes:
    head = "".join(f"Authentication-Results: {h}\r\n" for h in headers).encode()
    return head + item_mail("150303-4321", mid)


@pytest.mark.parametrize("headers, verdict", [
    ([f"{SERVER}; dmarc=fail (p=reject) header.from=kommune.example"], True),
    ([f"{SERVER}; dmarc=pass header.from=kommune.example; spf=fail"], False),
    ([f"{SERVER}; dkim=fail header.d=kommune.example; spf=fail smtp.mailfrom=x@evil.example"], True),
    ([f"{SERVER}; dmarc=none; dkim=none; spf=softfail"], True),
    ([f"{SERVER}; dkim=pass header.d=kommune.example; spf=fail"], False),
    ([f"{SERVER} 1; spf=pass smtp.mailfrom=kommune.example"], False),
    ([f"{SERVER}; none"], False),
    ([f"{SERVER.upper()}; (comment; dmarc=pass) dmarc=fail"], True),
    # folded over lines, as servers write it
    ([f"{SERVER};\r\n\tdkim=fail header.d=kommune.example;\r\n\tspf=fail"], True),
])
def test_the_verdict_of_the_trusted_server(headers, verdict):
    results = trusted_results(_with(*headers), SERVER)
    assert results is not None and failed(results) is verdict


def test_other_hops_and_lower_copies_are_ignored():
    assert trusted_results(_with("evil.example; dmarc=fail"), SERVER) is None
    # our server's header on top wins over one the sender put further down
    results = trusted_results(_with(f"{SERVER}; dmarc=pass", f"{SERVER}; dmarc=fail"), SERVER)
    assert not failed(results)
    assert trusted_results(_with(f"{SERVER}; dmarc=fail"), "") is None, "no authserv_id: nothing trusted"


@given(st.binary(max_size=400))
def test_any_header_bytes_give_a_result_or_none(junk):
    raw = b"Authentication-Results: " + junk.replace(b"\r\n\r\n", b"") + b"\r\nFrom: a@b.example\r\n\r\nbody"
    results = trusted_results(raw, SERVER)
    assert results is None or failed(results) in (True, False)


def _app(tmp_path, monkeypatch, authserv_id=SERVER):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    config = app.config.model_copy(update={"intake": app.config.intake.model_copy(update={"authserv_id": authserv_id})})
    app.config = config
    return app


def test_a_failed_dmarc_from_an_allowlisted_domain_is_quarantined(tmp_path, monkeypatch):
    app = _app(tmp_path, monkeypatch)
    outcome = ingest(app, _with(f"{SERVER}; dmarc=fail header.from=kommune.example"), "2027-01-04T09:00")
    assert (outcome.outcome, outcome.extra.get("code")) == ("quarantined", "auth_failed")
    passed = ingest(app, _with(f"{SERVER}; dmarc=pass", mid="a2"), "2027-01-04T09:01")
    assert passed.outcome == "accepted"
    bare = ingest(app, item_mail("020304-4002", "a3"), "2027-01-04T09:02")
    assert bare.outcome == "accepted", "without the header: as before"


def test_without_authserv_id_the_header_is_not_read(tmp_path, monkeypatch):
    app = _app(tmp_path, monkeypatch, authserv_id="")
    outcome = ingest(app, _with(f"{SERVER}; dmarc=fail"), "2027-01-04T09:00")
    assert outcome.outcome == "accepted"
