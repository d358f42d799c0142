"""Agenda items from, and mail through, the forum's Exchange mailbox.

``ExchangeSource`` (ports.MailSource) reads the inbox oldest-received first
in batches: one FindItem (ids and DateTimeReceived) and one GetItem (the
MIME content) per batch, never a request per mail. ``settle`` moves the
mails with one MoveItem per disposition into subfolders of the inbox
(Danish names by default), created on first use. ``wait`` polls (sleeps):
EWS streaming notifications (GetStreamingEvents) are a later step.

``ExchangeTransport`` (ports.MailTransport) sends a finished RFC 5322
message as MIME content with a copy in Sent Items; envelope recipients not
named in the To/Cc headers go as Bcc.

``purge_settled`` (retention) and ``erase_settled`` (a citizen's erasure)
delete, hard, in the settled folders and Sent Items (erasure: the inbox too).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

from exchangelib import Folder, Message
from exchangelib.errors import ErrorFolderExists, ErrorItemNotFound
from exchangelib.folders import SHALLOW, FolderCollection
from exchangelib.services import CreateFolder

from scheduler.exchange.errors import check, mapped
from scheduler.mail.envelope import hidden_recipients
from scheduler.ports import Disposition, IncomingMail, OutgoingMail


class ExchangeSource:
    """The forum mailbox's inbox; ``ref`` is the EWS item id."""

    def __init__(self, account, folders: Mapping[Disposition, str], batch_size: int = 200,
                 poll_seconds: float = 60.0) -> None:
        self.account = account
        self.names = dict(folders)
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._folders: dict[Disposition, Folder] = {}
        self._closed = threading.Event()

    def fetch(self, limit: int) -> list[IncomingMail]:
        out: list[IncomingMail] = []
        with mapped("mailbox fetch"):
            query = self.account.inbox.all().order_by("datetime_received").only("datetime_received")
            query.page_size = max(1, min(limit, 1000))
            found = list(query[:limit])
            for start in range(0, len(found), self.batch_size):
                batch = found[start:start + self.batch_size]
                fetched = self.account.fetch(ids=batch, folder=self.account.inbox, chunk_size=len(batch),
                                             only_fields=["mime_content", "datetime_received"])
                out.extend(_incoming(item) for item in fetched if not isinstance(item, Exception))
        return out

    def settle(self, moves: Mapping[Disposition, Sequence[str]]) -> None:
        with mapped("mailbox move"):
            for disposition, refs in moves.items():
                if not refs:
                    continue
                target = self._folder(disposition)
                results = self.account.bulk_move(ids=[(ref, None) for ref in refs], to_folder=target,
                                                 chunk_size=len(refs))
                check(results, "mailbox move", ignore=(ErrorItemNotFound,))

    def _folder(self, disposition: Disposition) -> Folder:
        """The disposition's subfolder of the inbox: all looked up in one FindFolder,
        the missing ones created in one CreateFolder, on first use."""
        if not self._folders:
            found = self._subfolders()
            missing = [name for name in self.names.values() if name.lower() not in found]
            if missing:
                created = list(CreateFolder(account=self.account).call(
                    parent_folder=self.account.inbox, folders=[Folder(parent=self.account.inbox, name=name) for name in missing]))
                check(created, "mailbox folder create", ignore=(ErrorFolderExists,))
                if any(isinstance(c, ErrorFolderExists) for c in created):  # made meanwhile by someone else
                    found = self._subfolders()
                found.update((name.lower(), f) for name, f in zip(missing, created) if isinstance(f, Folder))
            self._folders = {kind: found[name.lower()] for kind, name in self.names.items()}
        return self._folders[disposition]

    def _subfolders(self) -> dict[str, Folder]:
        children = FolderCollection(account=self.account, folders=[self.account.inbox]).find_folders(depth=SHALLOW)
        return {f.name.lower(): f for f in children if not isinstance(f, Exception)}

    def purge_settled(self, before: datetime) -> int:
        """Delete settled mails, and the copies of sent mail in Sent Items,
        received (stored) before ``before`` (retention), hard."""
        with mapped("mailbox purge"):
            return self._delete(self._settled(self.account.sent).filter(datetime_received__lt=before),
                                "mailbox purge")

    def erase_settled(self, message_ids: Iterable[str]) -> int:
        """Delete, hard, the mails with these Message-IDs in the settled
        folders, the inbox and Sent Items (a citizen's erasure: their mails and
        the copies of what was sent about them): one FindItem over all of them,
        one DeleteItem. Run again after a failure, it deletes what is left."""
        wanted = [f"<{m.strip('<> ')}>" for m in message_ids if m.strip("<> ")]
        if not wanted:
            return 0
        with mapped("mailbox erase"):
            folders = self._settled(self.account.inbox, self.account.sent)
            return self._delete(folders.filter(message_id__in=wanted), "mailbox erase")

    def _settled(self, *more: Folder) -> FolderCollection:
        folders = {id(f): f for f in (*more, *(self._folder(d) for d in self.names))}
        return FolderCollection(account=self.account, folders=list(folders.values()))

    def _delete(self, query, what: str) -> int:
        ids = [(i.id, i.changekey) for i in query.only("id")]
        if ids:
            check(self.account.bulk_delete(ids=ids, delete_type="HardDelete"), what, ignore=(ErrorItemNotFound,))
        return len(ids)

    def wait(self, timeout: float) -> bool:
        """Sleep until ``timeout`` (or close); no push yet, so always False."""
        self._closed.wait(timeout)
        return False

    def close(self) -> None:
        self._closed.set()
        self.account.protocol.close()


def _incoming(item: Message) -> IncomingMail:
    received = datetime.fromtimestamp(item.datetime_received.timestamp(), timezone.utc)
    raw = item.mime_content
    return IncomingMail(ref=item.id, raw=raw if isinstance(raw, bytes) else raw.encode(), received_at=received)


class ExchangeTransport:
    """Sends through the forum mailbox; Exchange keeps a copy in Sent Items."""

    def __init__(self, account) -> None:
        self.account = account

    def send(self, mail: OutgoingMail) -> None:
        with mapped("mail send"):
            message = Message(account=self.account, folder=self.account.sent, mime_content=mail.message,
                              bcc_recipients=hidden_recipients(mail) or None)
            message.send_and_save()

    def close(self) -> None:
        self.account.protocol.close()
