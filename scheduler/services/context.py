"""``App``: what every use case needs, wired once.

Holds the configuration, the planner, the clock, the field cipher and the
database; hands out one ``Repository`` per transaction. Adapters (mail
source, transport, calendar) are not here: the daemon and the CLI pass them
to the services that talk to the outside.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.orm import sessionmaker

from scheduler.config import Config
from scheduler.model import Series, Session
from scheduler.planning.sessions import Planner
from scheduler.ports import Clock
from scheduler.store.crypto import FieldCipher
from scheduler.store.repository import Repository

# How far ahead an item may be placed; beyond it the item is refused.
HORIZON = timedelta(days=800)
YEAR = timedelta(days=366)


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
        self.engine = sessionmaker_.kw["bind"]
        self.data_dir = data_dir
        self.tz = config.tz
        self.language = config.service.language
        self.planner = Planner(config.all_series(), config.closed_days(), self.tz)
        self.series: dict[str, Series] = {s.id: s for s in self.planner.series}
        self.change_handlers: list[Callable] = []  # (repo, session_keys, item_ids)
        self.calendar_factory: Callable = lambda: None
        self._calendar = None
        self._booker = None
        self._sessions_from_day = lru_cache(maxsize=64)(self._timed_sessions_of_day)
        self._plan_from = lru_cache(maxsize=4)(lambda first: self.planner.sessions(first, first + HORIZON + YEAR))
        self.reload_sessions()

    def reload_sessions(self) -> bool:
        """Take in the extra sessions stored (another process may have added
        one) and rebuild the session caches; True if they changed."""
        with self.transaction() as repo:
            planner = self.planner.with_extras(repo.extra_sessions())
        if planner.extras == self.planner.extras:
            return False
        self.planner = planner
        self._sessions_from_day.cache_clear()
        self._plan_from.cache_clear()
        return True

    def now(self) -> datetime:
        return self.clock.now().astimezone(self.tz)

    @contextmanager
    def transaction(self) -> Iterator[Repository]:
        """One unit of work: committed on success, rolled back on any error.

        ``repo.before_commit`` callbacks run when the work is done, still
        inside the transaction (receipts rendered from a whole batch's
        final state). ``repo.after_commit`` callbacks run once the commit has succeeded:
        work that talks to servers (free/busy for a booking) never holds a
        database transaction open, and never runs for a decision that was
        rolled back. Each runs on its own: one that raises is logged and
        reported to the administrator, and the others still run.
        """
        with self._sessionmaker() as db:
            repo = Repository(db, self.cipher, self)
            try:
                yield repo
                for callback in repo.before_commit:
                    callback()
                repo.flush_writes()
                db.commit()
            except BaseException:
                db.rollback()
                raise
        for callback in repo.after_commit:
            try:
                callback()
            except Exception as exc:
                from scheduler.services.alerts import task_failed

                task_failed(self, _task_name(callback), exc)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """One statement's own transaction on a bare connection (no ORM
        session): for a write as small as an outbox entry's done mark."""
        with self.engine.begin() as connection:
            yield connection

    def calendar(self):
        """The calendar backend, built on first use (it may open a connection)."""
        if self._calendar is None:
            self._calendar = self.calendar_factory()
        return self._calendar

    def booker(self):
        from scheduler.services.booking import Booker

        if self._booker is None:
            self._booker = Booker(self, self.calendar())
        return self._booker

    def sessions_from(self, moment: datetime) -> list[Session]:
        """Every series' sessions starting after ``moment``, over the horizon."""
        sessions, starts = self._sessions_from_day(moment.date())
        return sessions[bisect_right(starts, moment.timestamp()):]

    def _timed_sessions_of_day(self, day: date) -> tuple[list[Session], list[float]]:
        """The day's sessions with their starts as POSIX times: comparing those
        is cheap, comparing datetimes in two zones asks both for their offset."""
        sessions = self._sessions_of_day(day)
        return sessions, [s.start.timestamp() for s in sessions]

    def _sessions_of_day(self, day: date) -> list[Session]:
        """``planner.sessions(day, day + HORIZON)``, sliced from a year's wider plan."""
        plan = self._plan_from(date(day.year, 1, 1))
        lo = bisect_left(plan, day, key=lambda s: s.start.date())
        hi = bisect_right(plan, day + HORIZON, key=lambda s: s.start.date())
        return plan[lo:hi]

    def session_by_key(self, key: str) -> Session:
        series_id, _, day = key.partition("/")
        return self.planner.session_on(self.series[series_id], date.fromisoformat(day))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as repo:
            repo.set_meta(key, value)

    def get_meta(self, key: str) -> str | None:
        with self.transaction() as repo:
            return repo.get_meta(key)

    @property
    def forum_address(self) -> str:
        return self.config.service.mailbox

    @property
    def forum_name(self) -> str:
        return self.config.service.mailbox_name


def _task_name(callback) -> str:
    """A task's function name (through ``functools.partial``), for the log and the alert."""
    function = getattr(callback, "func", callback)
    return getattr(function, "__name__", "task")[:40]
