"""The forum's statistics: live rows counted, plus aggregates folded in before a purge.

``facts`` turns live rows (items, decisions, case meetings) into anonymous facts
(series, session date, age group, measure, value); ``table`` counts the live facts
and the stored ``stat_counts``; ``fold`` stores the facts of rows about to be
deleted (retention, erasure), so the numbers of a period do not change when the
personal data goes. No CPR number and no text leaves this module.
"""

from __future__ import annotations

from scheduler.planning.statistics import Period, StatisticsTable, measure_labels


def table(app, period: Period, series_id: str | None = None) -> StatisticsTable:
    """The period's statistics (all series, or one), live rows and folded aggregates."""
    raise NotImplementedError


def fold(repo, **rows) -> int:
    """Store the facts of rows about to be deleted as aggregates; returns how many facts."""
    raise NotImplementedError


def labels(language: str) -> dict[str, str]:
    """The measures' labels (and the header's) in Danish or English."""
    return measure_labels(language)
