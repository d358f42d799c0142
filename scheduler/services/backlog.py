"""The backlog warning and the extra session (issue 16, item 4).

When the next ``[backlog] sessions`` sessions of a series are full and items
still wait in later sessions, the series' coordinators are told once per
episode, with a proposed extra session; their reply ``Ekstra møde: ja`` adds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Warning:
    """One backlog warning issued: the series, how deep the queue is, the proposal."""

    series_id: str
    depth: int
    waiting: int
    proposed: datetime | None
    subject: str


def queue_depth(app, series_id: str, now: datetime) -> int:
    """How many of the series' coming planned sessions, in a row from the next one, are full."""
    raise NotImplementedError


def check(app) -> list[Warning]:
    """Warn the coordinators of each series whose queue is full (once per episode)."""
    raise NotImplementedError
