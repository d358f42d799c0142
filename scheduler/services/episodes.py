"""Outage episodes: one mail to the administrator per episode, not per retry.

An episode towards a target (the mail server, the calendar server) runs
from the first failure of an outbox entry there until the next success.
Its first failure queues one report (kept in the outbox like any mail,
so it leaves when the mail server is back); the failures after it, and
the entries that end failed during it, are logged and listed by
``sparring outbox --failed`` but not mailed again. The open episode is a
``meta`` row, so a restart does not mail it twice.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update

from scheduler.localtime import people_time
from scheduler.mail.compose import text_mail
from scheduler.store.tables import OutboxEntry

log = logging.getLogger("sparring.outbox")

TARGETS = {"mail": "mailserveren", "calendar": "kalenderserveren"}


class Episodes:
    def __init__(self, app) -> None:
        self.app = app
        self._open: dict[str, bool] = {}  # target -> episode open (read from meta once)
        self._since: dict[str, datetime] = {}  # target -> when its open episode began

    def failed(self, target: str, where: str, error: str, kind: str, not_before: datetime | None = None) -> None:
        """A failure towards ``target``: the first of an episode is reported,
        not before ``not_before`` (the failing mail server's own back-off).
        A failing report itself is only logged (it would report itself)."""
        if self._open.get(target) or kind == "report":
            return
        key = f"outage:{target}"
        with self.app.transaction() as repo:
            since = repo.get_meta(key)
            if not since:
                since = self.app.now().isoformat(timespec="seconds")
                repo.set_meta(key, since)
                log.error("outage began target=%s server=%s error=%s", target, where, error)
                self._report(repo, target, where, error, since, not_before)
        self._open[target] = True
        self._since[target] = datetime.fromisoformat(since)

    def since(self, target: str) -> datetime | None:
        """When the open episode towards ``target`` began (None: none open)."""
        return self._since.get(target) if self._open.get(target) else None

    def succeeded(self, target: str) -> None:
        """A success towards ``target`` ends its episode (if one is open)."""
        if self._open.get(target) is False:
            return
        key = f"outage:{target}"
        with self.app.transaction() as repo:
            since = repo.get_meta(key)
            if since:
                repo.set_meta(key, "")
                log.warning("outage ended target=%s since=%s", target, since)
        self._open[target] = False
        self._since.pop(target, None)

    def _report(self, repo, target: str, where: str, error: str, since: str, not_before: datetime | None) -> None:
        admin = self.app.config.service.admin
        body = (
            f"sparring kan ikke levere til {TARGETS.get(target, target)} ({where}) siden "
            f"{people_time(datetime.fromisoformat(since), self.app.tz)}.\n"
            f"Fejl: {error}\n\n"
            "Udgående beskeder venter i udbakken og sendes automatisk, når serveren svarer igen. "
            "Det, der ikke kan leveres (efter alle forsøg, eller fordi en modtager afvises), ses med "
            "'sparring outbox --failed' og kan sendes igen med 'sparring outbox --retry NR'. "
            "Se også 'sparring status'.\n\n"
            "Du får ikke flere mails om denne afbrydelse; den næste kommer først, hvis serveren "
            "fejler igen efter at have svaret.\n"
        )
        message = text_mail(
            sender=self.app.forum_address, sender_name=self.app.forum_name, to=[admin],
            subject=f"sparring: {TARGETS.get(target, target)} svarer ikke ({where})", body=body,
            sent_at=self.app.now(), language="da",
        )
        key = f"outage:{target}:{since}"
        repo.enqueue_mail(message, kind="report", dedupe_key=key, recipients=[admin])
        if not_before is not None:
            repo.flush_writes()
            repo.db.execute(update(OutboxEntry).where(OutboxEntry.dedupe_key == key)
                            .values(next_attempt_at=not_before))
