"""Choosing adapters by the strings in the configuration (Radicale-style).

The only module besides the daemon and the CLI that names concrete
backends. Each ``make_*`` fails with one sentence when a backend cannot be
built (a missing password variable, plaintext to a remote host).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from scheduler.config import Config
from scheduler.errors import ConfigError
from scheduler.ports import CalendarBackend, Clock, Disposition, MailSource, MailTransport, StateStore
from scheduler.services.calendar_sync import CalendarSync
from scheduler.services.context import App
from scheduler.services.protection import protection
from scheduler.store.crypto import FieldCipher
from scheduler.store.db import database_url, make_engine, migrate, session_factory
from scheduler.store.keys import load_key


def make_app(config: Config, clock: Clock, data_dir: Path, *, demo: bool = False,
             announce=print) -> App:
    key, origin = load_key(os.environ, config.service.key_file or None, data_dir, demo)
    if demo and "demo" in origin:
        announce(f"sparring: {origin}. --demo keeps the encryption key beside the data it protects: "
                 "for trying sparring only, never for real CPR numbers or health data.")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # an existing one keeps the mode it was given
    engine = make_engine(database_url(config.storage.url, data_dir))
    migrate(engine)
    app = App(config, clock, FieldCipher(key), session_factory(engine), data_dir)
    app.engine = engine
    sync = CalendarSync(app, sends_invitations=config.calendar.backend in ("exchange", "graph"))
    app.calendar_sync = sync
    app.change_handlers.append(sync.items_changed)
    app.calendar_factory = lambda: make_calendar(config, data_dir)
    protection(app)  # S/MIME keys and certificates read once; a mistake stops the start
    return app


def _password(variable: str, what: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigError(f"{what}: the password variable {variable} is not set.")
    return value


def _folders(section) -> dict[Disposition, str]:
    return {
        Disposition.PROCESSED: section.processed_folder,
        Disposition.REJECTED: section.rejected_folder,
        Disposition.QUARANTINE: section.quarantine_folder,
        Disposition.IGNORED: section.ignored_folder,
    }


def make_source(config: Config, data_dir: Path, state: StateStore | None = None, *,
                cipher: FieldCipher | None = None, clock: Clock | None = None) -> MailSource:
    """``state`` (the App) keeps a source's position where it has one (Graph's delta link);
    ``cipher`` seals the mails the folder source keeps once settled (required for it);
    ``clock`` dates the folder source's mtimes on its timeline (``--now``)."""
    kind = config.intake.source
    if kind == "folder":
        from scheduler.mail.folder import FolderSource

        if cipher is None:
            raise ValueError("the folder source keeps settled mails sealed: it needs the data key")
        return FolderSource(data_dir / "inbox", clock, cipher=cipher)
    if kind == "imap":
        from scheduler.mail.imap import ImapSource
        from scheduler.tls import client_context

        imap = config.intake.imap
        return ImapSource(
            host=imap.host, port=imap.port, security=imap.security, username=imap.username,
            password=_password(imap.password_env, "intake.imap"), folder=imap.folder,
            folders=_folders(imap), batch_size=imap.batch_size,
            ssl_context=client_context(imap.ca_file or None), idle=imap.idle,
        )
    if kind == "graph":
        from scheduler.graph.mailbox import GraphSource

        if state is None:
            raise ValueError("make_source: the graph source needs the database (state) for its delta link")
        graph = config.graph
        return GraphSource(graph_client(config), config.graph_mailbox, _folders(graph), state,
                           batch_size=graph.batch_size, poll_seconds=graph.poll_seconds)
    from scheduler.exchange.mailbox import ExchangeSource

    return ExchangeSource(exchange_account(config), _folders(config.exchange), config.exchange.batch_size,
                          poll_seconds=config.exchange.poll_seconds)


def make_transport(config: Config, data_dir: Path, clock: Clock, durable: bool = True) -> MailTransport:
    """``durable=False`` (simulation only) lets the folder outbox skip fsync."""
    kind = config.outbox.transport
    if kind == "folder":
        from scheduler.mail.folder import FolderTransport

        return FolderTransport(data_dir / "outbox", clock, durable=durable)
    if kind == "smtp":
        from scheduler.mail.smtp import SmtpTransport
        from scheduler.tls import client_context

        smtp = config.outbox.smtp
        password = os.environ.get(smtp.password_env, "") if smtp.username else ""
        return SmtpTransport(
            host=smtp.host, port=smtp.port, security=smtp.security, username=smtp.username,
            password=password, ssl_context=client_context(smtp.ca_file or None),
            timeout=smtp.timeout_seconds,
        )
    if kind == "graph":
        from scheduler.graph.mailbox import GraphTransport

        return GraphTransport(graph_client(config), config.graph_mailbox)
    from scheduler.exchange.mailbox import ExchangeTransport

    return ExchangeTransport(exchange_account(config))


def make_calendar(config: Config, data_dir: Path, durable: bool = True) -> CalendarBackend:
    kind = config.calendar.backend
    if kind == "local":
        from scheduler.calendars.local import LocalCalendar

        return LocalCalendar(data_dir / "calendar", data_dir / "freebusy", config.tz, durable=durable)
    if kind == "caldav":
        from scheduler.calendars.caldav import CaldavCalendar

        dav = config.calendar.caldav
        return CaldavCalendar(dav.url, dav.username, _password(dav.password_env, "calendar.caldav"),
                              dav.calendar, config.tz, ssl_verify=dav.ca_file or True)
    if kind == "graph":
        from scheduler.graph.calendar import GraphCalendar

        return GraphCalendar(graph_client(config), config.graph_mailbox, config.tz, language=config.service.language)
    from scheduler.exchange.calendar import ExchangeCalendar

    return ExchangeCalendar(exchange_account(config), config.tz)


def exchange_account(config: Config):
    from scheduler.exchange.account import build_account

    ews = config.exchange
    return build_account(ews, _password(ews.password_env, "exchange"), timezone=config.service.timezone)


_graph_clients: dict = {}
_graph_lock = threading.Lock()


def graph_client(config: Config):
    """The process's one Graph client (and so one token) for ``config.graph``,
    shared by the source, the transport and the calendar."""
    from scheduler.graph.auth import TokenProvider
    from scheduler.graph.client import build_client

    key = (config.graph, config.graph_mailbox)
    with _graph_lock:
        if key not in _graph_clients:
            _graph_clients[key] = build_client(config, TokenProvider(config.graph))
        return _graph_clients[key]


# -- check-connection --------------------------------------------------------------

_LOCAL = {"intake": ("folder", "inbox"), "outbox": ("folder", "outbox"), "calendar": ("local", "calendar")}


def connection_checks(config: Config, data_dir: Path) -> list[tuple[str, Callable[[], str]]]:
    """``(label, check)`` for each backend the configuration selects; a check
    makes one read-only call (or none, for the folders) and returns what it
    saw, or raises one sentence. EWS and Graph serve several ports: one
    check each, covering the ports that use them."""
    ports = {"intake": config.intake.source, "outbox": config.outbox.transport, "calendar": config.calendar.backend}
    checks: list[tuple[str, Callable[[], str]]] = []
    for port, kind in ports.items():
        local, folder = _LOCAL[port]
        if kind == local:
            checks.append((f"{port} {kind}", lambda path=data_dir / folder: f"{path}, nothing to connect to"))
    if ports["intake"] == "imap":
        checks.append(("intake imap", lambda: _checked(make_source(config, data_dir))))
    if ports["outbox"] == "smtp":
        checks.append(("outbox smtp", lambda: _checked(make_transport(config, data_dir, None))))
    if ports["calendar"] == "caldav":
        checks.append(("calendar caldav", lambda: _checked(make_calendar(config, data_dir))))
    for kind, check in (("exchange", _check_exchange), ("graph", _check_graph)):
        users = [port for port, chosen in ports.items() if chosen == kind]
        if users:
            checks.append((f"{kind} ({', '.join(users)})", lambda c=check, u=users: c(config, u)))
    return checks


def _checked(adapter) -> str:
    try:
        return adapter.check()
    finally:
        adapter.close()


def _check_exchange(config: Config, ports: list[str]) -> str:
    from scheduler.exchange.errors import mapped

    account = exchange_account(config)
    try:
        with mapped("connection check"):
            if "intake" in ports or "outbox" in ports:
                account.inbox.refresh()
            if "calendar" in ports:
                account.calendar.refresh()
    finally:
        account.protocol.close()
    return f"{config.exchange.service_endpoint}, mailbox {config.exchange.mailbox}"


def _check_graph(config: Config, ports: list[str]) -> str:
    """Sign in, then read the inbox (intake) and the calendar folder (calendar);
    sending cannot be tried without sending, so the outbox needs the token only."""
    client = graph_client(config)
    client.tokens.token()
    seen = ["signed in"]
    mailbox = config.graph_mailbox
    if "intake" in ports:
        client.get_json(f"/users/{mailbox}/mailFolders/inbox", {"$select": "id"}, what="check of the inbox",
                        permission="Mail.ReadWrite")
        seen.append("inbox readable")
    if "calendar" in ports:
        client.get_json(f"/users/{mailbox}/calendar", {"$select": "id"}, what="check of the calendar",
                        permission="Calendars.ReadWrite")
        seen.append("calendar readable")
    if "outbox" in ports:
        seen.append("Mail.Send is tried by the first mail")
    return f"{mailbox}: {', '.join(seen)}"
