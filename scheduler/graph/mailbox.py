"""Agenda items from, and mail through, the forum mailbox in Exchange Online.

``GraphSource`` (ports.MailSource) follows the inbox with a delta query
(``mailFolders/inbox/messages/delta``, ``changeType=created``: after the
first full round only new mail is reported, not the removals our own moves
cause nor flags a person sets in Outlook): a round of pages, each a
``@odata.nextLink``, ending in a ``@odata.deltaLink`` that the next poll
starts from. The link reached is kept in the database (``StateStore``),
but only once every mail it has passed is settled: a restart resumes there
and is handed again what was fetched and not settled (at-least-once; the
intake de-duplicates on Message-ID), never less. The inbox only ever holds
unsettled mail, so a link Graph no longer knows (HTTP 410) is answered by
a fresh full round, which hands out exactly the unsettled mail.

The MIME of a batch is read with ``$value`` requests inside ``$batch``
(20 per round trip); ``receivedDateTime`` is the arrival. ``settle`` moves
the mails (``move``, 20 per ``$batch``) into child folders of the inbox,
found by display name or created on first use.

``GraphTransport`` (ports.MailTransport) posts the finished message as
base64 MIME to ``sendMail``, so it leaves byte for byte as over SMTP;
envelope recipients the headers do not name go as Bcc through a draft.

``purge_settled`` (retention) and ``erase_settled`` (a citizen's erasure)
delete for good (``permanentDelete``) in the settled folders and Sent Items
(erasure: the inbox too).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

from scheduler.graph.client import GraphClient, GraphError
from scheduler.mail.envelope import hidden_recipients
from scheduler.ports import Disposition, IncomingMail, OutgoingMail, PermanentError, StateStore

log = logging.getLogger("sparring.graph")

READ = "Mail.ReadWrite"
SEND = "Mail.Send"
_MIME_LIMIT = 3_500_000  # sendMail takes at most 4 MB per request, base64 included
_GONE = (404,)


def delta_key(mailbox: str) -> str:
    """The meta key of a mailbox's delta link (meta keys hold 64 characters)."""
    key = f"graph.delta:{mailbox.lower()}"
    return key if len(key) <= 64 else "graph.delta:" + hashlib.sha256(mailbox.lower().encode()).hexdigest()[:40]


class GraphSource:
    """The forum mailbox's inbox through a delta query; ``ref`` is the message id."""

    def __init__(self, client: GraphClient, mailbox: str, folders: Mapping[Disposition, str], state: StateStore,
                 batch_size: int = 50, poll_seconds: float = 5.0) -> None:
        self.client = client
        self.user = f"/users/{mailbox}"
        self.names = dict(folders)
        self.state = state
        self.key = delta_key(mailbox)
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._link: str | None = None  # where the next delta request starts
        self._saved: str | None = None  # the link in the database
        self._pending: dict[str, datetime] = {}  # found, not yet settled: id -> arrival
        self._folders: dict[Disposition, str] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    # -- fetching ------------------------------------------------------------

    def fetch(self, limit: int) -> list[IncomingMail]:
        with self._lock:
            self._follow(limit)
            chosen = sorted(self._pending, key=self._pending.__getitem__)[:limit]
            mails = self._read(chosen)
            if not self._pending:
                self._save()
            return mails

    def _follow(self, limit: int) -> None:
        """Read delta pages until ``limit`` mails are pending or the round ends."""
        if self._link is None:
            self._link = self._saved = self._stored()
        restarted = False
        while True:
            try:
                page = self._page(self._link)
            except GraphError as exc:
                if exc.status != 410 or restarted:
                    raise
                log.info("graph: the mailbox's delta link has expired; reading the inbox afresh")
                self._link, restarted = None, True
                continue
            for item in page.get("value", []):
                if "@removed" in item:
                    self._pending.pop(item["id"], None)
                elif item.get("receivedDateTime"):
                    self._pending[item["id"]] = _instant(item["receivedDateTime"])
            if page.get("@odata.nextLink"):
                self._link = page["@odata.nextLink"]
                if len(self._pending) >= limit:
                    return
                continue
            self._link = page.get("@odata.deltaLink") or self._link
            return

    def _page(self, link: str | None) -> dict:
        headers = {"Prefer": f"odata.maxpagesize={self.batch_size}"}
        if link is None:
            return self.client.request("GET", f"{self.user}/mailFolders/inbox/messages/delta",
                                       params={"$select": "receivedDateTime", "changeType": "created"},
                                       headers=headers,
                                       what="mailbox fetch", permission=READ).json()
        return self.client.request("GET", link, headers=headers, what="mailbox fetch", permission=READ).json()

    def _stored(self) -> str | None:
        link = self.state.get_meta(self.key)
        if link and not link.startswith(self.client.origin + "/"):
            log.info("graph: the stored delta link is for another endpoint; reading the inbox afresh")
            return None
        return link

    def _save(self) -> None:
        if self._link and self._link != self._saved:
            self.state.set_meta(self.key, self._link)
            self._saved = self._link

    def _read(self, ids: list[str]) -> list[IncomingMail]:
        """The MIME of ``ids``, 20 per $batch; a message gone meanwhile is dropped."""
        answers = self.client.batch([{"method": "GET", "url": f"{self.user}/messages/{i}/$value"} for i in ids],
                                    what="mailbox fetch", permission=READ)
        out = []
        for ref, answer in zip(ids, answers):
            self.client.check(answer, "mailbox fetch", READ, ok=_GONE)
            if int(answer["status"]) in _GONE:
                self._pending.pop(ref, None)
                continue
            out.append(IncomingMail(ref=ref, raw=self.client.body_bytes(answer), received_at=self._pending[ref]))
        return out

    # -- settling --------------------------------------------------------------

    def settle(self, moves: Mapping[Disposition, Sequence[str]]) -> None:
        with self._lock:
            wanted = [(d, ref) for d, refs in moves.items() for ref in refs]
            if not wanted:
                return
            requests = [{"method": "POST", "url": f"{self.user}/messages/{ref}/move",
                         "body": {"destinationId": self._folder(d)}, "headers": {"Content-Type": "application/json"}}
                        for d, ref in wanted]
            answers = self.client.batch(requests, what="mailbox move", permission=READ)
            for (_, ref), answer in zip(wanted, answers):
                self.client.check(answer, "mailbox move", READ, ok=_GONE)  # already moved: fine
                self._pending.pop(ref, None)
            if not self._pending:
                self._save()

    def _folder(self, disposition: Disposition) -> str:
        """The id of the disposition's child folder of the inbox: all looked up
        in one listing, the missing ones created, on first use."""
        if not self._folders:
            found = self._children()
            for name in self.names.values():
                if name.lower() not in found:
                    found[name.lower()] = self._create(name)
            self._folders = {kind: found[name.lower()] for kind, name in self.names.items()}
        return self._folders[disposition]

    def _children(self) -> dict[str, str]:
        return {f["displayName"].lower(): f["id"] for f in self.client.paged(
            f"{self.user}/mailFolders/inbox/childFolders", {"$top": "100", "$select": "id,displayName"},
            what="mailbox folders", permission=READ)}

    def _create(self, name: str) -> str:
        try:
            return self.client.request("POST", f"{self.user}/mailFolders/inbox/childFolders",
                                       json={"displayName": name}, what="mailbox folder create",
                                       permission=READ).json()["id"]
        except GraphError as exc:
            if exc.status != 409:  # made meanwhile by someone else
                raise
            return self._children()[name.lower()]

    # -- retention, waiting ------------------------------------------------------

    def purge_settled(self, before: datetime) -> int:
        """Delete settled mails, and the copies of sent mail in Sent Items,
        received (stored) before ``before`` (retention) for good."""
        with self._lock:
            ids = [m["id"] for f in self._settled("sentitems") for m in self.client.paged(
                f"{self.user}/mailFolders/{f}/messages",
                {"$filter": f"receivedDateTime lt {_utc(before)}", "$select": "id", "$top": "100"},
                what="mailbox purge", permission=READ)]
            return self._delete(ids, "mailbox purge")

    def erase_settled(self, message_ids: Iterable[str]) -> int:
        """Delete for good the mails with these Message-IDs in the settled
        folders, the inbox and Sent Items (a citizen's erasure: their mails and
        the copies of what was sent about them): one filtered listing per
        Message-ID and folder, then one permanentDelete per mail, 20 per
        ``$batch``. Run again after a failure, it deletes what is left."""
        wanted = [f"<{m.strip('<> ')}>" for m in message_ids if m.strip("<> ")]
        with self._lock:
            folders = self._settled("inbox", "sentitems")
            lookups = [{"method": "GET", "url": f"{self.user}/mailFolders/{f}/messages?" + _by_message_id(m)}
                       for f in folders for m in wanted]
            answers = self.client.batch(lookups, what="mailbox erase", permission=READ)
            found = [self.client.check(a, "mailbox erase", READ, ok=_GONE).get("body") or {} for a in answers]
            return self._delete([m["id"] for page in found for m in page.get("value", [])], "mailbox erase")

    def _settled(self, *more: str) -> list[str]:
        """The settled folders' ids (created if missing), after ``more`` (well-known names)."""
        return list(dict.fromkeys([*more, *(self._folder(d) for d in self.names)]))

    def _delete(self, ids: list[str], what: str) -> int:
        answers = self.client.batch([{"method": "POST", "url": f"{self.user}/messages/{i}/permanentDelete"}
                                     for i in ids], what=what, permission=READ)
        for answer in answers:
            self.client.check(answer, what, READ, ok=_GONE)  # gone meanwhile: fine
        return len(ids)

    def wait(self, timeout: float) -> bool:
        """Sleep until ``timeout`` (or close): Graph has no push for a daemon
        without a public URL, so the delta query is polled."""
        self._closed.wait(timeout)
        return False

    def close(self) -> None:
        self._closed.set()  # the client is shared by the process's ports: not closed here


class GraphTransport:
    """Sends through the forum mailbox; Exchange keeps a copy in Sent Items."""

    def __init__(self, client: GraphClient, mailbox: str) -> None:
        self.client = client
        self.user = f"/users/{mailbox}"

    def send(self, mail: OutgoingMail) -> None:
        data = base64.b64encode(mail.message)
        if len(data) > _MIME_LIMIT:
            raise PermanentError(f"Graph mail send failed: the message is {len(mail.message) // 1024} KB, more "
                                 "than sendMail takes (about 2.5 MB before base64).")
        mime = {"Content-Type": "text/plain"}
        hidden = hidden_recipients(mail)
        if not hidden:
            self.client.request("POST", f"{self.user}/sendMail", data=data, headers=mime, what="mail send",
                                permission=SEND)
            return
        draft = self.client.request("POST", f"{self.user}/messages", data=data, headers=mime, what="mail send",
                                    permission=READ).json()["id"]
        bcc = [{"emailAddress": {"address": address}} for address in hidden]
        self.client.request("PATCH", f"{self.user}/messages/{draft}", json={"bccRecipients": bcc},
                            what="mail send", permission=READ)
        self.client.request("POST", f"{self.user}/messages/{draft}/send", what="mail send", permission=SEND)

    def close(self) -> None:
        pass  # the client is shared by the process's ports


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _by_message_id(message_id: str) -> str:
    """The query of a folder's messages with this Message-ID (an OData string: its quotes doubled)."""
    literal = "'" + message_id.replace("'", "''") + "'"
    return urlencode({"$filter": f"internetMessageId eq {literal}", "$select": "id", "$top": "100"}, quote_via=quote)


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
