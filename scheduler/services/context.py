"""``App``: what every use case needs, wired once.

Holds the configuration, the planner, the clock, the field cipher and the
database; hands out one ``Repository`` per transaction. Adapters (mail
source, transport, calendar) are not here: the daemon and the CLI pass them
to the services that talk to the outside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from scheduler.config import Config
from scheduler.model import Series, Session
from scheduler.planning.sessions import Planner
from scheduler.ports import Clock
from scheduler.store.crypto import FieldCipher
from scheduler.store.repository import Repository

# How far ahead an item may be placed; beyond it the item is refused.
HORIZON = timedelta(days=800)


class App:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        cipher: FieldCipher,
        sessionmaker_: sessionmaker,
        data_dir: Path,
    ) -> None:
        self.config = config
        self.clock = clock
        self.cipher = cipher
        self._sessionmaker = sessionmaker_
        self.data_dir = data_dir
        self.tz = config.tz
        self.language = config.service.language
        self.planner = Planner(config.all_series(), config.closed_days(), self.tz)
        self.series: dict[str, Series] = {s.id: s for s in self.planner.series}
        self.reply_handlers: list[Callable] = []
        self.change_handlers: list[Callable] = []  # (repo, session_keys, item_ids)
        self._sessions_from_day = lru_cache(maxsize=64)(self._sessions_of_day)

    def now(self) -> datetime:
        return self.clock.now().astimezone(self.tz)

    @contextmanager
    def transaction(self) -> Iterator[Repository]:
        """One unit of work: committed on success, rolled back on any error."""
        with self._sessionmaker() as db:
            repo = Repository(db, self.cipher, self)
            try:
                yield repo
                db.commit()
            except BaseException:
                db.rollback()
                raise

    def sessions_from(self, moment: datetime) -> list[Session]:
        """Every series' sessions starting after ``moment``, over the horizon."""
        return [s for s in self._sessions_from_day(moment.date()) if s.start > moment]

    def _sessions_of_day(self, day: date) -> list[Session]:
        return self.planner.sessions(day, day + HORIZON)

    def session_by_key(self, key: str) -> Session:
        series_id, _, day = key.partition("/")
        return self.planner.session_on(self.series[series_id], date.fromisoformat(day))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as repo:
            repo.set_meta(key, value)

    def on_calendar_reply(self, repo: Repository, reply: object) -> None:
        """Calendar replies (iTIP REPLY) go to whoever booked the meeting."""
        for handler in self.reply_handlers:
            handler(repo, reply)

    @property
    def forum_address(self) -> str:
        return self.config.service.mailbox

    @property
    def forum_name(self) -> str:
        return self.config.service.mailbox_name
