"""Issue 13.5-6: S/MIME agendas out, encrypted and signed items in.

``openssl smime`` is the independent reader and writer: what sparring
encrypts must open with the recipient's key in OpenSSL and with no other,
and what OpenSSL signs or encrypts (as a caseworker's client would) must be
taken in.
"""

from __future__ import annotations

import email
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from scheduler.config import load_config
from scheduler.errors import ConfigError
from scheduler.services import deadlines
from scheduler.store.tables import OutboxEntry
from tests.appkit import CONFIG, at, build, ingest, item_mail
from tests.smimekit import START, issue, make_ca, pem, write_pair

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is needed")

CPR = "150303-4321"
COORDINATORS = ("koordinator.social@kommune.example", "koordinator.unge@kommune.example")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, the forum's pair, each coordinator's pair, an outsider's pair."""
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    (root / "ca.pem").write_bytes(pem(ca[0]))
    pairs = {address: issue(ca, address) for address in
             (*COORDINATORS, "sparring@kommune.example", "karen@kommune.example", "ole@kommune.example")}
    files = {address: write_pair(root / "keys", address, pair) for address, pair in pairs.items()}
    return {"root": root, "ca": ca, "pairs": pairs, "files": files}


def _config(pki, certs: Path, encrypt: bool = True, **smime):
    config = load_config(CONFIG)
    series = tuple(s.model_copy(update={"encryption": "smime"}) if s.id == "unge" and encrypt else s
                   for s in config.series)
    forum_cert, forum_key = pki["files"]["sparring@kommune.example"]
    settings = {"certificates_dir": str(certs), "ca_file": str(pki["root"] / "ca.pem"),
                "signing_cert": str(forum_cert), "signing_key": str(forum_key),
                "decrypt_cert": str(forum_cert), "decrypt_key": str(forum_key), **smime}
    return config.model_copy(update={"series": series, "smime": config.smime.model_copy(update=settings)})


def _certs(tmp_path, pki, addresses) -> Path:
    folder = tmp_path / "certs"
    folder.mkdir(exist_ok=True)
    for address in addresses:
        (folder / f"{address}.pem").write_bytes(pem(pki["pairs"][address][0]))
    return folder


def _outbox(tmp_path) -> list[tuple[Path, email.message.Message]]:
    return [(p, email.message_from_bytes(p.read_bytes())) for p in sorted((tmp_path / "outbox").glob("*.eml"))]


def _openssl_decrypt(path: Path, pair_files) -> subprocess.CompletedProcess:
    cert, key = pair_files
    return subprocess.run(["openssl", "smime", "-decrypt", "-in", str(path), "-recip", str(cert), "-inkey", str(key)],
                          capture_output=True)


def _agenda_day(tmp_path, monkeypatch, config):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=config)
    ingest(app, item_mail(CPR, "a1"), "2027-01-04T09:00")
    dispatcher.run_once()
    app.clock.set(at("2027-01-04T12:00"))
    assert deadlines.send_agenda(app, "unge/2027-01-07")
    dispatcher.run_once()
    return app, dispatcher


def test_the_agenda_opens_with_the_coordinators_key_and_no_other(tmp_path, monkeypatch, pki):
    certs = _certs(tmp_path, pki, COORDINATORS)
    _agenda_day(tmp_path, monkeypatch, _config(pki, certs))
    agendas = [(p, m) for p, m in _outbox(tmp_path) if "Dagsorden" in str(email.header.make_header(
        email.header.decode_header(m["Subject"] or "")))]
    (path, message), = agendas  # the caseworker has no certificate: her copy is not sent
    assert message.get_content_type() == "application/pkcs7-mime"
    assert "enveloped-data" in message["Content-Type"]
    raw = path.read_bytes()
    assert b"Angst" not in raw and b"150303" not in raw
    for coordinator in COORDINATORS:
        opened = _openssl_decrypt(path, pki["files"][coordinator])
        assert opened.returncode == 0
        assert b"multipart/signed" in opened.stdout[:300], "signed with the forum's certificate"
    assert _openssl_decrypt(path, pki["files"]["ole@kommune.example"]).returncode != 0
    # The signature holds for OpenSSL against the CA.
    inner = tmp_path / "inner.eml"
    inner.write_bytes(_openssl_decrypt(path, pki["files"][COORDINATORS[0]]).stdout)
    verified = subprocess.run(["openssl", "smime", "-verify", "-in", str(inner), "-CAfile",
                               str(pki["root"] / "ca.pem")], capture_output=True)
    assert verified.returncode == 0 and "Angst".encode() in verified.stdout


def test_openssl_reports_aes_256(tmp_path, monkeypatch, pki):
    certs = _certs(tmp_path, pki, COORDINATORS)
    _agenda_day(tmp_path, monkeypatch, _config(pki, certs, signing_cert="", signing_key=""))
    path = next(p for p, m in _outbox(tmp_path) if m.get_content_type() == "application/pkcs7-mime")
    shown = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-in", str(path)], capture_output=True, text=True)
    assert "aes-256-cbc" in shown.stdout


def test_a_recipient_without_a_valid_certificate_gets_nothing_and_the_admin_is_told_once(tmp_path, monkeypatch, pki):
    certs = _certs(tmp_path, pki, COORDINATORS[:1])
    other_ca = make_ca("Another CA")
    # The second coordinator's certificate: expired; the caseworker's: from another CA.
    (certs / f"{COORDINATORS[1]}.pem").write_bytes(
        pem(issue(pki["ca"], COORDINATORS[1], days=30, start=START)[0]))
    (certs / "karen@kommune.example.pem").write_bytes(pem(issue(other_ca, "karen@kommune.example")[0]))
    app, dispatcher = _agenda_day(tmp_path, monkeypatch, _config(pki, certs))
    encrypted = [m for _, m in _outbox(tmp_path) if m.get_content_type() == "application/pkcs7-mime"]
    assert len(encrypted) == 1
    for _, message in _outbox(tmp_path):
        assert b"Angst" not in message.as_bytes(), "nothing with the item in plain"
    with app.transaction() as repo:
        reports = [e for e in repo.db.scalars(select(OutboxEntry).where(OutboxEntry.kind == "report"))]
    keys = sorted(e.dedupe_key for e in reports if e.dedupe_key.startswith("smime:"))
    assert keys == ["smime:karen@kommune.example:2027-01-04", f"smime:{COORDINATORS[1]}:2027-01-04"]
    dispatcher.run_once()
    notices = [m for _, m in _outbox(tmp_path) if m["To"] == "it-drift@kommune.example"]
    texts = [m.get_payload(decode=True).decode() for m in notices]
    assert any("udløbet" in t and COORDINATORS[1] in t for t in texts)
    assert any("betroet CA" in t for t in texts)
    assert all("150303" not in t and "Angst" not in t for t in texts)
    # An updated agenda the same day: no second notice.
    ingest(app, item_mail("020304-4002", "acute", subject="Akut sparring"), "2027-01-04T13:00")
    dispatcher.run_once()
    with app.transaction() as repo:
        count = len([e for e in repo.db.scalars(select(OutboxEntry)) if e.dedupe_key.startswith("smime:")])
    assert count == 2


def test_a_certificate_for_another_address_is_refused(pki):
    from scheduler.mail import smime

    cert = pki["pairs"]["ole@kommune.example"][0]
    now = datetime(2027, 1, 4, tzinfo=timezone.utc)
    assert smime.certificate_problem(cert, "karen@kommune.example", now, [pki["ca"][0]]) == "issued to another address"
    assert smime.certificate_problem(cert, "ole@kommune.example", now, [pki["ca"][0]]) is None
    assert smime.certificate_problem(cert, "ole@kommune.example", now + timedelta(days=2000), []) == "expired"


def test_a_series_with_smime_needs_a_certificates_folder(tmp_path, monkeypatch, pki):
    with pytest.raises(ConfigError, match="certificates_dir"):
        build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config(pki, Path(), certificates_dir=""))


# -- S/MIME in: a caseworker's client signs and encrypts (OpenSSL plays it) ------------


def _openssl(*args, data: bytes) -> bytes:
    done = subprocess.run(["openssl", "smime", *args], input=data, capture_output=True, check=True)
    return done.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _item_entity(cpr: str = CPR) -> bytes:
    return (f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            f"CPR: {cpr}\r\nHelbred: Angst.\r\nSociale udfordringer: Gæld.\r\n").encode()


def _headers(mid: str, sender: str = "karen@kommune.example") -> bytes:
    return (f"From: {sender}\r\nTo: sparring@kommune.example\r\nSubject: Sparring\r\n"
            f"Date: Mon, 04 Jan 2027 09:00:00 +0100\r\nMessage-ID: <{mid}@kommune.example>\r\n").encode()


def _signed(pki, signer_files, entity: bytes) -> bytes:
    cert, key = signer_files
    return _openssl("-sign", "-signer", str(cert), "-inkey", str(key), "-md", "sha256", data=entity)


def _encrypted(to_cert: Path, entity: bytes) -> bytes:
    return _openssl("-encrypt", "-aes256", str(to_cert), data=entity)


def test_an_encrypted_and_signed_item_is_taken_in_and_answered_encrypted(tmp_path, monkeypatch, pki):
    certs = _certs(tmp_path, pki, ("karen@kommune.example",))
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config(pki, certs, encrypt=False))
    forum_cert, _ = pki["files"]["sparring@kommune.example"]
    signed = _signed(pki, pki["files"]["karen@kommune.example"], _item_entity())
    raw = _headers("enc1") + _encrypted(forum_cert, signed)
    assert b"Angst" not in raw and b"150303" not in raw
    outcome = ingest(app, raw, "2027-01-04T09:00")
    assert outcome.outcome == "accepted", outcome.reason
    with app.transaction() as repo:
        (item,) = repo.items_of_session("unge/2027-01-07")
    assert item.cpr.formatted == CPR and item.health == ("Angst.",)
    dispatcher.run_once()
    (path, receipt), = [(p, m) for p, m in _outbox(tmp_path) if m["Auto-Submitted"] == "auto-replied"]
    assert receipt.get_content_type() == "application/pkcs7-mime", "the receipt goes back encrypted"
    assert _openssl_decrypt(path, pki["files"]["karen@kommune.example"]).returncode == 0


def test_a_receipt_to_an_encrypted_item_goes_plain_without_the_senders_certificate(tmp_path, monkeypatch, pki):
    certs = _certs(tmp_path, pki, ())
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config(pki, certs, encrypt=False))
    forum_cert, _ = pki["files"]["sparring@kommune.example"]
    outcome = ingest(app, _headers("enc2") + _encrypted(forum_cert, _item_entity()), "2027-01-04T09:00")
    assert outcome.outcome == "accepted"
    dispatcher.run_once()
    (receipt,) = [m for _, m in _outbox(tmp_path) if m["Auto-Submitted"] == "auto-replied"]
    assert receipt.get_content_type() == "text/plain"  # masked CPR only, no health text


@pytest.mark.parametrize("case, code", [
    ("untrusted", "smime_bad_signature"),
    ("changed", "smime_bad_signature"),
    ("other_signer", "smime_signer_mismatch"),
    ("not_to_us", "smime_undecryptable"),
])
def test_a_forged_or_foreign_item_is_quarantined(tmp_path, monkeypatch, pki, case, code):
    certs = _certs(tmp_path, pki, ())
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config(pki, certs, encrypt=False))
    forum_cert, _ = pki["files"]["sparring@kommune.example"]
    karen = pki["files"]["karen@kommune.example"]
    if case == "untrusted":
        rogue = write_pair(tmp_path / "rogue", "karen", issue(make_ca("Rogue CA"), "karen@kommune.example"))
        body = _signed(pki, rogue, _item_entity())
    elif case == "changed":
        body = _signed(pki, karen, _item_entity()).replace(b"Angst.", b"Intet.")
    elif case == "other_signer":
        body = _signed(pki, pki["files"]["ole@kommune.example"], _item_entity())
    else:
        body = _encrypted(pki["files"]["ole@kommune.example"][0], _item_entity())
    if case != "not_to_us":
        body = _encrypted(forum_cert, body)
    outcome = ingest(app, _headers(f"q-{case}") + body, "2027-01-04T09:00")
    assert (outcome.outcome, outcome.extra.get("code")) == ("quarantined", code)
    with app.transaction() as repo:
        assert repo.items_of_session("unge/2027-01-07") == []


def test_a_signed_but_unencrypted_item_is_verified_too(tmp_path, monkeypatch, pki):
    certs = _certs(tmp_path, pki, ())
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config(pki, certs, encrypt=False))
    signed = _signed(pki, pki["files"]["karen@kommune.example"], _item_entity())
    assert ingest(app, _headers("s1") + signed, "2027-01-04T09:00").outcome == "accepted"
    forged = _signed(pki, pki["files"]["karen@kommune.example"], _item_entity()).replace(b"Angst.", b"Intet.")
    assert ingest(app, _headers("s2") + forged, "2027-01-04T09:05").outcome == "quarantined"


def test_an_encrypted_items_receipt_goes_encrypted_when_a_plain_mail_follows_it_in_the_batch(
        tmp_path, monkeypatch, pki):
    """Receipts are rendered once the whole batch is decided; the encrypted
    item's receipt keeps its own mail's encryption, not the last mail's."""
    from scheduler.mail.folder import FolderSource
    from scheduler.services.intake import Intake
    from tests.daemonkit import drop_mail

    certs = _certs(tmp_path, pki, ("karen@kommune.example",))
    app, dispatcher = build(tmp_path, "2027-01-04T09:05", monkeypatch, config=_config(pki, certs, encrypt=False))
    forum_cert, _ = pki["files"]["sparring@kommune.example"]
    inbox = tmp_path / "inbox"
    drop_mail(inbox, "a-enc.eml", _headers("batch-enc") + _encrypted(forum_cert, _item_entity()),
              at("2027-01-04T09:00"))
    drop_mail(inbox, "b-plain.eml", item_mail("010203-4321", "batch-plain"), at("2027-01-04T09:01"))
    outcomes = Intake(app).run(FolderSource(inbox, app.clock, cipher=app.cipher))
    assert [o.outcome for o in outcomes] == ["accepted", "accepted"], [o.reason for o in outcomes]
    dispatcher.run_once()
    receipts = {m["In-Reply-To"]: m for _, m in _outbox(tmp_path) if m["Auto-Submitted"] == "auto-replied"}
    assert receipts["<batch-enc@kommune.example>"].get_content_type() == "application/pkcs7-mime"
    assert receipts["<batch-plain@kommune.example>"].get_content_type() == "text/plain"
