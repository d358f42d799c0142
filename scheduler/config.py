"""Configuration: TOML validated by pydantic when loaded.

Every section forbids unknown keys. A problem becomes one ``ConfigError``
sentence naming the file, the key, its line where it can be found, and what
is allowed. ``config/sparring.toml`` documents every key with its default.
"""

from __future__ import annotations

import ipaddress
import tomllib
from datetime import date, time, timedelta  # noqa: F401 - date: pydantic resolves the annotations
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from scheduler.config_checks import security_problems
from scheduler.config_errors import describe, locate
from scheduler.errors import ConfigError
from scheduler.model import (
    Cadence,
    Closure,
    DeadlineRule,
    OnClosed,
    Series,
    WeekParity,
)
from scheduler.planning.closures import AnnualClosure, ClosedDays

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
Address = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceConfig(Section):
    timezone: str = "Europe/Copenhagen"
    language: Literal["da", "en"] = "da"
    mailbox: Address = "sparring@kommune.example"
    mailbox_name: str = "Sparringsforum"
    admin: Address = "it-drift@kommune.example"
    data_dir: str = "var"
    key_file: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Copenhagen")
        return value


class AnnualClosureConfig(Section):
    date: Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]
    name: str
    from_: HHMM | None = Field(default=None, alias="from")


class DateClosureConfig(Section):
    date: date
    name: str
    from_: HHMM | None = Field(default=None, alias="from")


class ClosuresConfig(Section):
    country: str = "DK"
    annual: tuple[AnnualClosureConfig, ...] = ()
    dates: tuple[DateClosureConfig, ...] = ()


class DeadlineConfig(Section):
    at: HHMM = "12:00"
    days_before: Annotated[int, Field(ge=1, le=28)] | None = None
    weekday_before: Weekday | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> DeadlineConfig:
        if (self.days_before is None) == (self.weekday_before is None):
            raise ValueError("give exactly one of days_before or weekday_before")
        return self


class SeriesConfig(Section):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    name: str
    min_age: Annotated[int, Field(ge=0, le=130)]
    max_age: Annotated[int, Field(ge=0, le=130)] | None = None
    cadence: Cadence
    weekday: Weekday
    start: HHMM
    duration: Annotated[int, Field(ge=5, le=480, description="minutes")]
    week_parity: WeekParity = WeekParity.ANY
    nth: Annotated[int, Field(ge=1, le=5)] = 1
    slot_minutes: Annotated[int, Field(ge=5, le=120)] = 10
    deadline: DeadlineConfig
    coordinators: tuple[Address, ...] = Field(min_length=1)
    on_closed: OnClosed = OnClosed.CANCEL
    location: str = ""
    remind: tuple[Address, ...] = ()
    encryption: Literal["tls-only", "smime"] = "tls-only"  # agendas and alerts: S/MIME per recipient
    receiving: Address | None = None  # the receiving caseworker of an opstart without "modtager:"

    @model_validator(mode="after")
    def _consistent(self) -> SeriesConfig:
        if self.max_age is not None and self.max_age < self.min_age:
            raise ValueError("max_age must not be below min_age")
        if self.duration % self.slot_minutes:
            raise ValueError("duration must be a whole number of slots (slot_minutes)")
        return self

    def to_series(self) -> Series:
        return Series(
            id=self.id,
            name=self.name,
            min_age=self.min_age,
            max_age=self.max_age,
            cadence=self.cadence,
            weekday=WEEKDAYS.index(self.weekday),
            start=_hhmm(self.start),
            duration=timedelta(minutes=self.duration),
            deadline=DeadlineRule(
                at=_hhmm(self.deadline.at),
                days_before=self.deadline.days_before,
                weekday_before=(
                    WEEKDAYS.index(self.deadline.weekday_before)
                    if self.deadline.weekday_before
                    else None
                ),
            ),
            week_parity=self.week_parity,
            nth=self.nth,
            slot_length=timedelta(minutes=self.slot_minutes),
            coordinators=tuple(a.lower() for a in self.coordinators),
            on_closed=self.on_closed,
            location=self.location,
            remind=tuple(a.lower() for a in self.remind),
        )


class SettledFolders(Section):
    """Where mails go once decided (Danish defaults); never deleted by sparring
    before their retention ends."""

    processed_folder: str = "Behandlet"
    rejected_folder: str = "Afvist"
    quarantine_folder: str = "Karantæne"
    ignored_folder: str = "Ignoreret"


class ImapConfig(SettledFolders):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = ""
    password_env: str = "SPARRING_IMAP_PASSWORD"
    folder: str = "INBOX"
    idle: bool = True
    poll_seconds: Annotated[int, Field(ge=5, le=3600)] = 60
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 200
    ca_file: str = ""


class ExchangeConfig(SettledFolders):
    """An Exchange Server mailbox reached over EWS (exchangelib)."""

    service_endpoint: str = ""  # https://mail.kommune.example/EWS/Exchange.asmx
    mailbox: str = ""  # primary SMTP address of the forum mailbox
    username: str = ""
    password_env: str = "SPARRING_EWS_PASSWORD"
    auth: Literal["ntlm", "basic", "oauth"] = "ntlm"
    verify_tls: bool = True
    ca_file: str = ""
    poll_seconds: Annotated[int, Field(ge=5, le=3600)] = 60
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 200


class GraphConfig(SettledFolders):
    """Exchange Online through Microsoft Graph, app-only (client credentials).

    The secret is never in the TOML: ``certificate_file`` (PEM with key and
    certificate) when set, else the variable named by ``client_secret_env``.
    """

    tenant_id: str = ""
    client_id: str = ""
    client_secret_env: str = "SPARRING_GRAPH_SECRET"
    certificate_file: str = ""
    mailbox: str = ""  # empty: service.mailbox
    authority: str = "https://login.microsoftonline.com"
    endpoint: str = "https://graph.microsoft.com/v1.0"
    ca_file: str = ""
    poll_seconds: Annotated[int, Field(ge=1, le=3600)] = 5
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 50


class IntakeConfig(Section):
    source: Literal["folder", "imap", "exchange", "graph"] = "folder"
    allow: tuple[str, ...] = ("kommune.example",)
    max_bytes: Annotated[int, Field(ge=10_000, le=50_000_000)] = 1_000_000
    max_lines: Annotated[int, Field(ge=1, le=50)] = 5
    # Worker processes that parse a large batch on other cores (0: parse in the daemon).
    parse_workers: Annotated[int, Field(ge=0, le=8)] = 1
    # The receiving server whose Authentication-Results (RFC 8601) are trusted; "" ignores them all.
    authserv_id: str = ""
    # Mails from one sender within an hour; beyond it they are quarantined unanswered.
    rate_limit_per_hour: Annotated[int, Field(ge=1, le=100_000)] = 200
    imap: ImapConfig = ImapConfig()


class SmtpConfig(Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["tls", "starttls", "none"] = "starttls"
    username: str = ""
    password_env: str = "SPARRING_SMTP_PASSWORD"
    ca_file: str = ""
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 30


class OutboxConfig(Section):
    transport: Literal["folder", "smtp", "exchange", "graph"] = "folder"
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    backoff_seconds: Annotated[float, Field(ge=0, le=3600)] = 2.0
    backoff_max_seconds: Annotated[float, Field(ge=0, le=86400)] = 900.0
    # While its server is down (an open outage episode), an entry that has run
    # out of attempts keeps waiting until the outage is this old: a mail server's
    # maintenance window must not leave receipts for the admin to retry by hand.
    outage_patience_hours: Annotated[float, Field(ge=0, le=720)] = 24.0
    smtp: SmtpConfig = SmtpConfig()


class CaldavConfig(Section):
    url: str = ""
    username: str = ""
    password_env: str = "SPARRING_CALDAV_PASSWORD"
    calendar: str = "sparring"
    ca_file: str = ""


class CalendarConfig(Section):
    backend: Literal["local", "caldav", "exchange", "graph"] = "local"
    horizon_months: Annotated[int, Field(ge=1, le=24)] = 6
    caldav: CaldavConfig = CaldavConfig()


class StorageConfig(Section):
    # Empty means SQLite in the data directory; else an SQLAlchemy URL,
    # e.g. postgresql+psycopg://sparring@db.kommune.example/sparring
    url: str = ""
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30


class SmimeConfig(Section):
    """S/MIME: recipients' certificates, the forum's own key and certificate."""

    certificates_dir: str = ""  # <address>.pem per recipient
    ca_file: str = ""  # when set, recipients' and signers' certificates must be issued by a CA in it
    signing_key: str = ""  # PEM; with signing_cert, outgoing encrypted mail is signed too
    signing_cert: str = ""
    decrypt_key: str = ""  # PEM; items encrypted to the forum's certificate are decrypted with it
    decrypt_cert: str = ""


class AuditConfig(Section):
    """The audit trail; kept longer than the data it speaks of (5 years)."""

    retention_days: Annotated[int, Field(ge=30, le=36500)] = 1825


class AgendaConfig(Section):
    cpr_display: Literal["masked", "full"] = "masked"
    caseworker_copy: Literal["own_item", "timetable", "none"] = "own_item"
    cancel_empty: bool = False
    reminder_hours: Annotated[int, Field(ge=0, le=240)] = 24  # before the deadline; 0: none


class WindowConfig(Section):
    """A yearly window such as March-April: MM-DD to MM-DD, both included."""

    start: Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]
    end: Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]


class CooperationConfig(Section):
    """Samarbejdsmøder: booked by the daemon twice a year (seed 003)."""

    enabled: bool = True
    title: str = "Samarbejdsmøde: ungeindsatsen, beskæftigelse og socialområdet"
    organiser: Address | None = None  # told when no slot exists; default service.admin
    required: tuple[Address, ...] = ()
    optional: tuple[Address, ...] = ()
    duration: Annotated[int, Field(ge=15, le=480)] = 120
    windows: tuple[WindowConfig, ...] = (
        WindowConfig(start="03-01", end="04-30"),
        WindowConfig(start="09-01", end="10-31"),
    )
    lead_weeks: Annotated[int, Field(ge=1, le=26)] = 6
    location: str = ""


class AcuteBookingConfig(Section):
    """An acute item gets a meeting before the next session if one can be found."""

    enabled: bool = True
    working_days: Annotated[int, Field(ge=1, le=10)] = 2
    duration: Annotated[int, Field(ge=10, le=20)] = 20
    min_duration: Annotated[int, Field(ge=10, le=20)] = 10


class BookingConfig(Section):
    working_hours: tuple[HHMM, HHMM] = ("09:00", "15:00")
    grid_minutes: Annotated[int, Field(ge=5, le=60)] = 15
    buffer_minutes: Annotated[int, Field(ge=0, le=60)] = 0
    strategy: Literal["earliest", "spread"] = "earliest"
    rooms: tuple[Address, ...] = ()  # room mailboxes, tried in this order
    default_duration: Annotated[int, Field(ge=10, le=480)] = 60
    max_externals: Annotated[int, Field(ge=0, le=500)] = 20  # external participants of one meeting
    cooperation: CooperationConfig = CooperationConfig()
    acute: AcuteBookingConfig = AcuteBookingConfig()

    @model_validator(mode="after")
    def _hours(self) -> BookingConfig:
        if self.working_hours[0] >= self.working_hours[1]:
            raise ValueError("working_hours must be [start, end] with start before end")
        return self


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8765`` for IPv6) as (host, port); ValueError with one sentence."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_problem(listen: str, auth: str) -> str | None:
    """The one listen address refused: reachable from other machines with no authentication."""
    if auth == "none" and not is_loopback(parse_listen(listen)[0]):
        return (f"{listen} is reachable from other machines and auth is \"none\"; set auth = \"basic\" or "
                "\"header\" (behind the municipality's reverse proxy), or listen on 127.0.0.1")
    return None


class WebConfig(Section):
    """The read-only overview pages (``sparring serve``; inside ``run`` when enabled)."""

    enabled: bool = False
    listen: str = "127.0.0.1:8765"
    auth: Literal["none", "basic", "header"] = "none"
    users_file: str = ""  # basic: lines "name:hash" (``sparring web-passwd NAME``)
    basic_users: dict[str, str] = {}  # basic: name = hash, as an alternative to users_file
    user_header: str = "X-Remote-User"  # header: set by the reverse proxy doing the single sign-on
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)  # header: addresses or networks it is believed from
    language: Literal["da", "en"] | None = None  # default: service.language

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("basic_users", mode="before")
    @classmethod
    def _hashes(cls, value: object) -> object:
        # Before pydantic's own checks, whose sentence would quote the value: a password, maybe.
        if not isinstance(value, dict) or not all(
                isinstance(v, str) and v.startswith("scrypt$") for v in value.values()):
            raise ValueError("each user must be name = hash, the hash made with `sparring web-passwd NAME` "
                             "(a password in clear is not accepted)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network, e.g. 127.0.0.1 or 10.0.0.0/24")
        return value

    @model_validator(mode="after")
    def _safe(self) -> WebConfig:
        problem = loopback_problem(self.listen, self.auth)
        if problem:
            raise ValueError(problem)
        if self.auth == "basic" and not (self.users_file.strip() or self.basic_users):
            raise ValueError('auth = "basic" needs users_file or basic_users (hashes from sparring web-passwd)')
        return self


class FollowupConfig(Section):
    """After the forum (issue 15): the case's meetings, in working days and minutes."""

    coordination_within_days: Annotated[int, Field(ge=1, le=60)] = 10
    coordination_minutes: Annotated[int, Field(ge=15, le=240)] = 60
    joint_within_days: Annotated[int, Field(ge=1, le=60)] = 10
    joint_minutes: Annotated[int, Field(ge=15, le=240)] = 60
    followup_minutes: Annotated[int, Field(ge=10, le=240)] = 30
    followup_window_days: Annotated[int, Field(ge=1, le=20)] = 5  # working days from the plan's date
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30  # after a case closes


class BacklogConfig(Section):
    """The backlog warning (issue 16): this many coming sessions of a series
    full, with items still waiting, and its coordinators are told once."""

    sessions: Annotated[int, Field(ge=1, le=12)] = 2


class Config(Section):
    """The whole configuration file."""

    service: ServiceConfig = ServiceConfig()
    closures: ClosuresConfig = ClosuresConfig()
    intake: IntakeConfig = IntakeConfig()
    outbox: OutboxConfig = OutboxConfig()
    calendar: CalendarConfig = CalendarConfig()
    exchange: ExchangeConfig = ExchangeConfig()
    graph: GraphConfig = GraphConfig()
    storage: StorageConfig = StorageConfig()
    audit: AuditConfig = AuditConfig()
    smime: SmimeConfig = SmimeConfig()
    agenda: AgendaConfig = AgendaConfig()
    booking: BookingConfig = BookingConfig()
    followup: FollowupConfig = FollowupConfig()
    web: WebConfig = WebConfig()
    backlog: BacklogConfig = BacklogConfig()
    series: tuple[SeriesConfig, ...] = Field(min_length=1)
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        ids = [s.id for s in self.series]
        if len(ids) != len(set(ids)):
            raise ValueError(f"series ids must be unique, got {ids}")
        return self

    @property
    def graph_mailbox(self) -> str:
        """The mailbox Graph works in: ``graph.mailbox``, else ``service.mailbox``."""
        return self.graph.mailbox or self.service.mailbox

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.service.timezone)

    @property
    def poll_seconds(self) -> float:
        """How often the daemon's intake loop asks its source for mail (a folder: every 2 s)."""
        source = self.intake.source
        if source == "imap":
            return float(self.intake.imap.poll_seconds)
        if source == "exchange":
            return float(self.exchange.poll_seconds)
        if source == "graph":
            return float(self.graph.poll_seconds)
        return 2.0

    def all_series(self) -> tuple[Series, ...]:
        return tuple(s.to_series() for s in self.series)

    def closed_days(self) -> ClosedDays:
        c = self.closures
        return ClosedDays(
            country=c.country,
            language=self.service.language,
            annual=tuple(
                AnnualClosure(
                    int(a.date[:2]), int(a.date[3:]), a.name, _hhmm(a.from_) if a.from_ else None
                )
                for a in c.annual
            ),
            dates=tuple(
                Closure(d.date, d.name, _hhmm(d.from_) if d.from_ else None) for d in c.dates
            ),
        )


def _hhmm(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raise ``ConfigError`` with one sentence."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found; pass --config FILE.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.__class__.__name__}).") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}.") from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(path, text, exc)) from None
    problems = [_sentence(path, text, loc, problem) for loc, problem in security_problems(config)]
    if problems:
        raise ConfigError("\n".join(problems))
    _require_graph_ids(path, text, config)
    return config.model_copy(update={"source": path})


def _sentence(path: Path, text: str, loc: tuple[str, ...], problem: str) -> str:
    line = locate(text, (".".join(loc[:-1]), loc[-1]))  # [intake.imap] is one table
    return f"{path}: {f'line {line}: ' if line else ''}{'.'.join(loc)}: {problem}."


_GRAPH_IDS = {"tenant_id": "the Directory (tenant) ID", "client_id": "the Application (client) ID"}


def _require_graph_ids(path: Path, text: str, config: Config) -> None:
    """A port on Graph needs the app registration's two IDs: say so at load time."""
    ports = [name for name, kind in (("intake.source", config.intake.source),
                                      ("outbox.transport", config.outbox.transport),
                                      ("calendar.backend", config.calendar.backend)) if kind == "graph"]
    for key, what in _GRAPH_IDS.items():
        if ports and not getattr(config.graph, key).strip():
            line = locate(text, ("graph", key)) or locate(text, tuple(ports[0].split(".")))
            where = f"{path}: line {line}: " if line else f"{path}: "
            raise ConfigError(f"{where}graph.{key}: required when {ports[0]} = \"graph\"; give {what} of the "
                              "app registration in Entra ID (README, Running on Microsoft 365).")
