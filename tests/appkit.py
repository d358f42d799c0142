"""Building a real ``App`` on a temporary data directory for service tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from scheduler.clock import FixedClock
from scheduler.config import load_config
from scheduler.ports import Disposition, IncomingMail
from scheduler.services.dispatch import Dispatcher
from scheduler.services.intake import Intake
from scheduler.store.keys import new_key
from scheduler.wiring import make_app, make_calendar, make_transport

TZ = ZoneInfo("Europe/Copenhagen")
CONFIG = Path(__file__).parent.parent / "config" / "sparring.toml"
# The settled folders of a mailbox source, by their Danish default names.
FOLDERS = {
    Disposition.PROCESSED: "Behandlet",
    Disposition.REJECTED: "Afvist",
    Disposition.QUARANTINE: "Karantæne",
    Disposition.IGNORED: "Ignoreret",
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def build(tmp_path: Path, now: str, monkeypatch, config=None, db_url: str | None = None):
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    config = config or load_config(CONFIG)
    if db_url:
        config = config.model_copy(update={"storage": config.storage.model_copy(update={"url": db_url})})
    clock = FixedClock(at(now))
    app = make_app(config, clock, tmp_path)
    dispatcher = Dispatcher(app, make_transport(config, tmp_path, clock), make_calendar(config, tmp_path))
    return app, dispatcher


def ingest(app, raw: bytes, now: str):
    app.clock.set(at(now))
    return Intake(app).process(IncomingMail(f"m{now}", raw, app.now()))


def item_mail(cpr: str, mid: str, subject: str = "Sparring", sender: str = "karen@kommune.example") -> bytes:
    return (
        f"From: {sender}\r\nTo: sparring@kommune.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <{mid}@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"CPR: {cpr}\r\nHelbred: Angst.\r\nSociale udfordringer: Gæld.\r\n"
    ).encode()
