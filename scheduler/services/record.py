"""The record of processing (GDPR art. 30), printed from the configuration.

Everything in it is read from the configuration sparring runs with, so
that what the data protection officer files is what the code does: the
stores, the retention periods, who receives what per series, and the
transports with their encryption. The text is a template per language
(``record_of_processing.txt.j2``), Danish by default.
"""

from __future__ import annotations

from sqlalchemy import make_url

from scheduler.config import Config
from scheduler.render import render


def record_of_processing(config: Config, language: str = "da") -> str:
    return render("record_of_processing.txt.j2", language, **_facts(config))


def _facts(config: Config) -> dict:
    return {
        "service": config.service,
        "series": [_series(config, s) for s in config.series],
        "database": _database(config),
        "retention_days": config.storage.retention_days,
        "audit_days": config.audit.retention_days,
        "intake": _intake(config),
        "outbox": _outbox(config),
        "calendar": _calendar(config),
        "allow": ", ".join(config.intake.allow),
        "agenda": config.agenda,
        "key_file": config.service.key_file,
    }


def _series(config: Config, series) -> dict:
    ages = f"{series.min_age}-{series.max_age}" if series.max_age is not None else f"{series.min_age}+"
    return {"id": series.id, "name": series.name, "ages": ages, "coordinators": ", ".join(series.coordinators),
            "encryption": getattr(series, "encryption", "tls-only")}


def _database(config: Config) -> dict:
    url = config.storage.url.strip()
    if not url:
        return {"kind": "sqlite", "where": f"{config.service.data_dir}/sparring.db", "tls": ""}
    parsed = make_url(url)
    return {"kind": parsed.get_backend_name(), "where": f"{parsed.host or 'lokal socket'}/{parsed.database or ''}",
            "tls": parsed.query.get("sslmode", "")}


def _intake(config: Config) -> dict:
    source = config.intake.source
    if source == "imap":
        imap = config.intake.imap
        return {"kind": "imap", "where": f"{imap.host}:{imap.port}", "tls": imap.security}
    if source == "folder":
        return {"kind": "folder", "where": f"{config.service.data_dir}/inbox", "tls": "lokal"}
    return _remote(config, source)


def _remote(config: Config, kind: str) -> dict:
    """An Exchange (EWS) or Microsoft 365 (Graph) mailbox or calendar."""
    if kind == "graph":
        return {"kind": "graph", "where": f"{config.graph.endpoint} ({config.graph.mailbox or config.service.mailbox})",
                "tls": "https"}
    return {"kind": kind, "where": config.exchange.service_endpoint or kind, "tls": "https"}


def _outbox(config: Config) -> dict:
    transport = config.outbox.transport
    if transport == "smtp":
        smtp = config.outbox.smtp
        return {"kind": "smtp", "where": f"{smtp.host}:{smtp.port}", "tls": smtp.security}
    if transport == "folder":
        return {"kind": "folder", "where": f"{config.service.data_dir}/outbox", "tls": "lokal"}
    return _remote(config, transport)


def _calendar(config: Config) -> dict:
    backend = config.calendar.backend
    if backend == "caldav":
        return {"kind": "caldav", "where": config.calendar.caldav.url, "tls": "https"}
    if backend == "local":
        return {"kind": "local", "where": f"{config.service.data_dir}/calendar", "tls": "lokal"}
    return _remote(config, backend)
