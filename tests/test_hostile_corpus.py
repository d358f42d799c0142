"""A few thousand hostile mails through ``ingest --eml`` and ``simulate``
(issue 11, "Done when"), generated here by a seeded mutator over the mail
fixtures and the crashers of tests/test_hostile.py, never checked in.

Every mail must end with exactly one outcome (and, in ``simulate``, in
exactly one folder), no traceback may be printed, no mail may be answered
twice, and no CPR number or health text may reach stderr or the log.
"""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path

import pytest

from scheduler import cli
from tests.appkit import CONFIG
from tests.test_hostile import CRASHERS, request_mail

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "mail").glob("*.eml"))
OUTCOMES = {"accepted", "moved", "rejected", "quarantined", "ignored", "withdrawn", "duplicate"}
FOLDERS = ("processed", "rejected", "quarantine", "ignored")
CPR = re.compile(rb"(?<!\d)\d{6}[-\u2013 ]?\d{4}(?!\d)".decode())
HEALTH_WORDS = ("Angst", "angst", "Helbred:", "Sociale udfordringer:", "depression", "misbrug")

HOSTILE_VALUES = {
    b"From": [b"\xc3\xa5nne@kommune.example", b"anne.testesen@kommune.example <evil@x.org>",
              b"a@kommune.example)<evil@x.org>", b"a@kommune.example, evil@x.org", b"", b"<>", b"@",
              b"=?utf-8?b?AAAA?= <a@kommune.example>", b"\"unterminated <a@kommune.example>",
              b"sparring@kommune.example", b"MAILER-DAEMON@kommune.example", b"a@kommune.example\x00"],
    b"Message-ID": [b"<n\xc3\xa5@x>", b"<>", b"<" + b"a" * 3000 + b"@x>", b"<a b@x>", b"\x00", b"<<<>>>"],
    b"Date": [b"Fri, 31 Dec 9999 23:59:59 -1200", b"Mon, 04 Jan 2027 09:\xff2:00 +0100", b"Mon, 01 Jan 0001 "
              b"00:00:00 +1400", b"yesterday", b"Mon, 32 Foo 2027 25:61:61 +9999", b""],
    b"Subject": [b"=?utf-8?q?a=C3=A6?= " * 900, b"=?x-unknown?b?////?=", b"=?utf-8?b?" + b"A" * 5000 + b"?=",
                 b"Re: Afvist: din mail til sparringsforum", b"AKUT Netv\xc3\xa6rksm\xc3\xb8de", b"\xff\xfe\x00",
                 b"Automatisk svar: ude"],
    b"Content-Type": [b'text/plain; charset="utf\x00-8"', b"text/plain; charset=unicode_escape",
                      b"multipart/mixed", b"multipart/mixed; boundary=", b"text/calendar; method=REPLY",
                      b"multipart/report; report-type=delivery-status; boundary=x",
                      b"text/plain; charset*=bogus''%ff; name*0*=utf-8''%e6; name*1=x",
                      b"message/rfc822", b"text/html; charset=cp1252", b"a/b/c; ;;; =="],
    b"Content-Transfer-Encoding": [b"base64", b"quoted-printable", b"x-uuencode", b"8bit", b"\xff"],
}
NOISE = [b"\x00", b"\xff", b"\r", b"\n", b"\r\n\r\n", b"=?", b"?=", b"--", b"\xc3", b"\xe2\x80\x93",
         b"BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\n", b"RECURRENCE-ID:notadate\r\n", b"CPR: ", b"120502\xe2\x80\x934127",
         b"Periode: 2027-02-01 - 9999-12-31\r\n", b"Eksterne: " + b", ".join(b"p%d@x.org" % n for n in range(40))]


def seeds() -> list[bytes]:
    found = [p.read_bytes() for p in FIXTURES] + list(CRASHERS.values())
    found += [request_mail("2027-02-01 - 9999-12-31", "s1"), request_mail("2027-02-01 - 2027-02-05", "s2"),
              request_mail("2027-01-10 - 2027-01-20", "s3", externals=", ".join(f"p{n}@x.org" for n in range(25)))]
    return found


def _header_swap(rng: random.Random, raw: bytes) -> bytes:
    name = rng.choice(list(HOSTILE_VALUES))
    value = rng.choice(HOSTILE_VALUES[name])
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    lines = [line for line in re.split(rb"\r?\n", head) if not line.lower().startswith(name.lower() + b":")]
    if rng.random() < 0.2:  # a second one of the same
        lines.append(name + b": " + rng.choice(HOSTILE_VALUES[name]))
    lines.insert(rng.randrange(len(lines) + 1), name + b": " + value)
    return b"\r\n".join(lines) + (sep or b"\r\n\r\n") + body


def _noise(rng: random.Random, raw: bytes) -> bytes:
    at = rng.randrange(len(raw) + 1)
    return raw[:at] + rng.choice(NOISE) + raw[at:]


def _flip(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _cut(rng: random.Random, raw: bytes) -> bytes:
    return raw[:rng.randrange(len(raw) + 1)]


def _splice(rng: random.Random, raw: bytes, other: bytes) -> bytes:
    return raw[:rng.randrange(len(raw) + 1)] + other[rng.randrange(len(other) + 1):]


def _repeat(rng: random.Random, raw: bytes) -> bytes:
    start = rng.randrange(len(raw) + 1)
    chunk = raw[start:start + rng.randint(1, 200)]
    return raw[:start] + chunk * rng.randint(2, 300) + raw[start:]


def _identity(rng: random.Random, raw: bytes, n: int) -> bytes:
    """Most mails from a sender of their own, as a fuzzer has many addresses
    (the rate limit is tested on its own), some from the forum itself; most
    with a Message-ID of their own, some copies of a seed's."""
    address = f"cw{n % 300}@kommune.example".encode() if rng.random() < 0.9 else b"sparring@kommune.example"
    raw = re.sub(rb"(?im)^From:[^\r\n]*", b"From: " + address, raw, count=1)
    if rng.random() < 0.9:
        raw = re.sub(rb"(?im)^Message-ID:[^\r\n]*", f"Message-ID: <fz{n}@kommune.example>".encode(), raw, count=1)
    return raw


def corpus(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    base = seeds()
    mails = []
    for n in range(count):
        raw = _identity(rng, rng.choice(base), n)
        for _ in range(rng.randint(1, 4)):
            step = rng.randrange(6)
            if step == 0:
                raw = _header_swap(rng, raw)
            elif step == 1:
                raw = _noise(rng, raw)
            elif step == 2:
                raw = _flip(rng, raw)
            elif step == 3:
                raw = _cut(rng, raw) if rng.random() < 0.3 else _noise(rng, raw)
            elif step == 4:
                raw = _splice(rng, raw, rng.choice(base))
            else:
                raw = _repeat(rng, raw)
        mails.append(raw)
    return mails


def _clean(text: str, where: str) -> None:
    assert "Traceback" not in text, f"a traceback in {where}"
    assert "failed permanently" not in text, f"an answer that could not be sent, in {where}"
    assert not CPR.search(text), f"a CPR number in {where}"
    for word in HEALTH_WORDS:
        assert word not in text, f"health text in {where}"


def _replies(outbox: Path) -> list[str]:
    found = []
    for path in outbox.glob("*.eml"):
        head = path.read_bytes().partition(b"\r\n\r\n")[0]
        match = re.search(rb"(?im)^In-Reply-To: (.*)$", head)
        if match:
            found.append(match.group(1).strip().decode())
    return found


@pytest.fixture
def key(monkeypatch):
    from scheduler.store.keys import new_key

    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())


def test_ingest_eml_gives_every_hostile_mail_one_outcome_and_at_most_one_answer(tmp_path, capsys, caplog, key):
    caplog.set_level(logging.DEBUG)
    mails = corpus(2000, seed=11)
    paths = []
    for n, raw in enumerate(mails):
        path = tmp_path / "in" / f"m{n:04d}.eml"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(raw)
        paths.append(str(path))
    data = tmp_path / "data"
    code = cli.main(["--config", str(CONFIG), "--data-dir", str(data), "--now", "2027-01-04T08:00",
                     "ingest", "--json", "--eml", *paths])
    out, err = capsys.readouterr()
    assert code == 0
    _clean(err, "stderr")
    _clean(caplog.text, "the log")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(mails)
    assert {line["outcome"] for line in lines} <= OUTCOMES
    kinds = {line["outcome"] for line in lines}
    assert {"accepted", "rejected", "quarantined", "ignored"} <= kinds, "the corpus reaches every decision"
    replies = _replies(data / "outbox")
    assert replies and len(replies) == len(set(replies)), "no mail is answered twice"
    assert all(r.isascii() for r in replies)


def test_simulate_files_every_hostile_mail_in_exactly_one_folder(tmp_path, capsys, caplog, key):
    caplog.set_level(logging.DEBUG)
    data = tmp_path / "data"
    inbox = data / "inbox"
    inbox.mkdir(parents=True)
    mails = corpus(1000, seed=12)
    for n, raw in enumerate(mails):
        (inbox / f"m{n:04d}.eml").write_bytes(raw)
    code = cli.main(["--config", str(CONFIG), "--data-dir", str(data), "simulate",
                     "--from", "2027-01-04", "--to", "2027-01-17"])
    out, err = capsys.readouterr()
    assert code == 0
    _clean(err, "stderr")
    _clean(caplog.text, "the log")
    left = {p.name for p in inbox.glob("*.eml")}  # dated outside the period: not taken in
    filed = [p.name.removesuffix(".enc") for folder in FOLDERS for p in (data / folder).glob("*.eml.enc")]
    assert len(filed) == len(set(filed)), "no mail in two folders"
    assert set(filed) | left == {f"m{n:04d}.eml" for n in range(len(mails))} and not set(filed) & left
    skipped = re.search(r"left in the inbox \(dated outside the period\): (\d+)", out)
    assert len(left) == (int(skipped.group(1)) if skipped else 0)
    totals = re.search(r"^mails: (.*)$", out, re.MULTILINE).group(1)
    assert sum(int(part.rsplit(" ", 1)[1]) for part in totals.split(", ")) == len(filed)
    replies = _replies(data / "outbox")
    assert len(replies) == len(set(replies)), "no mail is answered twice"
