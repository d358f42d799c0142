"""The mails a decision causes: receipts, the bumped caseworker's notice,
the coordinators' acute alert. All are queued in the outbox inside the
decision's transaction, so a decision and its answers commit together.

Receipts name the citizen only by masked CPR and never repeat health or
social text. Only the acute alert to the series' coordinators carries the
item's text: they are the ones who must act on it at once.

What names a slot (the receipt of a placed item, the bumped caseworker's
notice, the acute alert) is rendered when the batch has been decided
(``repo.before_commit``): a later mail of the same batch may move the item
(an acute one ahead of it, a withdrawal), and the receipt must name the
slot the invitation and the agenda give it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from scheduler.mail.compose import text_mail
from scheduler.mail.parse import ParsedMail
from scheduler.planning.allocation import Placement, slot_order
from scheduler.cpr import Cpr, has_cpr
from scheduler.planning.items import ItemContent
from scheduler.render import render_mail
from scheduler.services import deadlines
from scheduler.store.repository import PENDING, ItemView, Repository
from scheduler.store.tables import Item

log = logging.getLogger("sparring.notices")


class Notices:
    def __init__(self, app, repo: Repository, parsed: ParsedMail, received_at: datetime) -> None:
        self.app = app
        self.repo = repo
        self.parsed = parsed
        self.received_at = received_at
        # Taken now: a receipt rendered once the batch is decided answers this
        # mail, not the batch's last (S/MIME: encrypted as this mail came).
        self.encrypted = repo.replying_encrypted

    def _common(self) -> dict:
        name = self.parsed.sender_name
        return {
            "forum_name": self.app.forum_name,
            "sender_name": "" if has_cpr(name) else name,  # "Kære sagsbehandler" then
            "max_lines": self.app.config.intake.max_lines,
        }

    def _send(self, template: str, to: list[str], key: str, kind: str, reply: bool, about=(), **context) -> None:
        context = {**self._common(), **context}
        subject, body = render_mail(template, self.app.language, tz=self.app.tz, **context)
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
        self.repo.enqueue_mail(message, kind=kind, dedupe_key=key, recipients=to, about=about,
                               encrypted=self.encrypted)

    def _receipt(self, template: str, about=(), **context) -> None:
        key = f"receipt:{self.repo.message_key(self.parsed.message_id)}"
        self._send(template, [self.parsed.sender], key, "receipt", True, about=about, **context)

    def rejected(self, sentence: str) -> None:
        self._receipt("receipt_rejected.txt.j2", reason=sentence, received_at=self.received_at)

    def decisions_answered(self, **context) -> None:
        """The coordinator's answer to a reply with decisions (no CPR: slots and case ids only)."""
        self._receipt("decision_receipt.txt.j2", **context)

    def _when_decided(self, task) -> None:
        """Run ``task`` once the batch is decided, inside its transaction,
        after the tasks queued before it (the receipt goes out before the
        calendar writes it announces). A task that fails is logged (its
        class only) and costs its own notice, not the batch."""
        def guarded() -> None:
            try:
                task()
            except Exception as exc:
                log.error("notice not queued error=%s", type(exc).__name__)

        self.repo.before_commit.append(guarded)

    def placed(self, item_id: int, placement: Placement, content: ItemContent) -> None:
        session = placement.session
        series = self.app.series[session.series_id]
        self._when_decided(lambda: self._receipt(
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
            **self._session_context(item_id, session.key),
        ))
        touched = {session.key}
        if placement.bumped is not None:
            touched.add(placement.bumped.to.key)
            self._when_decided(lambda: self._bumped(placement))
        if content.acute:
            self._when_decided(lambda: self._alert(item_id, placement, content, series))
            self._when_decided(lambda: deadlines.queue_update(
                self.app, self.repo, self.app.session_by_key(self._slot(item_id, session.key)[0]),
                cause=f"item{item_id}"))
        self._when_decided(lambda: self.app_changed(
            touched, extra_items=[placement.replaces] if placement.replaces else []))

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
        self._when_decided(lambda: self.app_changed({i.session_key for i in items},
                                                    extra_items=[i.id for i in items]))

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
            sender_name="",  # the victim's own name is not known here, and never the acute sender's
            from_start=self.app.session_by_key(bump.from_key).start,
            **self._session_context(victim.id, victim.session_key),
        )

    def _alert(self, item_id: int, placement: Placement, content: ItemContent, series) -> None:
        self._send(
            "alert_acute.txt.j2",
            list(series.coordinators),
            f"acute:{item_id}",
            "alert",
            False,
            about=[item_id],
            sender=self.parsed.sender,
            cpr=content.cpr.masked,
            health=list(content.health),
            social=list(content.social),
            bumped=placement.bumped is not None,
            bumped_to=placement.bumped.to.start if placement.bumped else None,
            **self._session_context(item_id, placement.session.key),
        )

    def _where(self, item_id: int, placed_in: str) -> tuple[str, bool]:
        """The item's session now, and whether it still holds a slot there."""
        row = self.repo.db.execute(select(Item.session_key, Item.status).where(Item.id == item_id)).first()
        return (row.session_key, row.status == PENDING) if row else (placed_in, False)

    def _slot(self, item_id: int, placed_in: str) -> tuple[str, int | None]:
        """The item's session now and its place among the session's pending
        items (None: it holds none), in the order the invitations give
        slots (``slot_order``, as ``slot_holders``). Read from the batch's
        occupancy; only an item that left its session is looked up."""
        order = slot_order(self.repo.booked_in(placed_in))
        index = next((n for n, booked in enumerate(order) if booked.item_id == item_id), None)
        if index is not None:
            return placed_in, index
        key, pending = self._where(item_id, placed_in)  # bumped, withdrawn or replaced since
        holders = [holder[0] for holder in self.repo.slot_holders(key)] if pending else []
        return key, holders.index(item_id) if item_id in holders else None

    def _session_context(self, item_id: int, placed_in: str) -> dict:
        """The item's session and slot as they stand now. An item already
        gone again (withdrawn or replaced later in the batch) has no slot
        to announce."""
        key, index = self._slot(item_id, placed_in)
        session = self.app.session_by_key(key)
        series = self.app.series[session.series_id]
        slot_start = session.slot_start(index, series.slot_length) if index is not None else None
        return {
            "series_name": series.name,
            "start": session.start,
            "end": session.end,
            "deadline": session.deadline,
            "location": series.location,
            "slot_start": slot_start,
            "slot_end": slot_start + series.slot_length if slot_start is not None else None,
        }

    @staticmethod
    def run_decided(repo: Repository) -> None:
        """Run what waited for the decisions (see ``_when_decided``), in order;
        ``App.transaction`` does it at the end of any transaction still holding some."""
        tasks, repo.before_commit[:] = list(repo.before_commit), []
        for task in tasks:
            task()

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
