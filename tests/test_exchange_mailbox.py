"""ExchangeSource and ExchangeTransport against the fake EWS server."""

from __future__ import annotations

import base64
import logging
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from exchangelib.protocol import Protocol

from scheduler.exchange.account import build_account
from scheduler.exchange.mailbox import ExchangeSource, ExchangeTransport
from scheduler.ports import Disposition, OutgoingMail, TransientError
from tests.appkit import FOLDERS
from tests.servers.ews import NS
from tests.test_exchange_calendar import exchange_config

T0 = datetime(2027, 1, 4, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def account(ews_server, ews):
    Protocol.clear_cache()
    return build_account(exchange_config(ews_server.url), "hemmeligt", max_wait=2)


def mail(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"sagsbehandler{n}@kommune.example"
    msg["To"] = "sparring@kommune.example"
    msg["Subject"] = f"Punkt {n}"
    msg["Message-ID"] = f"<punkt-{n}@kommune.example>"
    msg.set_content(f"Punkt nummer {n}.\n")
    return msg.as_bytes()


def deliver(ews, count: int) -> list[str]:
    """Mails received an hour apart, delivered in reverse order."""
    return [ews.deliver(mail(n), T0 + timedelta(hours=n)) for n in reversed(range(count))][::-1]


def test_fetch_is_oldest_first_in_one_find_and_one_get(account, ews):
    deliver(ews, 5)
    got = ExchangeSource(account, FOLDERS).fetch(limit=10)

    assert [m.received_at for m in got] == [T0 + timedelta(hours=n) for n in range(5)]
    assert [m.raw for m in got] == [mail(n) for n in range(5)]
    assert ews.count("FindItem") == 1 and ews.count("GetItem") == 1
    [get] = ews.bodies("GetItem")
    assert len(get.find("m:ItemIds", NS)) == 5
    assert ews.bodies("FindItem")[0].find("m:SortOrder/t:FieldOrder/t:FieldURI", NS).get("FieldURI") == \
        "item:DateTimeReceived"


def test_fetch_respects_limit_and_batch_size_and_changes_nothing(account, ews):
    deliver(ews, 5)
    source = ExchangeSource(account, FOLDERS, batch_size=2)
    first = source.fetch(limit=4)
    again = source.fetch(limit=4)

    assert [m.raw for m in first] == [mail(n) for n in range(4)] == [m.raw for m in again]
    assert ews.count("FindItem") == 2 and ews.count("GetItem") == 4  # 2 batches per fetch
    assert len(ews.in_folder("inbox")) == 5


def test_settle_moves_one_request_per_disposition_into_danish_folders(account, ews):
    refs = deliver(ews, 4)
    source = ExchangeSource(account, FOLDERS)
    fetched = [m.ref for m in source.fetch(limit=10)]
    assert fetched == refs
    source.settle({Disposition.PROCESSED: refs[:3], Disposition.REJECTED: refs[3:], Disposition.IGNORED: []})

    assert ews.count("MoveItem") == 2
    assert ews.count("FindFolder") == 1 and ews.count("CreateFolder") == 1
    assert len(ews.in_folder("Behandlet")) == 3 and len(ews.in_folder("Afvist")) == 1
    assert ews.in_folder("inbox") == [] and source.fetch(limit=10) == []
    inbox = ews.folders["inbox"].id
    assert {f.name for f in ews.folders.values() if f.parent == inbox} == set(FOLDERS.values())
    source.settle({Disposition.PROCESSED: refs[:1]})  # already moved: ignored
    assert ews.count("MoveItem") == 3


def test_existing_folders_are_reused(account, ews):
    ExchangeSource(account, FOLDERS).settle({Disposition.PROCESSED: deliver(ews, 1)})
    ExchangeSource(account, FOLDERS).settle({Disposition.QUARANTINE: deliver(ews, 1)})

    assert ews.count("CreateFolder") == 1 and ews.count("FindFolder") == 2
    assert len(ews.in_folder("Karantæne")) == 1


def test_throttling_beyond_patience_is_transient(account, ews):
    deliver(ews, 1)
    ews.fail_next("FindItem", backoff_ms=60_000)
    with pytest.raises(TransientError) as caught:
        ExchangeSource(account, FOLDERS).fetch(limit=10)
    assert caught.value.retry_after == 60.0


def test_wait_polls_and_reports_no_push(account):
    assert ExchangeSource(account, FOLDERS).wait(0.01) is False


def test_transport_sends_mime_with_a_copy_in_sent_items(account, ews):
    message = mail(1)
    ExchangeTransport(account).send(OutgoingMail(
        sender="sparring@kommune.example",
        recipients=("sparring@kommune.example", "koordinator.social@kommune.example"),
        message=message, kind="agenda"))

    [create] = ews.bodies("CreateItem")
    assert create.get("MessageDisposition") == "SendAndSaveCopy"
    assert create.find("m:SavedItemFolderId/t:DistinguishedFolderId", NS).get("Id") == "sentitems"
    item = create.find("m:Items/t:Message", NS)
    assert base64.b64decode(item.find("t:MimeContent", NS).text) == message
    bcc = [e.text for e in item.iterfind("t:BccRecipients/t:Mailbox/t:EmailAddress", NS)]
    assert bcc == ["koordinator.social@kommune.example"]  # not named in To/Cc
    assert len(ews.in_folder("sentitems")) == 1


def test_exchangelib_does_not_log_mail_content(account, ews, caplog):
    caplog.set_level(logging.DEBUG, logger="exchangelib")
    raw = mail(7).replace(b"Punkt nummer 7.", b"CPR 010190-1234, helbred: fiktivt.")
    ews.deliver(raw, T0)
    [got] = ExchangeSource(account, FOLDERS).fetch(limit=1)

    assert got.raw == raw
    assert caplog.records  # exchangelib did log at DEBUG ...
    assert not [r for r in caplog.records if r.name == "exchangelib.util.xml"]  # ... but no SOAP bodies
    assert "010190" not in caplog.text and base64.b64encode(raw).decode()[:40] not in caplog.text


def test_the_copy_in_sent_items_is_erased_by_message_id_and_purged_after_the_retention(account, ews):
    source, transport = ExchangeSource(account, FOLDERS), ExchangeTransport(account)
    for n in (1, 2, 3):
        transport.send(OutgoingMail("sparring@kommune.example", ("karen@kommune.example",), mail(n), kind="receipt"))
    for item, stored in zip(ews.in_folder("sentitems"), ("2027-01-01", "2027-01-02", "2027-02-01")):
        item.received = f"{stored}T08:00:00Z"  # when Exchange stored the copy

    assert source.erase_settled(["<punkt-1@kommune.example>"]) == 1
    assert source.purge_settled(T0) == 1  # the copy of 2 January; that of 1 February is within the period
    assert [i.message_id for i in ews.in_folder("sentitems")] == ["<punkt-3@kommune.example>"]
