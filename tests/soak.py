"""A simulated quarter through real servers, with seeded random faults
(issue 14 item 3); ``tests/test_soak.py`` runs it at 5 %, ``bench/faults``
at 20 %.

The mail of a quarter (``bench/mailgen``) arrives in Dovecot at its own
time (APPEND with INTERNALDATE, past the injector: that is the world, not
sparring); sparring takes it in over IMAP and sends over SMTP (aiosmtpd),
both through the fault injector's proxies (``tests/servers/faults.py``),
and keeps its calendar in the local backend. The clock is simulated and
jumps from event to event as ``sparring simulate`` does: arrivals are taken
in at once (the daemon's next poll), agendas compiled at their deadlines,
and the outbox sends at each entry's own back-off time, as the daemon's
sender thread does.

Before each operation towards a server (an IMAP fetch or settle, an SMTP
send) a seeded draw decides, at ``rate``, whether a fault is armed for it:
at the TCP level (connections refused, reset after some bytes, a stall the
client must time out) or at the protocol level (IMAP NO/BYE on FETCH and
MOVE; SMTP 451 for a recipient, 421/451 to DATA), or an SMTP outage that
lasts some simulated minutes. The run is compared with the same quarter
run without faults.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from scheduler.clock import FixedClock
from scheduler.config import load_config
from scheduler.mail.imap import ImapSource
from scheduler.mail.smtp import SmtpTransport
from scheduler.services import deadlines, meetings, publishing
from scheduler.services.dispatch import Dispatcher, next_due, retry_failed
from scheduler.services.intake import Intake
from scheduler.store.tables import Mail, OutboxEntry
from scheduler.tls import client_context
from scheduler.wiring import make_app, make_calendar

TZ = ZoneInfo("Europe/Copenhagen")
CONFIG = Path(__file__).parent.parent / "config" / "sparring.toml"
# Thirteen weeks, in the past: Dovecot gives a mail APPENDed with an
# INTERNALDATE in the future the time of the APPEND instead.
FIRST, LAST = date(2026, 1, 5), date(2026, 4, 3)
MAILS = 150
CLIENT_TIMEOUT = 1.5  # seconds: how long a stalled server is waited for (real time)
IMAP_FAULTS = ("down", "reset", "stall", "no_fetch", "bye_fetch", "no_move", "bye_move")
SMTP_FAULTS = ("down", "reset", "stall", "451_rcpt", "421_data", "451_data", "outage")
# The faults that may leave a message delivered but its sending unrecorded.
MAY_DUPLICATE = {"smtp:reset", "smtp:stall"}
_LATE = re.compile(r" \(sendt efter fristen\)| \(sent after the deadline\)")
_LATE_HTML = re.compile(r"<p><strong>[^<]*(?:efter fristen|after the deadline)[^<]*</strong></p>")
_SLOT_UID = re.compile(r"(sparring-[a-z]+-)[a-z0-9]+@")  # random per event: not part of the comparison


@dataclass
class Tally:
    injected: int = 0
    recovered: int = 0  # operations that failed under the fault and succeeded on a retry
    failed: int = 0  # reported failures (outbox entries failed)
    recover_seconds: list[float] = field(default_factory=list)  # server back -> the operation done


@dataclass
class Run:
    sent: Counter  # normalised outgoing message -> copies (mail to the administrator left out)
    by_message_id: Counter
    reports: int  # mails to the administrator
    decisions: dict
    calendar: list[str]
    tally: dict[str, Tally]
    operations: int
    backoff_cap: float
    faults_met: dict[str, list[str]] = field(default_factory=dict)  # Message-ID -> faults of its failed sends

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.by_message_id.values() if n > 1)

    def duplicates_by_fault(self) -> Counter:
        """Each extra copy, under the last fault its message met before it went."""
        found = Counter()
        for message_id, copies in self.by_message_id.items():
            if copies > 1:
                met = self.faults_met.get(message_id) or ["unattributed"]
                found[met[-1]] += copies - 1
        return found


class Servers:
    """The real servers and the injector's proxies in front of them."""

    def __init__(self, dovecot, smtp, imap_proxy, smtp_proxy) -> None:
        self.dovecot, self.smtp, self.imap_proxy, self.smtp_proxy = dovecot, smtp, imap_proxy, smtp_proxy


class Injector:
    """Arms one fault before an operation, at ``rate``, and heals it after."""

    def __init__(self, servers: Servers, rate: float, seed: int, clock: FixedClock) -> None:
        self.servers, self.rate, self.rng, self.clock = servers, rate, random.Random(seed), clock
        self.tally: dict[str, Tally] = defaultdict(Tally)
        self.operations = 0
        self.outage_until: datetime | None = None  # an SMTP outage, in simulated time
        self.refuse_next: str | None = None
        self.transport: FaultyTransport | None = None

    def arm(self, service: str) -> str | None:
        self.operations += 1
        if service == "smtp" and self._in_outage():
            return "smtp:outage"
        if self.outage_until is not None:  # over (in simulated time): the server is back
            self.outage_until = None
            self.servers.smtp_proxy.up()
        if self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(IMAP_FAULTS if service == "imap" else SMTP_FAULTS)
        self.tally[f"{service}:{kind}"].injected += 1
        getattr(self, f"_{service}_{kind}")()
        return f"{service}:{kind}"

    def heal(self) -> None:
        self.servers.imap_proxy.heal()
        self.servers.smtp_proxy.heal()
        handler = self.servers.smtp.handler
        handler.refuse.clear()
        handler.data_answers.clear()
        if self._in_outage():
            self.servers.smtp_proxy.down()

    def _in_outage(self) -> bool:
        return self.outage_until is not None and self.clock.now() < self.outage_until

    # -- IMAP ---------------------------------------------------------------

    def _imap_down(self) -> None:
        self.servers.imap_proxy.down()

    def _imap_reset(self) -> None:
        self.servers.imap_proxy.toxic("reset_peer", after_bytes=self.rng.randint(50, 4000))

    def _imap_stall(self) -> None:
        self.servers.imap_proxy.toxic("timeout", timeout=0)

    def _imap_no_fetch(self) -> None:
        from tests.servers.faults import imap_no

        self.servers.imap_proxy.answer(r"^\S+ UID FETCH", imap_no(), times=1)

    def _imap_bye_fetch(self) -> None:
        from tests.servers.faults import imap_bye

        self.servers.imap_proxy.answer(r"^\S+ UID FETCH", imap_bye(), close=True, times=1)

    def _imap_no_move(self) -> None:
        from tests.servers.faults import imap_no

        self.servers.imap_proxy.answer(r"^\S+ UID MOVE", imap_no(), times=1)

    def _imap_bye_move(self) -> None:
        from tests.servers.faults import imap_bye

        self.servers.imap_proxy.answer(r"^\S+ UID MOVE", imap_bye(), close=True, times=1)

    # -- SMTP ---------------------------------------------------------------

    def _smtp_down(self) -> None:
        self.servers.smtp_proxy.down()

    def _smtp_reset(self) -> None:
        self.servers.smtp_proxy.toxic("reset_peer", stream="upstream", after_bytes=self.rng.randint(100, 6000))

    def _smtp_stall(self) -> None:
        self.servers.smtp_proxy.toxic("timeout", timeout=0)

    def _smtp_451_rcpt(self) -> None:
        self.refuse_next = "451 4.3.0 Injected: try again later"  # the send at hand's recipients

    def _smtp_421_data(self) -> None:
        self.servers.smtp.refuse_data("421 4.3.2 Injected: service not available")

    def _smtp_451_data(self) -> None:
        self.servers.smtp.refuse_data("451 4.3.0 Injected: local error")

    def _smtp_outage(self) -> None:
        self.outage_until = self.clock.now() + timedelta(minutes=self.rng.randint(2, 30))
        self.servers.smtp_proxy.down()


class FaultySource:
    """The IMAP source, each fetch and settle one operation for the injector."""

    def __init__(self, source: ImapSource, injector: Injector) -> None:
        self.source, self.injector = source, injector
        self.failed_under: list[str] = []  # faults of operations that failed, not yet recovered

    def _op(self, name: str, *args):
        fault = self.injector.arm("imap")
        try:
            result = getattr(self.source, name)(*args)
        except Exception:
            if fault:
                self.failed_under.append(fault)
            raise
        finally:
            self.injector.heal()
        for earlier in self.failed_under:
            self.injector.tally[earlier].recovered += 1
            self.injector.tally[earlier].recover_seconds.append(0.0)
        self.failed_under = []
        return result

    def fetch(self, limit: int):
        return self._op("fetch", limit)

    def settle(self, moves) -> None:
        return self._op("settle", moves)

    def wait(self, timeout: float) -> bool:
        return False

    def close(self) -> None:
        self.source.close()


class FaultyTransport:
    """The SMTP transport, each send one operation for the injector."""

    def __init__(self, transport: SmtpTransport, injector: Injector) -> None:
        self.transport, self.injector = transport, injector
        self.failed_under: dict[str, tuple[str, datetime]] = {}  # Message-ID -> (last fault, when it ended)
        self.met: dict[str, list[str]] = defaultdict(list)  # Message-ID -> faults its failed sends met
        self.where = transport.where if hasattr(transport, "where") else "smtp"

    def send(self, mail) -> None:
        injector = self.injector
        injector.refuse_next = None
        fault = injector.arm("smtp")
        if injector.refuse_next:
            for address in mail.recipients:
                injector.servers.smtp.refuse(address, injector.refuse_next, times=1)
        key = _message_id(mail.message)
        try:
            self.transport.send(mail)
        except Exception:
            if fault:
                self.met[key].append(fault)
                self.failed_under[key] = (fault, self._ended(fault))
            raise
        finally:
            injector.heal()
        if key in self.failed_under:
            earlier, ended = self.failed_under.pop(key)
            tally = injector.tally[earlier]
            tally.recovered += 1
            tally.recover_seconds.append(max(0.0, (injector.clock.now() - ended).total_seconds()))

    def _ended(self, fault: str) -> datetime:
        """When the server was back: the outage's end, or now for a one-operation fault."""
        if fault == "smtp:outage" and self.injector.outage_until is not None:
            return self.injector.outage_until
        return self.injector.clock.now()

    def close(self) -> None:
        self.transport.close()


def _message_id(raw: bytes) -> str:
    found = re.search(rb"^Message-ID:\s*(\S+)", raw.partition(b"\r\n\r\n")[0], re.MULTILINE | re.IGNORECASE)
    return found.group(1).decode() if found else ""


def _config(backoff_cap: float):
    config = load_config(CONFIG)
    outbox = config.outbox.model_copy(update={"backoff_max_seconds": backoff_cap})
    return config.model_copy(update={"outbox": outbox})


def run_quarter(servers: Servers, data_dir: Path, rate: float, seed: int, mails=None,
                backoff_cap: float = 900.0) -> Run:
    """The quarter once, at ``rate`` faults; ``SPARRING_SECRET_KEY`` must be set
    (the same for runs that are compared: decisions are keyed by it)."""
    mails = mails if mails is not None else quarter_mail()
    servers.dovecot.clear()
    servers.smtp.reset()
    servers.imap_proxy.heal()
    servers.smtp_proxy.heal()
    clock = FixedClock(datetime.combine(FIRST, time(0), tzinfo=TZ))
    config = _config(backoff_cap)
    app = make_app(config, clock, data_dir)
    injector = Injector(servers, rate, seed, clock)
    imap = servers.imap_proxy
    source = FaultySource(ImapSource(imap.host, imap.port, "none", servers.dovecot.user, servers.dovecot.password,
                                     idle=False, timeout=CLIENT_TIMEOUT), injector)
    smtp = servers.smtp_proxy
    transport = injector.transport = FaultyTransport(SmtpTransport(smtp.host, smtp.port, "starttls", servers.smtp.user,
                                              servers.smtp.password, client_context(servers.smtp.ca_file),
                                              timeout=CLIENT_TIMEOUT, local_hostname="localhost"), injector)
    dispatcher = Dispatcher(app, transport, make_calendar(config, data_dir))
    intake = Intake(app)
    try:
        _replay(app, servers, source, dispatcher, intake, _events(app, mails), injector)
    finally:
        intake.close()
        source.close()
        transport.close()
    return _result(app, servers, data_dir, injector, backoff_cap)


def quarter_mail():
    from bench import mailgen

    first = datetime.combine(FIRST, time(0), tzinfo=TZ)
    last = datetime.combine(LAST, time(23, 59), tzinfo=TZ)
    return mailgen.generate(MAILS, first, last, seed=2027)


def _events(app, mails) -> list[tuple[datetime, int, object]]:
    start = datetime.combine(FIRST, time(0), tzinfo=TZ)
    end = datetime.combine(LAST + timedelta(days=1), time(0), tzinfo=TZ)
    events = [(m.date, 1, m) for m in mails]
    events += [(s.deadline, 2, s.key) for s in deadlines.agenda_due(app, start, end)]
    events += [(moment, 3, s.key) for s, moment in deadlines.reminders_due(app, start, end)]
    day = FIRST
    while day <= LAST:
        events.append((datetime.combine(day, time(6), tzinfo=TZ), 0, day))
        day += timedelta(days=1)
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def _replay(app, servers, source, dispatcher, intake, events, injector) -> None:
    app.clock.set(datetime.combine(FIRST, time(0), tzinfo=TZ))
    publishing.publish_horizon(app)
    for n, (moment, kind, payload) in enumerate(events):
        app.clock.set(max(moment, app.clock.now()))
        if kind == 0:
            meetings.book_cooperation(app, payload)
        elif kind == 1:
            servers.dovecot.append(payload.raw, payload.date)
            _take_in(intake, source)
        elif kind == 2:
            deadlines.send_agenda(app, payload)
        else:
            deadlines.send_reminder(app, payload)
        following = events[n + 1][0] if n + 1 < len(events) else moment + timedelta(days=2)
        _deliver(app, dispatcher, until=following)
    _deliver(app, dispatcher, until=app.clock.now() + timedelta(days=30))
    _administrator_retries(app, dispatcher, injector)


def _administrator_retries(app, dispatcher, injector) -> None:
    """What the one mail per outage asks of the administrator: entries that
    ran out of attempts (``sparring outbox --failed``) are counted as reported
    failures of the fault they met, then sent again (``outbox --retry``)."""
    with app.transaction() as repo:
        failed = [(e.kind, repo.cipher.decrypt_json(e.payload_enc, context="outbox.payload"))
                  for e in repo.db.scalars(select(OutboxEntry).where(OutboxEntry.status == "failed"))]
    for kind, payload in failed:
        if kind == "report":
            continue
        key = payload.get("message_id") or _message_id(payload.get("message", "").encode("utf-8", "surrogateescape"))
        # Its sending after the retry is the administrator's doing: not a recovery.
        fault = injector.transport.failed_under.pop(key, ("smtp:unattributed", None))[0]
        injector.tally[fault].failed += 1
    if retry_failed(app):
        _deliver(app, dispatcher, until=app.clock.now() + timedelta(days=30))


def _take_in(intake, source) -> None:
    """The daemon's intake loop: a failed round is tried again (within
    seconds: the simulated clock does not move)."""
    for _ in range(100):
        try:
            intake.run(source)
            return
        except Exception:  # noqa: BLE001 - any failed round is retried, as the daemon does
            continue
    raise AssertionError("the intake did not recover in 100 rounds")


def _deliver(app, dispatcher, until: datetime) -> None:
    """The sender thread: what is due goes; a retry at its own back-off time,
    as long as that falls before the next event."""
    while True:
        dispatcher.run_once(limit=10_000)
        due = next_due(app)
        if due is None or due > until:
            return
        app.clock.set(max(due, app.clock.now()))


# -- the results ------------------------------------------------------------------


def _result(app, servers, data_dir: Path, injector: Injector, backoff_cap: float) -> Run:
    admin = app.config.service.admin
    sent, by_id, reports = Counter(), Counter(), 0
    for received in servers.smtp.messages:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        if received.recipients == (admin,):
            reports += 1
            continue
        by_id[str(message["Message-ID"])] += 1
        sent[_normalised(received.recipients, message)] += 1
    with app.transaction() as repo:
        decisions = {m.message_key: (m.outcome, m.reason_code) for m in repo.db.scalars(select(Mail))}
    return Run(sent, by_id, reports, decisions, _calendar(data_dir), dict(injector.tally), injector.operations,
               backoff_cap, dict(injector.transport.met))


def _normalised(recipients, message) -> tuple:
    """What a recipient reads, without what legitimately varies with the
    time of sending: Date, Message-ID, MIME boundaries, DTSTAMP, and the
    "late" marking an agenda held back by an outage carries."""
    parts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            text = _LATE_HTML.sub("", part.get_content())
            text = "\n".join(line for line in text.splitlines()
                             if line.strip() and not line.startswith("DTSTAMP") and "efter fristen" not in line
                             and "after the deadline" not in line)
            parts.append(_SLOT_UID.sub(r"\1@", text))
    return (tuple(sorted(recipients)), _LATE.sub("", str(message["Subject"])), str(message["In-Reply-To"]),
            tuple(parts))


def _calendar(data_dir: Path) -> list[str]:
    """The calendar's objects, as sorted text without stamps and random UIDs."""
    folder = data_dir / "calendar"
    if not folder.is_dir():
        return []
    return sorted(_SLOT_UID.sub(r"\1@", "\n".join(
        line for line in p.read_text().splitlines() if not line.startswith(("DTSTAMP", "LAST-MODIFIED", "CREATED"))))
        for p in folder.glob("*.ics"))


def compare(reference: Run, faulty: Run) -> dict[str, int]:
    """Lost (in the reference, not in the run), extra (the other way) and duplicate messages."""
    lost = sum((reference.sent - faulty.sent).values())
    extra = sum(1 for key in faulty.sent if key not in reference.sent)
    return {"lost": lost, "extra": extra, "duplicates": faulty.duplicates}


def fresh_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
