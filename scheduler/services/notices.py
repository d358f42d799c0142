"""The mails a decision causes: receipts, the bumped caseworker's notice,
the coordinators' acute alert. All are queued in the outbox inside the
decision's transaction, so a decision and its answers commit together.

Receipts name the citizen only by masked CPR and never repeat health or
social text. Only the acute alert to the series' coordinators carries the
item in full: they are the ones who must act on it at once.
"""

from __future__ import annotations

from datetime import datetime

from scheduler.mail.compose import text_mail
from scheduler.mail.parse import ParsedMail
from scheduler.planning.allocation import Placement
from scheduler.planning.cpr import Cpr
from scheduler.planning.items import ItemContent
from scheduler.render import render_mail
from scheduler.services import deadlines
from scheduler.store.repository import ItemView, Repository


class Notices:
    def __init__(self, app, repo: Repository, parsed: ParsedMail, received_at: datetime) -> None:
        self.app = app
        self.repo = repo
        self.parsed = parsed
        self.received_at = received_at

    def _common(self) -> dict:
        return {
            "forum_name": self.app.forum_name,
            "sender_name": self.parsed.sender_name,
            "max_lines": self.app.config.intake.max_lines,
        }

    def _send(self, template: str, to: list[str], key: str, kind: str, reply: bool, about=(), **context) -> None:
        subject, body = render_mail(template, self.app.language, **self._common(), **context)
        message = text_mail(
            sender=self.app.forum_address,
            sender_name=self.app.forum_name,
            to=to,
            subject=subject,
            body=body,
            sent_at=self.app.now(),
            in_reply_to=self.parsed.message_id if reply else None,
            auto="auto-replied" if reply else "auto-generated",
            language=self.app.language,
        )
        self.repo.enqueue_mail(message, kind=kind, dedupe_key=key, recipients=to, about=about)

    def _receipt(self, template: str, about=(), **context) -> None:
        key = f"receipt:{self.repo.message_key(self.parsed.message_id)}"
        self._send(template, [self.parsed.sender], key, "receipt", True, about=about, **context)

    def rejected(self, sentence: str) -> None:
        self._receipt("receipt_rejected.txt.j2", reason=sentence, received_at=self.received_at)

    def placed(self, item_id: int, placement: Placement, content: ItemContent) -> None:
        session = placement.session
        item = ItemView(  # as stored just now: no need to read and decrypt it back
            id=item_id, series_id=session.series_id, session_key=session.key, session_start=session.start,
            acute=content.acute, received_at=self.received_at, sender=self.parsed.sender, status="pending",
            cpr=content.cpr, health=content.health, social=content.social,
        )
        series = self.app.series[session.series_id]
        self._receipt(
            "receipt_accepted.txt.j2",
            about=[item_id],
            cpr=content.cpr.masked,
            moved=placement.moved,
            why=placement.why_moved(self.received_at),
            first_start=placement.first_reachable.start,
            first_deadline=placement.first_reachable.deadline,
            acute=content.acute,
            replaced=placement.replaces is not None,
            attachments=list(self.parsed.attachments),
            **self._session_context(item),
        )
        touched = {session.key}
        if placement.bumped is not None:
            touched.add(placement.bumped.to.key)
            self._bumped(placement)
        if content.acute:
            self._alert(item, placement, content, series)
            deadlines.queue_update(self.app, self.repo, session, cause=f"item{item_id}")
        self.app_changed(touched, extra_items=[placement.replaces] if placement.replaces else [])

    def withdrawn(self, items: list[ItemView], cpr: Cpr) -> None:
        first = items[0]
        session = self.app.session_by_key(first.session_key)
        self._receipt(
            "receipt_withdrawn.txt.j2",
            about=[i.id for i in items],
            cpr=cpr.masked,
            start=session.start,
            series_name=self.app.series[first.series_id].name,
        )
        self.app_changed({i.session_key for i in items}, extra_items=[i.id for i in items])

    def _bumped(self, placement: Placement) -> None:
        bump = placement.bumped
        victim = self.repo.item(bump.item_id)
        self._send(
            "receipt_bumped.txt.j2",
            [victim.sender],
            f"bumped:{victim.id}:{bump.to.key}",
            "notice",
            False,
            about=[victim.id],
            cpr=victim.cpr.masked,
            from_start=self.app.session_by_key(bump.from_key).start,
            **self._session_context(victim),
        )

    def _alert(self, item: ItemView, placement: Placement, content: ItemContent, series) -> None:
        self._send(
            "alert_acute.txt.j2",
            list(series.coordinators),
            f"acute:{item.id}",
            "alert",
            False,
            about=[item.id],
            sender=item.sender,
            cpr=content.cpr.masked,
            health=list(content.health),
            social=list(content.social),
            bumped=placement.bumped is not None,
            bumped_to=placement.bumped.to.start if placement.bumped else None,
            **self._session_context(item),
        )

    def _session_context(self, item: ItemView) -> dict:
        session = self.app.session_by_key(item.session_key)
        series = self.app.series[session.series_id]
        index = self.repo.slot_index(item)
        slot_start = session.slot_start(index, series.slot_length)
        return {
            "series_name": series.name,
            "start": session.start,
            "end": session.end,
            "deadline": session.deadline,
            "location": series.location,
            "slot_start": slot_start,
            "slot_end": slot_start + series.slot_length,
        }

    def app_changed(self, session_keys: set[str], extra_items: list[int]) -> None:
        for handler in getattr(self.app, "change_handlers", []):
            handler(self.repo, session_keys, extra_items)

    # -- floods (services/floodgate.py) ---------------------------------------

    def rate_limited(self, sentence: str, per_hour: int) -> None:
        """The first mail over a sender's hourly limit: one notice to them, one to the administrator."""
        key = self.repo.message_key(self.parsed.message_id)
        self._send("notice_rate_limited.txt.j2", [self.parsed.sender], f"rate:{key}", "receipt", True,
                   reason=sentence)
        self._send("alert_rate_limited.txt.j2", [self.app.config.service.admin], f"rate-alert:{key}", "alert",
                   False, per_hour=per_hour, sender=self.parsed.sender, received_at=self.received_at)
