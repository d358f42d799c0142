"""Choosing adapters by the strings in the configuration (Radicale-style).

The only module besides the daemon and the CLI that names concrete
backends. Each ``make_*`` fails with one sentence when a backend cannot be
built (a missing password variable, plaintext to a remote host).
"""

from __future__ import annotations

import os
from pathlib import Path

from scheduler.config import Config
from scheduler.errors import ConfigError
from scheduler.ports import CalendarBackend, Clock, Disposition, MailSource, MailTransport
from scheduler.services.calendar_sync import CalendarSync
from scheduler.services.context import App
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
    sync = CalendarSync(app, sends_invitations=config.calendar.backend == "exchange")
    app.calendar_sync = sync
    app.change_handlers.append(sync.items_changed)
    app.calendar_factory = lambda: make_calendar(config, data_dir)
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


def make_source(config: Config, data_dir: Path, *, cipher: FieldCipher) -> MailSource:
    """``cipher`` seals the mails the folder source keeps once settled."""
    kind = config.intake.source
    if kind == "folder":
        from scheduler.mail.folder import FolderSource

        return FolderSource(data_dir / "inbox", cipher=cipher)
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
    from scheduler.exchange.calendar import ExchangeCalendar

    return ExchangeCalendar(exchange_account(config), config.tz)


def exchange_account(config: Config):
    from scheduler.exchange.account import build_account

    ews = config.exchange
    return build_account(ews, _password(ews.password_env, "exchange"), timezone=config.service.timezone)
