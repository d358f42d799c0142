"""A fake Microsoft Graph (and its token endpoint) on 127.0.0.1 over HTTPS.

Exchange Online cannot run here, so the Graph backend is tested against
this: a threaded ``http.server`` with the throwaway CA of ``tls.py``,
speaking

* the Entra ID token endpoint as MSAL uses it (instance discovery is off):
  ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and
  ``POST /{tenant}/oauth2/v2.0/token`` for client credentials with a secret
  or a certificate assertion (checked with the registered certificate);
* Graph under ``/v1.0``: mail folders, messages with a delta query,
  ``$value``, ``move``, ``sendMail`` with MIME, drafts, and ``$batch``,
  with a tiny in-memory mailbox per user. Responses are shaped like the
  documented examples, cut to the fields sparring reads.

Routes are registered by regex (``route(method, regex, permission)``), so
the calendar can add its own (``graph_calendar.py``). Every request is
recorded in ``requests`` (inner ``$batch`` requests too, marked
``batched``). Faults: ``fail_next(method, path_regex, status, retry_after,
times)`` answers the next matching requests with that status;
``expire_tokens()`` makes every token issued so far answer 401;
``permissions`` (the app's roles) and ``scope`` (the mailboxes an RBAC
management scope allows, None: all) decide 403 ErrorAccessDenied.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.servers.tls import throwaway_tls

TENANT = "0b5c5a7e-1d2f-4e3a-9b8c-7d6e5f4a3b2c"
CLIENT_ID = "8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
SECRET = "hemmelig-klienthemmelighed"
MAILBOX = "sparring@kommune.example"
ALL_PERMISSIONS = frozenset({"Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite", "Calendars.Read"})
_ERROR_CODES = {400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "ErrorAccessDenied",
                404: "ErrorItemNotFound", 409: "ErrorFolderExists", 410: "SyncStateNotFound",
                429: "ApplicationThrottled", 500: "InternalServerError", 503: "ServiceUnavailable",
                504: "GatewayTimeout"}


@dataclass
class Request:
    method: str
    path: str  # after /v1.0, e.g. /users/x/messages/1/$value
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    batched: bool = False
    match: re.Match | None = field(default=None, repr=False)

    @property
    def json(self):
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def page_size(self, default: int = 10) -> int:
        found = re.search(r"odata\.maxpagesize=(\d+)", self.headers.get("prefer", ""))
        return int(found.group(1)) if found else int(self.query.get("$top", default))


@dataclass
class Reply:
    status: int = 200
    body: dict | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str = "", message: str = "") -> Reply:
    code = code or _ERROR_CODES.get(status, "Error")
    return Reply(status, {"error": {"code": code, "message": message or code}})


@dataclass
class Message:
    id: str
    folder: str  # folder id
    mime: bytes
    received: datetime
    draft: bool = False
    bcc: list[str] = field(default_factory=list)

    @property
    def internet_message_id(self) -> str:
        return BytesParser(policy=default).parsebytes(self.mime, headersonly=True)["Message-ID"] or ""

    def resource(self) -> dict:
        return {"@odata.type": "#microsoft.graph.message", "@odata.etag": f'W/"{self.id[-6:]}"', "id": self.id,
                "receivedDateTime": self.received.strftime("%Y-%m-%dT%H:%M:%SZ")}


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None
    well_known: str = ""

    def resource(self) -> dict:
        return {"id": self.id, "displayName": self.name, "parentFolderId": self.parent or "",
                "childFolderCount": 0, "unreadItemCount": 0, "totalItemCount": 0}


class Mailbox:
    """One user's folders and messages, with a change log for delta queries."""

    def __init__(self, address: str, ids: Callable[[str], str]) -> None:
        self.address = address
        self._ids = ids
        self.folders: dict[str, Folder] = {}
        self.messages: dict[str, Message] = {}
        self.gone: dict[str, Message] = {}  # moved or deleted: a paged round still lists them as it began
        self.log: list[tuple[int, str, str, str]] = []  # (seq, folder id, message id, "in" | "out")
        self.sent: list[Message] = []
        self.calendar: dict = {}  # for graph_calendar.py
        root = self._add_folder("msgfolderroot", "Top of Information Store", None)
        for name, shown in (("inbox", "Indbakke"), ("sentitems", "Sendt post"), ("drafts", "Kladder"),
                            ("deleteditems", "Slettet post")):
            self._add_folder(name, shown, root.id)

    def _add_folder(self, well_known: str, name: str, parent: str | None) -> Folder:
        folder = Folder(self._ids("AQMkAD"), name, parent, well_known)
        self.folders[folder.id] = folder
        return folder

    def folder(self, ref: str) -> Folder | None:
        if ref in self.folders:
            return self.folders[ref]
        return next((f for f in self.folders.values() if f.well_known and f.well_known == ref.lower()), None)

    def children(self, parent: Folder) -> list[Folder]:
        return [f for f in self.folders.values() if f.parent == parent.id]


class FakeGraph:
    """Token endpoint, Graph routes, faults and the request log; ``url`` once served."""

    def __init__(self) -> None:
        self.base = ""  # https://127.0.0.1:port, set by the server
        self.tenant, self.client_id, self.secret = TENANT, CLIENT_ID, SECRET
        self.certificate = None  # an x509.Certificate the app may sign assertions with
        self.routes: list[tuple[str, re.Pattern, str | None, Callable]] = []
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._seq = itertools.count(1)
        self._register_mail_routes()
        self.reset()

    # -- test helpers -----------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests: list[Request] = []
            self.token_requests: list[dict] = []
            self.tokens: dict[str, bool] = {}  # token -> still valid
            self.token_lifetime = 3599
            self.permissions: set[str] = set(ALL_PERMISSIONS)
            self.scope: set[str] | None = None
            self.faults: list[dict] = []
            self.mailboxes: dict[str, Mailbox] = {}
            self.mailbox(MAILBOX)

    @property
    def endpoint(self) -> str:
        return f"{self.base}/v1.0"

    def mailbox(self, address: str = MAILBOX) -> Mailbox:
        address = address.lower()
        if address not in self.mailboxes:
            self.mailboxes[address] = Mailbox(address, self.new_id)
        return self.mailboxes[address]

    def new_id(self, prefix: str = "AAMkAD") -> str:
        return f"{prefix}{next(self._counter):010d}AAA="

    def route(self, method: str, pattern: str, permission: str | None = None):
        """Register ``handler(fake, request) -> Reply | dict`` for ``method`` and
        a path regex (``(?P<user>...)`` names the mailbox, checked for rights)."""
        def register(handler: Callable) -> Callable:
            self.routes.append((method.upper(), re.compile(pattern + "$"), permission, handler))
            return handler
        return register

    def fail_next(self, method: str, path_regex: str, status: int, retry_after: float | None = None,
                  times: int = 1, code: str = "") -> None:
        with self._lock:
            self.faults.append({"method": method.upper(), "path": re.compile(path_regex), "status": status,
                                "retry_after": retry_after, "times": times, "code": code})

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens = dict.fromkeys(self.tokens, False)

    def deliver(self, raw: bytes, received: datetime, folder: str = "inbox", mailbox: str = MAILBOX) -> str:
        """A mail arrives in ``folder`` at ``received``; its message id."""
        with self._lock:
            box = self.mailbox(mailbox)
            target = box.folder(folder)
            message = Message(self.new_id(), target.id, raw, received.astimezone(timezone.utc))
            box.messages[message.id] = message
            box.log.append((next(self._seq), target.id, message.id, "in"))
            return message.id

    def in_folder(self, name: str, mailbox: str = MAILBOX) -> list[Message]:
        box = self.mailbox(mailbox)
        ids = {f.id for f in box.folders.values() if f.name == name or f.well_known == name}
        return sorted((m for m in box.messages.values() if m.folder in ids), key=lambda m: m.received)

    def count(self, method: str, path_regex: str = "", batched: bool | None = None) -> int:
        pattern = re.compile(path_regex)
        return sum(1 for r in self.requests if r.method == method.upper() and pattern.search(r.path)
                   and (batched is None or r.batched == batched))

    def http_requests(self) -> list[Request]:
        """Graph round trips (inner $batch requests excluded)."""
        return [r for r in self.requests if not r.batched]

    # -- moving messages (a move makes a new id, as in Exchange) ---------------------

    def move(self, box: Mailbox, message: Message, target: Folder) -> Message:
        box.gone[message.id] = box.messages.pop(message.id)
        box.log.append((next(self._seq), message.folder, message.id, "out"))
        moved = Message(self.new_id(), target.id, message.mime, message.received, message.draft, message.bcc)
        box.messages[moved.id] = moved
        box.log.append((next(self._seq), target.id, moved.id, "in"))
        return moved

    def remove(self, box: Mailbox, message: Message) -> None:
        box.gone[message.id] = box.messages.pop(message.id)
        box.log.append((next(self._seq), message.folder, message.id, "out"))

    # -- dispatch -------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if parts.path.startswith("/v1.0/") or parts.path == "/v1.0":
            request = Request(method, parts.path[len("/v1.0"):], query, headers, body)
            return self.graph(request)
        return self.identity(method, parts.path, query, body)

    def graph(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if not request.batched:
                token = request.headers.get("authorization", "").removeprefix("Bearer ")
                if not self.tokens.get(token):
                    return error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
            fault = self._fault(request)
            if fault is not None:
                return fault
            if request.path == "/$batch" and request.method == "POST":
                return self._batch(request)
            for method, pattern, permission, handler in self.routes:
                match = pattern.match(request.path)
                if method == request.method and match:
                    request.match = match
                    refused = self._refused(permission, match)
                    if refused is not None:
                        return refused
                    reply = handler(self, request)
                    return reply if isinstance(reply, Reply) else Reply(200, reply)
            return error(400, "BadRequest", "Resource not found for the segment.")

    def _fault(self, request: Request) -> Reply | None:
        for fault in self.faults:
            if fault["method"] == request.method and fault["path"].search(request.path):
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self.faults.remove(fault)
                reply = error(fault["status"], fault["code"])
                if fault["retry_after"] is not None:
                    reply.headers["Retry-After"] = str(fault["retry_after"])
                return reply
        return None

    def _refused(self, permission: str | None, match: re.Match) -> Reply | None:
        user = (match.groupdict().get("user") or "").lower()
        if user and "@" in user and user not in self.mailboxes:
            return error(404, "ErrorInvalidUser", "The requested user is invalid.")
        if permission is None:
            return None
        allowed = permission in self.permissions or (permission == "Calendars.Read"
                                                     and "Calendars.ReadWrite" in self.permissions)
        if not allowed or (user and self.scope is not None and user not in self.scope):
            return error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return None

    def _batch(self, request: Request) -> Reply:
        inner = (request.json or {}).get("requests", [])
        if len(inner) > 20:
            return error(400, "BadRequest", "The number of batch requests exceeds 20.")
        responses = []
        for item in inner:
            body = item.get("body")
            raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else (body or "").encode()
            headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
            parts = urlsplit(item["url"])
            sub = Request(item["method"].upper(), parts.path, dict(parse_qsl(parts.query)), headers, raw, batched=True)
            reply = self.graph(sub)
            out = {"id": item["id"], "status": reply.status, "headers": dict(reply.headers)}
            if isinstance(reply.body, bytes):
                out["body"] = base64.b64encode(reply.body).decode()
                out["headers"].setdefault("Content-Type", "text/plain")
            elif reply.body is not None:
                out["body"] = reply.body
                out["headers"].setdefault("Content-Type", "application/json")
            responses.append(out)
        return Reply(200, {"responses": responses})

    # -- the token endpoint -----------------------------------------------------------

    def identity(self, method: str, path: str, query: dict, body: bytes) -> Reply:
        found = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path)
        if found and method == "GET":
            if found.group(1) != self.tenant:
                return Reply(400, {"error": "invalid_tenant", "error_codes": [90002],
                                   "error_description": f"AADSTS90002: Tenant '{found.group(1)}' not found."})
            root = f"{self.base}/{self.tenant}"
            return Reply(200, {"token_endpoint": f"{root}/oauth2/v2.0/token", "issuer": f"{root}/v2.0",
                               "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                               "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"]})
        if path == f"/{self.tenant}/oauth2/v2.0/token" and method == "POST":
            return self._token(dict(parse_qsl(body.decode())))
        return Reply(404, {"error": "not_found"})

    def _token(self, form: dict) -> Reply:
        with self._lock:
            self.token_requests.append(form)
            if form.get("grant_type") != "client_credentials":
                return _aad(400, "unsupported_grant_type", 70003)
            if form.get("client_id") != self.client_id:
                return _aad(400, "unauthorized_client", 700016)
            if form.get("scope") != f"{self.base}/.default":
                return _aad(400, "invalid_resource", 500011)
            if "client_assertion" in form:
                if not self._assertion_ok(form["client_assertion"]):
                    return _aad(401, "invalid_client", 700027)
            elif form.get("client_secret") != self.secret:
                return _aad(401, "invalid_client", 7000215)
            token = secrets.token_urlsafe(24)
            self.tokens[token] = True
            return Reply(200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                               "ext_expires_in": self.token_lifetime, "access_token": token})

    def _assertion_ok(self, assertion: str) -> bool:
        import jwt
        from cryptography.hazmat.primitives import hashes

        if self.certificate is None:
            return False
        header = jwt.get_unverified_header(assertion)
        thumb = base64.urlsafe_b64encode(self.certificate.fingerprint(hashes.SHA1())).decode().rstrip("=")
        if header.get("x5t", "").rstrip("=") != thumb:
            return False
        try:
            jwt.decode(assertion, self.certificate.public_key(), algorithms=["RS256", "PS256"],
                       audience=f"{self.base}/{self.tenant}/oauth2/v2.0/token", issuer=self.client_id)
        except jwt.PyJWTError:
            return False
        return True

    # -- mail routes ---------------------------------------------------------------------

    def _register_mail_routes(self) -> None:
        user = r"/users/(?P<user>[^/]+)"
        folder = user + r"/mailFolders/(?P<folder>[^/]+)"
        message = user + r"/messages/(?P<id>[^/]+)"
        self.route("GET", folder, "Mail.ReadWrite")(_get_folder)
        self.route("GET", folder + "/childFolders", "Mail.ReadWrite")(_list_children)
        self.route("POST", folder + "/childFolders", "Mail.ReadWrite")(_create_child)
        self.route("GET", folder + "/messages/delta", "Mail.ReadWrite")(_delta)
        self.route("GET", folder + "/messages", "Mail.ReadWrite")(_list_messages)
        self.route("GET", message + r"/\$value", "Mail.ReadWrite")(_value)
        self.route("POST", message + "/move", "Mail.ReadWrite")(_move)
        self.route("DELETE", message, "Mail.ReadWrite")(_delete)
        self.route("POST", message + "/permanentDelete", "Mail.ReadWrite")(_delete)
        self.route("POST", user + "/sendMail", "Mail.Send")(_send_mail)
        self.route("POST", user + "/messages", "Mail.ReadWrite")(_create_draft)
        self.route("PATCH", message, "Mail.ReadWrite")(_update_draft)
        self.route("POST", message + "/send", "Mail.Send")(_send_draft)
        self.route("GET", user + "/calendar", "Calendars.ReadWrite")(_get_calendar)


def _aad(status: int, error_name: str, code: int) -> Reply:
    return Reply(status, {"error": error_name, "error_codes": [code],
                          "error_description": f"AADSTS{code}: refused by the fake token endpoint."})


def _box(fake: FakeGraph, request: Request) -> Mailbox:
    return fake.mailbox(request.match["user"])


def _folder_of(fake: FakeGraph, request: Request) -> Folder | Reply:
    found = _box(fake, request).folder(request.match["folder"])
    return found if found is not None else error(404, "ErrorItemNotFound", "The specified folder could not be found.")


def _get_folder(fake, request):
    found = _folder_of(fake, request)
    return found if isinstance(found, Reply) else found.resource()


def _list_children(fake, request):
    parent = _folder_of(fake, request)
    if isinstance(parent, Reply):
        return parent
    children = [f.resource() for f in _box(fake, request).children(parent)]
    return _page(fake, request, children, request.page_size())


def _page(fake, request, items: list, size: int) -> dict:
    offset = int(request.query.get("$skip", "0"))
    out: dict = {"value": items[offset:offset + size]}
    if offset + size < len(items):
        out["@odata.nextLink"] = f"{fake.endpoint}{request.path}?$top={size}&$skip={offset + size}"
    return out


def _create_child(fake, request):
    parent = _folder_of(fake, request)
    if isinstance(parent, Reply):
        return parent
    box = _box(fake, request)
    name = (request.json or {}).get("displayName", "")
    if any(f.name.lower() == name.lower() for f in box.children(parent)):
        return error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
    return Reply(201, box._add_folder("", name, parent.id).resource())


def _delta(fake, request):
    """Changes in (base, end] of the folder's log; ``$skiptoken`` pages a
    round, ``$deltatoken`` starts the next. Tokens: b<base>e<end>o<offset>,
    with a trailing c when the first request asked for ``changeType=created``
    (later rounds then report new messages only)."""
    folder = _folder_of(fake, request)
    if isinstance(folder, Reply):
        return folder
    box = _box(fake, request)
    latest = box.log[-1][0] if box.log else 0
    if "$skiptoken" in request.query:
        found = re.fullmatch(r"b(\d+)e(\d+)o(\d+)(c?)", request.query["$skiptoken"])
        if not found:
            return error(400, "BadRequest", "Invalid skip token.")
        base, end, offset = map(int, found.groups()[:3])
        created = found.group(4)
    elif "$deltatoken" in request.query:
        found = re.fullmatch(r"(\d+)(c?)", request.query["$deltatoken"])
        if not found:
            return error(400, "BadRequest", "Invalid delta token.")
        base, end, offset, created = int(found.group(1)), latest, 0, found.group(2)
    else:
        base, end, offset = 0, latest, 0
        created = "c" if request.query.get("changeType") == "created" else ""
    changes = _changes(box, folder, base, end, created_only=bool(created))
    size = request.page_size()
    page = changes[offset:offset + size]
    link = f"{fake.endpoint}/users/{request.match['user']}/mailFolders/{request.match['folder']}/messages/delta"
    out: dict = {"@odata.context": f"{fake.endpoint}/$metadata#Collection(message)", "value": page}
    if offset + size < len(changes):
        out["@odata.nextLink"] = f"{link}?$skiptoken=b{base}e{end}o{offset + size}{created}"
    else:
        out["@odata.deltaLink"] = f"{link}?$deltatoken={end}{created}"
    return out


def _changes(box: Mailbox, folder: Folder, base: int, end: int, created_only: bool = False) -> list[dict]:
    last: dict[str, str] = {}
    for seq, folder_id, message_id, kind in box.log:
        if base < seq <= end and folder_id == folder.id:
            last.pop(message_id, None)
            last[message_id] = kind  # keeps the order of each message's latest change
    out = []
    for message_id, kind in last.items():
        if kind == "in":
            out.append((box.messages.get(message_id) or box.gone[message_id]).resource())
        elif base and not created_only:
            out.append({"@odata.type": "#microsoft.graph.message", "id": message_id,
                        "@removed": {"reason": "deleted"}})
    return out


def _list_messages(fake, request):
    folder = _folder_of(fake, request)
    if isinstance(folder, Reply):
        return folder
    items = sorted((m for m in _box(fake, request).messages.values() if m.folder == folder.id),
                   key=lambda m: m.received)
    query = request.query.get("$filter", "")
    if found := re.fullmatch(r"receivedDateTime lt (\S+)", query):
        cutoff = datetime.fromisoformat(found.group(1).replace("Z", "+00:00"))
        items = [m for m in items if m.received < cutoff]
    elif found := re.fullmatch(r"internetMessageId eq '((?:[^']|'')*)'", query):
        items = [m for m in items if m.internet_message_id == found.group(1).replace("''", "'")]
    elif query:
        return error(400, "BadRequest", "The fake Graph knows no such $filter.")
    return _page(fake, request, [m.resource() for m in items], request.page_size())


def _message(fake, request) -> Message | Reply:
    found = _box(fake, request).messages.get(request.match["id"])
    return found if found is not None else error(404, "ErrorItemNotFound",
                                                 "The specified object was not found in the store.")


def _value(fake, request):
    message = _message(fake, request)
    return message if isinstance(message, Reply) else Reply(200, message.mime, {"Content-Type": "text/plain"})


def _move(fake, request):
    message = _message(fake, request)
    if isinstance(message, Reply):
        return message
    box = _box(fake, request)
    target = box.folder((request.json or {}).get("destinationId", ""))
    if target is None:
        return error(404, "ErrorItemNotFound", "The specified folder could not be found.")
    return Reply(201, fake.move(box, message, target).resource())


def _delete(fake, request):
    message = _message(fake, request)
    if isinstance(message, Reply):
        return message
    fake.remove(_box(fake, request), message)
    return Reply(204)


def _mime(request) -> bytes | None:
    if not request.headers.get("content-type", "").startswith("text/plain"):
        return None
    try:
        return base64.b64decode(request.body, validate=True)
    except ValueError:
        return None


def _send_mail(fake, request):
    raw = _mime(request)
    if raw is None:
        return error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
    box = _box(fake, request)
    _keep_sent(box, Message(fake.new_id(), box.folder("sentitems").id, raw, datetime.now(timezone.utc)))
    return Reply(202)


def _keep_sent(box: Mailbox, message: Message) -> None:
    """The copy in Sent Items (``sent`` lists what went out, in order)."""
    message.folder, message.draft = box.folder("sentitems").id, False
    box.messages[message.id] = message
    box.sent.append(message)


def _create_draft(fake, request):
    raw = _mime(request)
    if raw is None:
        return error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
    box = _box(fake, request)
    draft = Message(fake.new_id(), box.folder("drafts").id, raw, datetime.now(timezone.utc), draft=True)
    box.messages[draft.id] = draft
    return Reply(201, draft.resource())


def _update_draft(fake, request):
    message = _message(fake, request)
    if isinstance(message, Reply):
        return message
    bcc = (request.json or {}).get("bccRecipients", [])
    message.bcc = [r["emailAddress"]["address"] for r in bcc]
    return message.resource()


def _send_draft(fake, request):
    message = _message(fake, request)
    if isinstance(message, Reply):
        return message
    _keep_sent(_box(fake, request), message)
    return Reply(202)


def _get_calendar(fake, request):
    return {"id": "AAMkADcalendar=", "name": "Kalender", "canEdit": True}


# -- the server -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        fake: FakeGraph = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = fake.handle(self.command, self.path, headers, body)
        payload = reply.body if isinstance(reply.body, bytes) else (
            json.dumps(reply.body).encode() if reply.body is not None else b"")
        self.send_response(reply.status)
        content_type = "text/plain" if isinstance(reply.body, bytes) else "application/json"
        for name, value in {"Content-Type": content_type, **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve  # noqa: N815 - http.server's names

    def log_message(self, *args) -> None:
        pass


class GraphServer:
    """``FakeGraph`` over HTTPS on a free loopback port; ``ca_file`` to trust."""

    def __init__(self, fake: FakeGraph | None = None) -> None:
        self.fake = fake or FakeGraph()
        tls = throwaway_tls()
        self.ca_file = str(tls.ca_file)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.socket = tls.server_context().wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.fake = self.fake
        self.httpd.daemon_threads = True
        self.url = f"https://127.0.0.1:{self.httpd.server_port}"
        self.fake.base = self.url
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> GraphServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __getattr__(self, name: str):
        """``server.requests``, ``server.fail_next(...)``: the fake's, as if its own."""
        return getattr(self.fake, name)

    def config(self, **overrides) -> dict:
        """The ``[graph]`` section pointing at this server."""
        return {"tenant_id": self.fake.tenant, "client_id": self.fake.client_id, "authority": self.url,
                "endpoint": self.fake.endpoint, "ca_file": self.ca_file, **overrides}


def client_certificate(directory) -> tuple[str, object]:
    """An RSA key and self-signed certificate in one PEM file (as an admin
    would make with openssl); returns the path and the certificate."""
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sparring graph app")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=2)).sign(key, hashes.SHA256()))
    path = directory / "graph-app.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o600)
    return str(path), cert


@pytest.fixture(scope="session")
def graph_server():
    with GraphServer() as server:
        yield server


@pytest.fixture
def graph(graph_server):
    """The fake, emptied for this test."""
    graph_server.fake.reset()
    return graph_server.fake
