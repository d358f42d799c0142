"""A fake Exchange Web Services endpoint on 127.0.0.1 for exchangelib.

Exchange has no open server, so the tests run exchangelib against this one:
a threaded ``http.server`` at ``/EWS/Exchange.asmx`` that parses each SOAP
request with lxml, records ``(operation, body element)`` in ``requests``
for the tests to assert on, keeps a tiny mailbox (folders, items) in memory,
and answers from the templates in ``tests/fixtures/ews/`` (one per
operation, written from messages.xsd/types.xsd). Basic auth only; every
response carries an Exchange 2016 ``ServerVersionInfo`` header.

``fail_next(op, backoff_ms)`` makes the next request of ``op`` fail with a
throttling fault (``ErrorServerBusy`` with ``BackOffMilliseconds``).
"""

from __future__ import annotations

import base64
import itertools
import struct
import threading
from email.parser import BytesParser
from email.policy import default
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jinja2
import pytest
from lxml import etree

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ews"
NS = {
    "s": "http://schemas.xmlsoap.org/soap/envelope/",
    "m": "http://schemas.microsoft.com/exchange/services/2006/messages",
    "t": "http://schemas.microsoft.com/exchange/services/2006/types",
}
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(FIXTURES), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True)
# MS-OXOCAL 2.2.1.27: the GlobalObjectId Exchange derives from a non-Outlook UID.
_GOID_HEAD = bytes.fromhex("040000008200E00074C5B7101A82E008") + bytes(20)


def global_object_id(uid: str) -> bytes:
    data = b"vCal-Uid\x01\x00\x00\x00" + uid.encode() + b"\x00"
    return _GOID_HEAD + struct.pack("<I", len(data)) + data


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None
    element: str = "Folder"
    folder_class: str = "IPF.Note"
    total: int = 0
    children: int = 0


@dataclass
class Item:
    id: str
    folder: str
    kind: str  # CalendarItem | Message
    element: etree._Element | None = None
    changekey: str = "CK1"
    subject: str = ""
    uid: str = ""
    start: str = ""
    end: str = ""
    mime: str = ""  # base64, as MimeContent carries it
    received: str = ""
    message_id: str = ""  # InternetMessageId, from the MIME's Message-ID header
    calendar_type: str = "Single"
    deleted: set[int] = field(default_factory=set)  # instance indexes of a series
    returned: bool = True  # CreateItem of a sent message returns no item
    recurrence: str = ""  # the t:Recurrence element as created, for GetItem
    moved: dict[int, tuple[str, str]] = field(default_factory=dict)  # instance index -> (Start, End)

    @property
    def goid(self) -> str:
        return base64.b64encode(global_object_id(self.uid)).decode()

    @property
    def item_class(self) -> str:
        return "IPM.Appointment" if self.kind == "CalendarItem" else "IPM.Note"


def _message_id(raw: bytes) -> str:
    return str(BytesParser(policy=default).parsebytes(raw, headersonly=True)["Message-ID"] or "")


def _matches(condition: etree._Element, item: Item) -> bool:
    """A FindItem restriction (types.xsd SearchExpressionType) on the few
    properties the tests search: Or/And of IsEqualTo, IsLessThan."""
    kind = etree.QName(condition).localname
    if kind in ("Or", "And"):
        return (any if kind == "Or" else all)(_matches(c, item) for c in condition)
    value = condition.find("t:FieldURIOrConstant/t:Constant", NS).get("Value")
    if condition.find("t:ExtendedFieldURI", NS) is not None:  # the GlobalObjectId
        have, value = global_object_id(item.uid), base64.b64decode(value)
    else:
        field_uri = condition.find("t:FieldURI", NS).get("FieldURI")
        have = {"message:InternetMessageId": item.message_id, "item:DateTimeReceived": item.received}[field_uri]
    if kind == "IsEqualTo":
        return have == value
    if kind == "IsLessThan":  # times: both UTC, so compared as instants
        return bool(have) and datetime.fromisoformat(have) < datetime.fromisoformat(value)
    raise ValueError(f"fake EWS: no restriction {kind}")


def _text(el: etree._Element | None, path: str) -> str:
    found = el.find(path, NS) if el is not None else None
    return (found.text or "") if found is not None else ""


class FakeEws:
    """The mailbox and the request log; ``url`` once started."""

    def __init__(self, user: str = "sparring", password: str = "hemmeligt") -> None:
        self.user, self.password = user, password
        self.requests: list[tuple[str, etree._Element]] = []
        self.availability: dict[str, list[tuple[str, str, str]] | str] = {}
        self._faults: list[tuple[str, int]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.reset()

    # -- test helpers --------------------------------------------------------

    def reset(self) -> None:
        self.requests.clear()
        self.availability.clear()
        self._faults.clear()
        self.folders: dict[str, Folder] = {}
        self.items: dict[str, Item] = {}
        for name, parent, element, cls in (
            ("root", None, "Folder", "IPF"), ("msgfolderroot", "root", "Folder", "IPF"),
            ("inbox", "msgfolderroot", "Folder", "IPF.Note"),
            ("calendar", "msgfolderroot", "CalendarFolder", "IPF.Appointment"),
            ("sentitems", "msgfolderroot", "Folder", "IPF.Note"),
        ):
            self.folders[name] = Folder(name, name.capitalize(), parent, element, cls)

    def count(self, op: str) -> int:
        return sum(1 for name, _ in self.requests if name == op)

    def bodies(self, op: str) -> list[etree._Element]:
        return [el for name, el in self.requests if name == op]

    def fail_next(self, op: str, backoff_ms: int = 10) -> None:
        self._faults.append((op, backoff_ms))

    def deliver(self, raw: bytes, received: datetime, folder: str = "inbox") -> str:
        """Put a mail into a folder as the transport would (received in UTC)."""
        item = Item(self._new_id(), folder, "Message", mime=base64.b64encode(raw).decode(),
                    received=received.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    message_id=_message_id(raw))
        self.items[item.id] = item
        return item.id

    def in_folder(self, name: str) -> list[Item]:
        ids = {f.id for f in self.folders.values() if f.name == name or f.id == name}
        return [i for i in self.items.values() if i.folder in ids]

    # -- dispatch ------------------------------------------------------------

    def handle(self, body: bytes) -> tuple[int, bytes]:
        root = etree.fromstring(body)
        request = root.find("s:Body", NS)[0]
        op = etree.QName(request).localname.removesuffix("Request")
        with self._lock:
            self.requests.append((op, request))
            for fault in self._faults:
                if fault[0] == op:
                    self._faults.remove(fault)
                    return 500, self.render("ServerBusy.xml", backoff_ms=fault[1])
            context = getattr(self, f"op_{op}")(request)
        return 200, self.render(f"{op}.xml", **context)

    def render(self, template: str, **context) -> bytes:
        body = _ENV.get_template(template).render(**context)
        return _ENV.get_template("envelope.xml").render(body=body).encode()

    def _new_id(self) -> str:
        return f"AAMkAGI{next(self._ids):06d}="

    def _folder(self, el: etree._Element) -> Folder | None:
        return self.folders.get(el.get("Id"))

    # -- folders ---------------------------------------------------------------

    def _refresh_counts(self, f: Folder) -> Folder:
        f.total = sum(1 for i in self.items.values() if i.folder == f.id)
        f.children = sum(1 for c in self.folders.values() if c.parent == f.id)
        return f

    def op_GetFolder(self, req):
        out = []
        for el in req.find("m:FolderIds", NS):
            f = self._folder(el)
            out.append(self._refresh_counts(f) if f else {"error": "ErrorFolderNotFound"})
        return {"results": out}

    def op_FindFolder(self, req):
        parents = [self._folder(el) for el in req.find("m:ParentFolderIds", NS)]
        return {"results": [{"folders": [self._refresh_counts(c) for c in self.folders.values()
                                         if p and c.parent == p.id]} for p in parents]}

    def op_CreateFolder(self, req):
        parent = self._folder(req.find("m:ParentFolderId", NS)[0])
        out = []
        for el in req.find("m:Folders", NS):
            name = _text(el, "t:DisplayName")
            if any(f.parent == parent.id and f.name.lower() == name.lower() for f in self.folders.values()):
                out.append({"error": "ErrorFolderExists"})
                continue
            new = Folder(self._new_id(), name, parent.id)
            self.folders[new.id] = new
            out.append(new)
        return {"results": out}

    # -- items -----------------------------------------------------------------

    def op_CreateItem(self, req):
        saved = req.find("m:SavedItemFolderId", NS)
        folder = self._folder(saved[0]) if saved is not None else self.folders["sentitems"]
        disposition = req.get("MessageDisposition", "SaveOnly")
        out = []
        for el in req.find("m:Items", NS):
            kind = etree.QName(el).localname
            if kind == "CancelCalendarItem":
                ref = el.find("t:ReferenceItemId", NS).get("Id")
                out.append({"returned": False} if self.items.pop(ref, None) else {"error": "ErrorItemNotFound"})
                continue
            item = Item(self._new_id(), folder.id, kind, element=el, subject=_text(el, "t:Subject"),
                        uid=_text(el, "t:UID"), start=_text(el, "t:Start"), end=_text(el, "t:End"),
                        mime=_text(el, "t:MimeContent"))
            if kind == "Message":  # a sent copy: stamped by the server's clock, as Exchange does
                item.received = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                item.message_id = _message_id(base64.b64decode(item.mime))
            if (rule := el.find("t:Recurrence", NS)) is not None:
                item.calendar_type, item.recurrence = "RecurringMaster", etree.tostring(rule).decode()
            self.items[item.id] = item
            item.returned = kind != "Message" or disposition == "SaveOnly"
            out.append(item)
        return {"results": out}

    def _resolve(self, el: etree._Element) -> Item | dict:
        """An ItemId or OccurrenceItemId to an item (an occurrence is a view of its master)."""
        if etree.QName(el).localname == "OccurrenceItemId":
            master = self.items.get(el.get("RecurringMasterId"))
            index = int(el.get("InstanceIndex"))
            if master is None or master.calendar_type != "RecurringMaster":
                return {"error": "ErrorItemNotFound"}
            if index in master.deleted:
                return {"error": "ErrorCalendarOccurrenceIsDeletedFromRecurrence"}
            return Item(f"{master.id}:{index}", master.folder, "CalendarItem", uid=master.uid,
                        subject=master.subject, calendar_type="Occurrence")
        return self.items.get(el.get("Id")) or {"error": "ErrorItemNotFound"}

    def op_UpdateItem(self, req):
        out = []
        for change in req.find("m:ItemChanges", NS):
            item = self._resolve(change[0])
            if isinstance(item, Item):
                item.changekey = f"CK{int(item.changekey[2:]) + 1}" if item.changekey[2:].isdigit() else "CK2"
                self._apply(change, item)
            out.append(item)
        return {"results": out}

    def _apply(self, change: etree._Element, item: Item) -> None:
        """Keep what the calendar tests read back: times, subject, recurrence; an
        occurrence's new times on its master."""
        values = {}
        for setting in change.iterfind("t:Updates/t:SetItemField", NS):
            name = setting.find("t:FieldURI", NS).get("FieldURI").partition(":")[2]
            values[name] = setting.find(f"t:CalendarItem/t:{name}", NS)
        if item.calendar_type == "Occurrence":
            master = self.items[change[0].get("RecurringMasterId")]
            master.moved[int(change[0].get("InstanceIndex"))] = (_text(change, ".//t:Start"), _text(change, ".//t:End"))
            return
        for name in ("Start", "End", "Subject"):
            if values.get(name) is not None:
                setattr(item, name.lower(), values[name].text or "")
        if values.get("Recurrence") is not None:
            item.recurrence = etree.tostring(values["Recurrence"]).decode()

    def op_DeleteItem(self, req):
        out = []
        for el in req.find("m:ItemIds", NS):
            item = self._resolve(el)
            if isinstance(item, Item) and item.calendar_type == "Occurrence":
                self.items[el.get("RecurringMasterId")].deleted.add(int(el.get("InstanceIndex")))
            elif isinstance(item, Item):
                del self.items[item.id]
            out.append(item if isinstance(item, dict) else {})
        return {"results": out}

    def op_GetItem(self, req):
        return {"results": [self._resolve(el) for el in req.find("m:ItemIds", NS)]}

    def op_MoveItem(self, req):
        target = self._folder(req.find("m:ToFolderId", NS)[0])
        out = []
        for el in req.find("m:ItemIds", NS):
            item = self.items.pop(el.get("Id"), None)
            if item is None:
                out.append({"error": "ErrorItemNotFound"})
                continue
            item.id, item.folder = self._new_id(), target.id
            self.items[item.id] = item
            out.append(item)
        return {"results": out}

    def op_FindItem(self, req):
        """One page per parent folder, each its own response message (as Exchange answers)."""
        restriction = req.find("m:Restriction", NS)
        view = req.find("m:IndexedPageItemView", NS)
        offset = int(view.get("Offset", "0")) if view is not None else 0
        size = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
        pages = []
        for el in req.find("m:ParentFolderIds", NS):
            found = [i for i in self.items.values() if i.folder == self._folder(el).id]
            if restriction is not None:
                found = [i for i in found if _matches(restriction[0], i)]
            if req.find("m:SortOrder", NS) is not None:
                found.sort(key=lambda i: i.received)
            page = found[offset:offset + size]
            pages.append({"results": page, "total": len(found), "next_offset": offset + len(page),
                          "last": offset + len(page) >= len(found)})
        return {"pages": pages}

    # -- availability ------------------------------------------------------------

    def op_GetServerTimeZones(self, req):
        return {}

    def op_ConvertId(self, req):
        return {}

    def op_GetUserAvailability(self, req):
        out = []
        for box in req.find("m:MailboxDataArray", NS):
            address = _text(box, "t:Email/t:Address").lower()
            known = self.availability.get(address, "ErrorMailRecipientNotFound")
            if isinstance(known, str):
                out.append({"error": known})
            else:
                out.append({"events": [{"start": s, "end": e, "busy_type": b} for s, e, b in known]})
        return {"results": out}


class _Handler(BaseHTTPRequestHandler):
    server_version = "Microsoft-IIS/10.0"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        fake: FakeEws = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        expected = "Basic " + base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
        if self.path.lower() != "/ews/exchange.asmx":
            status, payload = 404, b""
        elif self.headers.get("Authorization") != expected:
            status, payload = 401, b""
        else:
            status, payload = fake.handle(body)
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="127.0.0.1"')
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:  # keep pytest output quiet
        pass


class EwsServer:
    """``FakeEws`` served over HTTP on a free loopback port."""

    def __init__(self, fake: FakeEws | None = None) -> None:
        self.fake = fake or FakeEws()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self.fake
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/EWS/Exchange.asmx"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EwsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def ews_server():
    with EwsServer() as server:
        yield server


@pytest.fixture
def ews(ews_server):
    """The fake, emptied for this test."""
    ews_server.fake.reset()
    return ews_server.fake
