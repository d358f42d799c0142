"""Realistic, fictitious caseworker mails for the benchmarks.

``generate(count, first, last, seed)`` returns mails dated (Date header, and
the arrival time the benchmarks give them) on weekdays between ``first`` and
``last``, in date order, in the forms clients really send: plain text,
Outlook's HTML-only Word markup in base64 (tables now and then),
multipart/alternative; quoted-printable and base64; utf-8, iso-8859-1 and
cp1252; encoded subjects, signatures, quoted replies. Most are valid items
with fictitious CPR numbers of both age groups; some are meant to fail
(invalid date, under 15, two citizens, too many lines, sender not allowed)
or to be ignored (auto-replies, bounces), a few withdraw an earlier item
or repeat an earlier Message-ID. ``expect`` says what each one is meant to be.
"""

from __future__ import annotations

import base64
import quopri
import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr
from pathlib import Path

DOMAIN = "kommune.example"
FORUM = f"sparring@{DOMAIN}"
CASEWORKERS = [
    ("Karen Provesen", "karen.provesen"), ("Bo Eksempel", "bo.eksempel"), ("Anne Testesen", "anne.testesen"),
    ("Søren Prøvemand", "soeren.proevemand"), ("Mette Dummy", "mette.dummy"), ("Jens Fiktiv", "jens.fiktiv"),
    ("Åse Øvelse", "aase.oevelse"), ("Lars Attrap", "lars.attrap"), ("Pia Modelsen", "pia.modelsen"),
    ("Ole Eksempelsen", "ole.eksempelsen"), ("Hanne Skabelon", "hanne.skabelon"), ("Ali Prøve", "ali.proeve"),
]
OUTSIDERS = ["ven@privat.example", f"karen@{DOMAIN}.evil.example", "info@leverandoer.example"]
HEALTH = [
    "Angst, i behandling hos egen læge.", "Depression, venter på psykiater.", "Rygskade efter arbejdsulykke.",
    "Kroniske smerter – smertebehandling i gang.", "Spiseforstyrrelse, ambulant forløb.",
    "ADHD, medicineret siden 2019.", "Misbrug af hash, ønsker behandling.", "Søvnproblemer og træthed.",
    "Diabetes, dårligt reguleret.", "Sygemeldt med stress i fire måneder.",
]
SOCIAL = [
    "Gæld, ingen bolig.", "Ophold på forsorgshjem.", "Skilsmisse i 2026, økonomiske problemer.",
    "Isoleret, intet netværk.", "Opsagt fra uddannelse, bor hos forældre.", "Huslejerestance, udsættelse truer.",
    "Konflikt med familien, sofasurfer.", "Har mistet dagpengeretten.", "Alenemor med tre børn.",
]
CPR_LABELS = ["CPR:", "CPR-nr.:", "Cpr nummer", "cpr -", "CPR nr:", "CPR-nummer:"]
HEALTH_LABELS = ["Helbred:", "Helbredsforhold:", "helbred -", "HELBRED:", "Helbredsmæssige forhold:"]
SOCIAL_LABELS = ["Sociale udfordringer:", "Sociale forhold:", "sociale udfordringer -", "Sociale forhold"]
SUBJECTS = ["Sparring", "Til sparringsforum", "Sparringsforum – ny borger", "Punkt til dagsorden",
            "Sparring ønskes", "Borger til sparring"]
SIGNATURE = "Venlig hilsen\n{name}\nSagsbehandler, Jobcenter\nTlf. 8959 0000"
QUOTE = ("\n\nFra: Sparringsforum <sparring@kommune.example>\nSendt: 2. januar 2027 09:00\n"
         "Til: {name}\nEmne: Kvittering\n\nTak for din henvendelse.\n")
ENCODINGS = [  # (weight, form)
    (30, "plain-utf8"), (12, "plain-latin1-qp"), (10, "plain-cp1252-qp"), (8, "plain-utf8-base64"),
    (25, "outlook-html"), (15, "alternative"),
]
KINDS = [  # (weight, expect, variant)
    (50, "item", "young"), (40, "item", "adult"), (2, "item", "acute"),
    (2, "rejected", "bad_date"), (2, "rejected", "too_many_lines"), (1.5, "rejected", "under_15"),
    (1, "rejected", "two_cprs"), (3, "quarantined", "outsider"), (2, "ignored", "auto_reply"),
    (1, "ignored", "bounce"), (1, "withdraw", "withdraw"), (1, "duplicate", "duplicate"),
]


@dataclass(frozen=True)
class GenMail:
    raw: bytes
    date: datetime  # the Date header; the arrival time the benchmarks use
    expect: str  # item | rejected | quarantined | ignored | withdraw | duplicate
    variant: str
    form: str


def cpr_for(born: date, rng: random.Random) -> str:
    """A fictitious CPR number whose 7th digit gives ``born``'s century."""
    yy = born.year % 100
    if born.year < 2000:
        seventh = rng.choice("0123" + ("49" if yy > 36 else "") + ("5678" if yy > 57 else ""))
    else:
        seventh = rng.choice("4" + "9" + "5678") if yy <= 36 else rng.choice("5678")
    return f"{born:%d%m}{yy:02d}{seventh}{rng.randrange(1000):03d}"


def birth_for(age_min: int, age_max: int, on: date, rng: random.Random) -> date:
    """A birth date giving an age in [age_min, age_max] on ``on`` (kept off the edges)."""
    years = rng.uniform(age_min + 0.1, age_max + 0.9)
    return on - timedelta(days=int(years * 365.25))


def _cpr_text(digits: str, rng: random.Random) -> str:
    return rng.choice([f"{digits[:6]}-{digits[6:]}", f"{digits[:6]} {digits[6:]}", digits])


class _Writer:
    """One mail's text, then its MIME form."""

    def __init__(self, rng: random.Random, index: int, when: datetime) -> None:
        self.rng, self.index, self.when = rng, index, when
        self.name, local = rng.choice(CASEWORKERS)
        self.sender = f"{local}@{DOMAIN}"
        self.subject = rng.choice(SUBJECTS)
        self.extra_headers = ""

    def body(self, cprs: list[str], lines: int, withdraw: bool = False) -> str:
        rng = self.rng
        out = []
        if withdraw:
            out.append("Træk tilbage venligst.")
        for digits in cprs:
            out.append(f"{rng.choice(CPR_LABELS)} {_cpr_text(digits, rng)}")
        if lines:
            health_n = rng.randint(1, lines - 1) if lines > 1 else 1
            social = rng.sample(SOCIAL, min(len(SOCIAL), lines - health_n))
            health = rng.sample(HEALTH, health_n)
            out.append(f"{rng.choice(HEALTH_LABELS)} {health[0]}")
            out += health[1:]
            if social:
                out.append(f"{rng.choice(SOCIAL_LABELS)} {social[0]}")
                out += social[1:]
        text = "\n".join(out)
        if rng.random() < 0.7:
            text += "\n\n" + SIGNATURE.format(name=self.name)
        if rng.random() < 0.15:
            text += QUOTE.format(name=self.name)
        return text + "\n"

    def headers(self, content: str) -> str:
        subject = self.subject
        if any(ord(c) > 127 for c in subject) or self.rng.random() < 0.1:
            subject = Header(subject, "utf-8").encode()  # =?utf-8?b?...?=
        return (f"From: {formataddr((self.name, self.sender), 'utf-8')}\r\nTo: Sparringsforum <{FORUM}>\r\n"
                f"Subject: {subject}\r\nDate: {format_datetime(self.when)}\r\n"
                f"Message-ID: <bench{self.index:06d}.{self.rng.randrange(10**9)}@mail.{DOMAIN}>\r\n"
                f"MIME-Version: 1.0\r\n{self.extra_headers}{content}")

    def render(self, text: str, form: str) -> bytes:
        if form == "plain-utf8":
            return self._single(text, "text/plain", "utf-8", "8bit")
        if form == "plain-latin1-qp":
            return self._single(text, "text/plain", "iso-8859-1", "quoted-printable")
        if form == "plain-cp1252-qp":
            # cp1252's own characters (en dash 0x96, right quote 0x92) decide the charset.
            return self._single(text.replace("i gang", "i \u2019gang\u2019"), "text/plain", "windows-1252",
                                "quoted-printable")
        if form == "plain-utf8-base64":
            return self._single(text, "text/plain", "utf-8", "base64")
        if form == "outlook-html":
            return self._single(outlook_html(text, self.rng.random() < 0.2), "text/html", "utf-8", "base64")
        return self._alternative(text)

    def _single(self, text: str, ctype: str, charset: str, cte: str) -> bytes:
        head = self.headers(f'Content-Type: {ctype}; charset="{charset}"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n')
        return head.encode("ascii") + _encode(text, charset, cte)

    def _alternative(self, text: str) -> bytes:
        boundary = f"==_alt_{self.index:06d}_=="
        charset, cte = self.rng.choice([("utf-8", "base64"), ("iso-8859-1", "quoted-printable"),
                                        ("windows-1252", "quoted-printable")])
        parts = [("text/plain", charset, cte, text), ("text/html", "utf-8", "base64", outlook_html(text, False))]
        body = b""
        for ctype, cs, enc, content in parts:
            body += (f'--{boundary}\r\nContent-Type: {ctype}; charset="{cs}"\r\n'
                     f"Content-Transfer-Encoding: {enc}\r\n\r\n").encode() + _encode(content, cs, enc) + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        head = self.headers(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n')
        return head.encode("ascii") + body


def _encode(text: str, charset: str, cte: str) -> bytes:
    if charset == "iso-8859-1":
        text = text.replace("\u2013", "-").replace("\u2019", "'")
    data = text.replace("\n", "\r\n").encode(charset)
    if cte == "base64":
        return base64.encodebytes(data).replace(b"\n", b"\r\n")
    if cte == "quoted-printable":
        return quopri.encodestring(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data


def outlook_html(text: str, table: bool) -> str:
    """Outlook's Word HTML for ``text``: MsoNormal paragraphs, or a two-column table."""
    head = ('<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><meta http-equiv="Content-Type" '
            'content="text/html; charset=utf-8"><style><!-- p.MsoNormal {margin:0cm;font-size:11.0pt;'
            'font-family:"Calibri",sans-serif;} --></style></head><body lang="DA" link="#0563C1">'
            '<div class="WordSection1">')
    lines = [_html_escape(line) for line in text.split("\n")]
    if table:
        rows = "".join(f'<tr><td><p class="MsoNormal">{line or "&nbsp;"}<o:p></o:p></p></td></tr>'
                       for line in lines)
        inner = f'<table class="MsoNormalTable" border="0" cellpadding="0">{rows}</table>'
    else:
        inner = "".join(f'<p class="MsoNormal">{line or "<o:p>&nbsp;</o:p>"}<o:p></o:p></p>' for line in lines)
    return head + inner + "</div></body></html>"


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _special(w: _Writer, variant: str, when: datetime, earlier: list[tuple[str, str]]) -> tuple[str, str | None]:
    """(body text, forced form or None) of a mail meant to fail or be ignored."""
    rng, today = w.rng, when.date()
    if variant == "bad_date":
        return w.body([f"3102{rng.randrange(60, 99)}{rng.randrange(4)}{rng.randrange(1000):03d}"], 3), None
    if variant == "too_many_lines":
        return w.body([cpr_for(birth_for(30, 60, today, rng), rng)], rng.randint(6, 8)), None
    if variant == "under_15":
        return w.body([cpr_for(birth_for(6, 13, today, rng), rng)], 2), None
    if variant == "two_cprs":
        return w.body([cpr_for(birth_for(18, 60, today, rng), rng) for _ in range(2)], 2), None
    if variant == "outsider":
        w.sender = rng.choice(OUTSIDERS)
        return w.body([cpr_for(birth_for(18, 60, today, rng), rng)], 2), None
    if variant == "auto_reply":
        w.subject = "Automatisk svar: " + rng.choice(SUBJECTS)
        w.extra_headers = "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n"
        return f"Jeg er på ferie til og med {today + timedelta(days=7):%d.%m.}.\n", "plain-utf8"
    if variant == "withdraw" and earlier:
        w.sender, digits = rng.choice(earlier)
        w.subject = "Træk tilbage"
        return w.body([digits], 0, withdraw=True), "plain-utf8"
    raise ValueError(variant)


def _bounce(index: int, when: datetime) -> bytes:
    boundary = f"==report{index}=="
    return (f"From: Mail Delivery System <MAILER-DAEMON@mail.{DOMAIN}>\r\nTo: {FORUM}\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nDate: {format_datetime(when)}\r\n"
            f"Message-ID: <bounce{index:06d}@mail.{DOMAIN}>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type="delivery-status"; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.{DOMAIN}\r\n\r\n"
            f"Final-Recipient: rfc822; nobody@{DOMAIN}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"--{boundary}--\r\n").encode()


def moments(count: int, first: datetime, last: datetime, rng: random.Random) -> list[datetime]:
    """``count`` sorted working-day moments (07:30-16:30) between ``first`` and ``last``."""
    days = [first.date() + timedelta(days=n) for n in range((last.date() - first.date()).days + 1)]
    days = [d for d in days if d.weekday() < 5] or days
    out = []
    for _ in range(count):
        day = rng.choice(days)
        moment = datetime(day.year, day.month, day.day, tzinfo=first.tzinfo) + timedelta(
            seconds=rng.randrange(7 * 3600 + 1800, 16 * 3600 + 1800))
        out.append(min(max(moment, first), last))
    return sorted(out)


def generate(count: int, first: datetime, last: datetime, seed: int = 2027) -> list[GenMail]:
    rng = random.Random(seed)
    weights = [k[0] for k in KINDS]
    forms, form_weights = [f for _, f in ENCODINGS], [w for w, _ in ENCODINGS]
    out: list[GenMail] = []
    earlier: list[tuple[str, str]] = []  # (sender, cpr) of items, for withdrawals
    for index, when in enumerate(moments(count, first, last, rng)):
        _, expect, variant = rng.choices(KINDS, weights)[0]
        form = rng.choices(forms, form_weights)[0]
        if variant == "duplicate" and out:
            out.append(GenMail(rng.choice(out).raw, when, "duplicate", variant, "copy"))
            continue
        if variant == "bounce":
            out.append(GenMail(_bounce(index, when), when, expect, variant, "report"))
            continue
        if variant == "withdraw" and not earlier or variant == "duplicate":
            expect, variant = "item", "young"
        w = _Writer(rng, index, when)
        if expect == "item":
            age = (15, 29) if variant == "young" else (30, 75)
            digits = cpr_for(birth_for(*age, when.date(), rng), rng)
            if variant == "acute":
                w.subject = rng.choice(["AKUT: sparring", "Akut - borger til sparring"])
            if rng.random() < 0.1:  # CPR in the subject instead of the body
                w.subject = f"{w.subject} CPR {_cpr_text(digits, rng)}"
                text = w.body([], rng.randint(2, 5))
            else:
                text = w.body([digits], rng.randint(2, 5))
            earlier.append((w.sender, digits))
        else:
            text, forced = _special(w, variant, when, earlier)
            form = forced or form
        out.append(GenMail(w.render(text, form), when, expect, variant, form))
    return out


def summary(mails: list[GenMail]) -> str:
    kinds = Counter(m.expect for m in mails)
    forms = Counter(m.form for m in mails)
    return (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + "; forms: "
            + ", ".join(f"{k} {v}" for k, v in sorted(forms.items())))


def write_inbox(mails: list[GenMail], inbox: Path) -> None:
    """The mails as ``.eml`` files (mtime = date) for the folder source."""
    import os

    inbox.mkdir(parents=True, exist_ok=True)
    for n, mail in enumerate(mails):
        path = inbox / f"{n:06d}.eml"
        path.write_bytes(mail.raw)
        os.utime(path, (mail.date.timestamp(), mail.date.timestamp()))
