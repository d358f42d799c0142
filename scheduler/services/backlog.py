"""The backlog warning and the extra session (issue 16, item 4).

When the next ``[backlog] sessions`` sessions of a series still taking items
(deadline not passed) are full and items wait in later sessions, the
series' coordinators are told once per episode (``backlog_episodes``): the
counts, never a CPR number or text, and a proposed extra session at their
first common free time (free/busy) from the next working day to a week
ahead, on a day the series does not meet. The episode ends when the queue
is no longer full; a full queue after that is a new episode.

A coordinator's reply ``Ekstra møde: ja`` (``mail.extra``) adds the session
(``extra_sessions``) once the time is checked to be still free: the planner
lists it with note "ekstra", it is published and invited, and the waiting
items move into it in slot order (acute first, then by arrival), their
caseworkers told and their slot invitations moved.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from scheduler.mail.compose import text_mail
from scheduler.mail.extra import reference
from scheduler.model import BookingRequest, Series, Session
from scheduler.planning.allocation import Booked, Bump, age_on, slot_order
from scheduler.ports import PermanentError, TransientError
from scheduler.render import render_mail
from scheduler.services.meetings import working_days_ahead
from scheduler.store.db import database_url, make_engine
from scheduler.store.repository import PENDING, Repository
from scheduler.store.tables import BacklogEpisode, ExtraSession, Item, extra_session_rows

log = logging.getLogger("sparring.backlog")
_LOCK = threading.Lock()  # the intake thread and the timed jobs may both check
_PROPOSAL_DAYS = 7  # "within the next week"


@dataclass(frozen=True)
class BacklogWarning:
    """One backlog warning issued: the series, how deep the queue is, the proposal."""

    series_id: str
    depth: int
    waiting: int
    proposed: datetime | None
    subject: str


@dataclass(frozen=True)
class Queue:
    """A series' coming sessions still taking items, and how full they are."""

    sessions: tuple[Session, ...]
    counts: dict[str, int]
    depth: int  # full sessions in a row from the next one

    @property
    def waiting(self) -> int:
        """Items placed behind the full sessions."""
        return sum(self.counts.get(s.key, 0) for s in self.sessions[self.depth:])


def queue_of(app, repo: Repository, series_id: str, now: datetime, without: str | None = None) -> Queue:
    """``without``: a session left out (an extra one being filled: the queue as it stood before it)."""
    sessions = tuple(s for s in app.sessions_from(now)
                     if s.series_id == series_id and s.planned and s.deadline > now and s.key != without)
    rows = repo.db.execute(select(Item.session_key, func.count()).where(
        Item.series_id == series_id, Item.status == PENDING, Item.session_start > now).group_by(Item.session_key))
    counts = dict(rows.all())
    depth = 0
    for session in sessions:
        if counts.get(session.key, 0) < session.capacity:
            break
        depth += 1
    return Queue(sessions, counts, depth)


def queue_depth(app, series_id: str, now: datetime) -> int:
    """How many of the series' coming sessions still taking items, in a row from the next one, are full."""
    with app.transaction() as repo:
        return queue_of(app, repo, series_id, now).depth


def check(app, resume: bool = False) -> list[BacklogWarning]:
    """Warn the coordinators of each series whose queue is full, once per
    episode; close the episodes of queues no longer full. ``resume`` (the
    hourly job): first carry out the answers taken in but cut off."""
    if resume:
        _resume(app)
    warnings = []
    with _LOCK:
        for series in app.series.values():
            warning = _check_series(app, series)
            if warning is not None:
                warnings.append(warning)
    return warnings


def _check_series(app, series: Series) -> BacklogWarning | None:
    now, needed = app.now(), app.config.backlog.sessions
    with app.transaction() as repo:
        queue = queue_of(app, repo, series.id, now)
        episode = open_episode(repo, series.id)
        full = queue.depth >= needed and queue.waiting > 0
        if not full and episode is not None:
            episode.closed_at = now
        if not full or episode is not None:
            return None
    proposed = propose(app, series)
    with app.transaction() as repo:
        episode = BacklogEpisode(series_id=series.id, opened_at=now, depth=queue.depth, waiting=queue.waiting,
                                 proposed_start=proposed)
        repo.db.add(episode)
        repo.db.flush()
        subject = _mail(app, repo, series, "backlog_warning.txt.j2", f"backlog:{series.id}:{episode.id}",
                        proposed=proposed, depth=queue.depth, waiting=queue.waiting,
                        full=[s.start for s in queue.sessions[:queue.depth]])
    log.info("backlog warning series=%s depth=%d waiting=%d", series.id, queue.depth, queue.waiting)
    return BacklogWarning(series.id, queue.depth, queue.waiting, proposed, subject)


def open_episode(repo: Repository, series_id: str) -> BacklogEpisode | None:
    return repo.db.scalars(select(BacklogEpisode).where(
        BacklogEpisode.series_id == series_id, BacklogEpisode.closed_at.is_(None))
        .order_by(BacklogEpisode.id.desc())).first()


# -- the proposal ---------------------------------------------------------------------


def propose(app, series: Series) -> datetime | None:
    """The coordinators' first common free time of the series' length from
    the next working day to a week ahead, on a day the series does not meet;
    None when there is none (or the calendars cannot be read)."""
    today = app.now().date()
    found = _free_starts(app, series, working_days_ahead(app, today, 1), today + timedelta(days=_PROPOSAL_DAYS))
    return found[0] if found else None


def still_free(app, series: Series, start: datetime) -> bool:
    return start > app.now() and start in _free_starts(app, series, start.date(), start.date())


def _free_starts(app, series: Series, first, last) -> list[datetime]:
    request = BookingRequest(kind="extra", first=first, last=last, duration=series.duration,
                             required=series.coordinators, reference=f"extra:{series.id}")
    try:
        candidates = app.booker().candidates(request, limit=500, strategy="earliest")
    except (TransientError, PermanentError) as exc:
        log.warning("backlog: free/busy could not be read series=%s error=%s", series.id, type(exc).__name__)
        return []
    taken = _series_days(app, series, first, last)
    return sorted(c.start for c in candidates if c.start.date() not in taken)


def _series_days(app, series: Series, first, last) -> set:
    """Days the series meets on, or that key one of its sessions (a session
    moved off a closed day keeps its rule date in its key)."""
    around = app.planner.sessions(first - timedelta(days=31), last + timedelta(days=31), series.id)
    return {s.start.date() for s in around} | {s.rule_date for s in around}


def stored_extras(config, data_dir) -> list[tuple]:
    """The extra sessions in the database as (series id, start, added at),
    read without the data key (they hold no personal data) for ``plan``;
    none when there is no database yet."""
    if not config.storage.url.strip() and not (Path(data_dir) / "sparring.db").exists():
        return []
    engine = make_engine(database_url(config.storage.url, data_dir))
    try:
        with engine.connect() as connection:
            return extra_session_rows(connection)
    except SQLAlchemyError:  # not migrated yet (no table), or the database away: the rule's sessions alone
        log.warning("plan: the extra sessions could not be read from the database; shown without them")
        return []
    finally:
        engine.dispose()


# -- the coordinators' answer -----------------------------------------------------------


def hold(repo: Repository, series_id: str, yes: bool, sender: str, message_id: str) -> None:
    """Keep an answer on its open episode, in the transaction that files its
    mail, until ``answer`` has carried it out (an episode whose session is
    added already keeps the answer that added it)."""
    episode = open_episode(repo, series_id)
    if episode is not None and not episode.extra_key:
        episode.pending = json.dumps({"yes": yes, "sender": sender, "message_id": message_id})


def _resume(app) -> None:
    """The answers a crash or a failure left undone, carried out again; one
    whose episode has closed since is answered as no longer needed."""
    with app.transaction() as repo:
        held = repo.db.scalars(select(BacklogEpisode).where(BacklogEpisode.pending.is_not(None))).all()
        undone = [(e.series_id, json.loads(e.pending)) for e in held]
        for episode in held:
            if episode.closed_at is not None:
                episode.pending = None
    for series_id, kept in undone:
        if series_id in app.series:
            answer(app, series_id, kept["yes"], kept["sender"], kept["message_id"])


def answer(app, series_id: str, yes: bool, sender: str, message_id: str) -> None:
    """A coordinator's ``Ekstra møde: ja|nej`` (checked as theirs by intake),
    after the commit: free/busy is read with no transaction open. "ja" takes
    up the episode's proposal as it stands (a newer one than the reply names,
    if one was offered since), if its time is still free; else a new one is
    offered in the answer."""
    series = app.series[series_id]
    with _LOCK:
        with app.transaction() as repo:
            episode = open_episode(repo, series_id)
            state = _state(episode, yes)
            unfilled = state == "already" and episode.pending is not None  # added, cut off before filling
            if state in ("declined", "not_needed", "already") and not unfilled:
                if state == "declined":
                    episode.answer = "no"
                if episode is not None:
                    episode.pending = None
                extra = app.session_by_key(episode.extra_key) if state == "already" else None
                _answer(app, repo, series, state, message_id, start=extra.start if extra else None)
                return
            current, key = episode.proposed_start, episode.extra_key
        if unfilled:
            _fill(app, series, app.session_by_key(key), message_id, episode.id)
            return
        if current is not None and still_free(app, series, current.astimezone(app.tz)):
            add(app, series, current.astimezone(app.tz), sender, message_id, episode.id)
            return
        fresh = propose(app, series)
        with app.transaction() as repo:
            episode = repo.db.get(BacklogEpisode, episode.id)
            episode.proposed_start, episode.pending = fresh, None
            _answer(app, repo, series, "proposal" if fresh else "no_time", message_id, start=fresh)


def _state(episode: BacklogEpisode | None, yes: bool) -> str:
    """What the answer meets: no open episode, a session already added, a
    "nej", or the episode's proposal to take up."""
    if episode is None:
        return "not_needed"
    if episode.extra_key:
        return "already"
    return "current" if yes else "declined"


def add(app, series: Series, start: datetime, sender: str, message_id: str, episode_id: int) -> Session:
    """The extra session: stored, the caches rebuilt, published, the waiting items moved in."""
    now = app.now()
    key = f"{series.id}/{start.date().isoformat()}"
    with app.transaction() as repo:
        repo.db.add(ExtraSession(session_key=key, series_id=series.id, start=start, created_at=now,
                                 source_message=message_id[:300], added_by=sender))
        episode = repo.db.get(BacklogEpisode, episode_id)
        episode.answer, episode.extra_key = "yes", key
        repo.audit("extra-session-added", actor=sender, series=series.id, session_start=start,
                   message_id=message_id)
    app.reload_sessions()
    session = app.session_by_key(key)
    _fill(app, series, session, message_id, episode_id)
    return session


def _fill(app, series: Series, extra: Session, message_id: str, episode_id: int) -> None:
    """The extra session published and the waiting items moved in: one
    transaction, which also clears the episode's held answer (done again by
    the hourly check if it is cut off)."""
    with app.transaction() as repo:
        queue = queue_of(app, repo, series.id, app.now(), without=extra.key)  # as before the extra session
        behind = [s for s in queue.sessions[queue.depth:] if s.start > extra.start]
        app.calendar_sync.publish(repo, extra.start.date(), extra.start.date())
        moved = _move_waiting(app, repo, series, extra, behind)
        _answer(app, repo, series, "added", message_id, start=extra.start, moved=len(moved))
        repo.db.get(BacklogEpisode, episode_id).pending = None
    log.info("extra session added series=%s start=%s moved=%d", series.id, extra.start.isoformat(), len(moved))


def _move_waiting(app, repo: Repository, series: Series, extra: Session, waiting_in: list[Session]) -> list[int]:
    """The items waiting in ``waiting_in`` (the sessions behind the full ones,
    after ``extra``), in slot order, into ``extra``: one per citizen, of an
    age the series serves on its day. Their caseworkers are told, their slots moved."""
    now = app.now()
    behind = {s.key: s for s in waiting_in}
    booked = [b for key in behind for b in repo.booked_in(key)]
    chosen: list[Booked] = []
    for item in slot_order(booked):
        if len(chosen) == extra.capacity:
            break
        if item.cpr_hash in {c.cpr_hash for c in chosen} or not series.serves_age(age_on(item.birth(), extra.start.date())):
            continue
        chosen.append(item)
    for item in chosen:
        repo.move_item(Bump(item.item_id, item.session_key, extra), now)
    ids = [c.item_id for c in chosen]
    for handler in app.change_handlers:
        handler(repo, {extra.key} | {c.session_key for c in chosen}, ids)
    holders = [holder[0] for holder in repo.slot_holders(extra.key)]
    for item in chosen:
        _tell_moved(app, repo, series, extra, behind[item.session_key], item.item_id, holders.index(item.item_id))
    return ids


def _tell_moved(app, repo: Repository, series: Series, extra: Session, left: Session, item_id: int,
                index: int) -> None:
    view = repo.item(item_id)
    slot = extra.slot_start(index, series.slot_length)
    subject, body = render_mail("backlog_moved.txt.j2", app.language, tz=app.tz, forum_name=app.forum_name,
                                cpr=view.cpr.masked, series_name=series.name, from_start=left.start,
                                start=extra.start, end=extra.end, slot_start=slot,
                                slot_end=slot + series.slot_length, location=series.location)
    message = text_mail(sender=app.forum_address, sender_name=app.forum_name, to=[view.sender], subject=subject,
                        body=body, sent_at=app.now(), language=app.language)
    repo.enqueue_mail(message, kind="notice", dedupe_key=f"extra-moved:{item_id}:{extra.key}",
                      recipients=[view.sender], about=[item_id])


# -- mails ---------------------------------------------------------------------------


def _answer(app, repo: Repository, series: Series, outcome: str, message_id: str, **context) -> None:
    _mail(app, repo, series, "backlog_answer.txt.j2", f"extra-answer:{repo.message_key(message_id)}",
          reply_to=message_id, outcome=outcome, proposed=context.pop("start", None), **context)


def _mail(app, repo: Repository, series: Series, template: str, key: str, reply_to: str | None = None,
          **context) -> str:
    """A mail to the series' coordinators (counts and times only); its subject."""
    proposed = context.get("proposed")
    ref = reference(series.id, proposed.astimezone(app.tz) if proposed else None)
    subject, body = render_mail(template, app.language, tz=app.tz, forum_name=app.forum_name, series=series,
                                reference=ref, mailbox=app.forum_address, **context)
    to = list(series.coordinators)
    message = text_mail(sender=app.forum_address, sender_name=app.forum_name, to=to, subject=subject, body=body,
                        sent_at=app.now(), language=app.language, in_reply_to=reply_to,
                        auto="auto-replied" if reply_to else "auto-generated")
    repo.enqueue_mail(message, kind="notice", dedupe_key=key, recipients=to)
    return subject
