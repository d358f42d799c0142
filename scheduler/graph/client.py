"""A small Microsoft Graph client: requests, paging, ``$batch``, throttling.

Every adapter in ``scheduler/graph/`` talks through one ``GraphClient``.

* Throttling: 429, 503 and 504 are retried after the ``Retry-After`` the
  server sent (else exponential back-off), a bounded number of times, also
  for a single request inside a ``$batch``; then ``TransientError`` with
  ``retry_after``. A wait longer than ``max_wait`` is not slept here: it is
  handed to the caller (the outbox, the intake loop) as ``TransientError``.
* A 401 means the token expired or was revoked: the token is dropped and
  the request repeated once with a new one.
* Other errors become ``GraphError`` (a ``PermanentError``) naming the
  operation, the HTTP status and Graph's error code, never the error's
  message text, which may quote mail content. 5xx is transient; so are
  connection errors and timeouts, which are not retried here because the
  request (a sendMail) may have been carried out.
"""

from __future__ import annotations

import base64
import json as jsonlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlsplit

import requests

from scheduler.errors import ConfigError
from scheduler.graph.http import VerifyingSession, check_url, transport_error
from scheduler.ports import PermanentError, TransientError, chunked

log = logging.getLogger("sparring.graph")

RETRIED = frozenset({429, 503, 504})
BATCH_LIMIT = 20  # Graph's JSON batching: at most 20 requests per $batch


class GraphError(PermanentError):
    """Graph refused a request for good; ``status`` and ``code`` for callers
    that treat some refusals as fine (a message already moved: 404)."""

    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Tokens:
    """What the client needs of ``auth.TokenProvider`` (tests may pass their own)."""

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


class GraphClient:
    def __init__(self, endpoint: str, tokens: Tokens, *, ca_file: str = "", timeout: float = 30,
                 sleep: Callable[[float], None] = time.sleep, max_attempts: int = 5,
                 max_wait: float = 120.0, mailbox: str = "") -> None:
        self.endpoint = check_url(endpoint, "graph.endpoint").rstrip("/")
        parts = urlsplit(self.endpoint)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base_path = parts.path  # e.g. /v1.0: what $batch request URLs are relative to
        self.tokens = tokens
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.mailbox = mailbox  # named in messages about rights
        self.session = VerifyingSession(ca_file, timeout)
        self.requests_made = 0  # HTTP round trips to Graph, for tests and benchmarks

    # -- single requests ---------------------------------------------------

    def request(self, method: str, path: str, *, json=None, params=None, data=None, headers=None,
                what: str = "request", permission: str = "") -> requests.Response:
        """``method`` on ``path`` (relative to the endpoint, or an absolute
        next/delta link of the endpoint's origin), retried as the module says.

        ``what`` names the operation in error messages ("mailbox fetch");
        ``permission`` the application permission it needs, named when
        Graph answers 403.
        """
        url = self.url(path)
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            response = self._send(method, url, json, params, data, headers, what)
            status = response.status_code
            if status < 400:
                return response
            if status == 401 and not renewed:
                log.info("graph: token refused (HTTP 401); renewing it once")
                self.tokens.invalidate()
                renewed = True
                attempt -= 1
                continue
            if status in RETRIED:
                self._pause(attempt, retry_after(response.headers), what, status)
                continue
            raise self.error(status, _error_code(response), what, permission)

    def get_json(self, path: str, params=None, *, what: str = "read", permission: str = "") -> dict:
        return self.request("GET", path, params=params, what=what, permission=permission).json()

    def paged(self, path: str, params=None, *, what: str = "read", permission: str = "",
              headers=None) -> Iterator[dict]:
        """The items of ``value`` over every page (``@odata.nextLink``)."""
        page = self.request("GET", path, params=params, headers=headers, what=what, permission=permission).json()
        while True:
            yield from page.get("value", [])
            link = page.get("@odata.nextLink")
            if not link:
                return
            page = self.request("GET", link, headers=headers, what=what, permission=permission).json()

    # -- batches -------------------------------------------------------------

    def batch(self, requests_: Sequence[dict], *, what: str = "batch", permission: str = "") -> list[dict]:
        """The responses to ``requests_`` (each ``{"method", "url", "body"?,
        "headers"?}``, ``url`` relative to the endpoint), in request order.

        Sent as JSON ``$batch`` requests of at most 20; a response with 429,
        503 or 504 is sent again (in the next ``$batch``) after its
        ``Retry-After``. The others are returned as Graph gave them
        (``status``, ``headers``, ``body``); ``check`` raises for a failed one.
        """
        out: list[dict] = [{} for _ in requests_]
        for chunk in chunked(range(len(requests_)), BATCH_LIMIT):
            pending = {str(i): {**requests_[i], "id": str(i)} for i in chunk}
            attempt = 0
            while pending:
                attempt += 1
                body = {"requests": list(pending.values())}
                answers = self.request("POST", "/$batch", json=body, what=what, permission=permission).json()
                waits: list[float | None] = []
                throttled = 0
                for answer in answers.get("responses", []):
                    if answer.get("status") in RETRIED:
                        waits.append(retry_after(answer.get("headers") or {}))
                        throttled = answer["status"]
                        continue
                    if pending.pop(str(answer.get("id")), None) is not None:
                        out[int(answer["id"])] = answer
                if pending:
                    known = [w for w in waits if w is not None]
                    self._pause(attempt, max(known) if known else None, what, throttled or 503)
        return out

    def check(self, answer: dict, what: str, permission: str = "", ok: Sequence[int] = ()) -> dict:
        """``answer`` (one ``batch`` response) if it succeeded or its status is in ``ok``."""
        status = int(answer.get("status", 0))
        if status < 400 or status in ok:
            return answer
        body = answer.get("body")
        code = body.get("error", {}).get("code", "") if isinstance(body, dict) else ""
        raise self.error(status, code, what, permission)

    @staticmethod
    def body_bytes(answer: dict) -> bytes:
        """A batch response's body as bytes: Graph base64-encodes what is not JSON."""
        body = answer.get("body")
        if isinstance(body, str):
            return base64.b64decode(body)
        return jsonlib.dumps(body).encode() if body is not None else b""

    # -- plumbing ---------------------------------------------------------------

    def url(self, path: str) -> str:
        if path.startswith(("https://", "http://")):
            parts = urlsplit(path)
            if f"{parts.scheme}://{parts.netloc}" != self.origin:
                raise PermanentError(f"Graph handed out a link to another host ({parts.hostname}); refused.")
            return path
        return self.endpoint + ("" if path.startswith("/") else "/") + path

    def batch_url(self, path: str) -> str:
        """``path`` as a $batch request URL (relative to the version root)."""
        return path if path.startswith("/") else "/" + path

    def _send(self, method, url, json, params, data, headers, what) -> requests.Response:
        all_headers = {"Authorization": f"Bearer {self.tokens.token()}", **(headers or {})}
        try:
            response = self.session.request(method, url, json=json, params=params, data=data, headers=all_headers)
        except requests.exceptions.RequestException as exc:
            raise transport_error(exc, what, self.origin) from None
        self.requests_made += 1
        return response

    def _pause(self, attempt: int, wait: float | None, what: str, status: int) -> None:
        """Sleep before the next attempt, or give up with TransientError."""
        delay = wait if wait is not None else min(60.0, 2.0 ** (attempt - 1))
        if attempt >= self.max_attempts or delay > self.max_wait:
            raise TransientError(f"Graph {what} failed: HTTP {status} (throttled or busy) after {attempt} "
                                 "attempt(s); try again later.", retry_after=delay)
        log.info("graph: %s got HTTP %s; waiting %.1f s (attempt %d)", what, status, delay, attempt)
        self.sleep(delay)

    def error(self, status: int, code: str, what: str, permission: str = "") -> Exception:
        """The port error for a refused request: one sentence, no server text."""
        label = f"HTTP {status}{' ' + code if code else ''}"
        mailbox = self.mailbox or "the mailbox"
        if status >= 500:
            return TransientError(f"Graph {what} failed: {label}; try again later.")
        if status == 401:
            return GraphError(f"Graph {what} failed: {label}: the token was refused even after renewing it; "
                              "check graph.endpoint against graph.authority (same cloud).", status, code)
        if status == 403:
            need = permission or "the permission this operation needs"
            return GraphError(
                f"Graph {what} failed: {label}: the app may not use {mailbox} this way; grant the application "
                f"permission {need} with admin consent in Entra ID, or assign the Exchange Online role "
                f"\"Application {need}\" with a management scope that includes {mailbox} "
                "(New-ManagementRoleAssignment).", status, code)
        if status == 404 and code in ("ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "ErrorNonExistentMailbox"):
            return GraphError(f"Graph {what} failed: {label}: {mailbox} is not an Exchange Online mailbox of "
                              "this tenant; check graph.mailbox (or service.mailbox).", status, code)
        return GraphError(f"Graph {what} failed: {label}.", status, code)


def retry_after(headers) -> float | None:
    """Seconds from a ``Retry-After`` header (any case), if it holds a number."""
    for name, value in dict(headers).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _error_code(response: requests.Response) -> str:
    try:
        code = response.json().get("error", {}).get("code", "")
    except (ValueError, AttributeError):
        return ""
    return code if isinstance(code, str) and code.replace(".", "").isalnum() else ""


def build_client(config, tokens: Tokens, **kwargs) -> GraphClient:
    """A client for ``config.graph`` in ``config.graph_mailbox``."""
    graph = config.graph
    if "@" not in config.graph_mailbox:
        raise ConfigError("graph.mailbox must be the forum mailbox's address (or leave it empty for service.mailbox).")
    return GraphClient(graph.endpoint, tokens, ca_file=graph.ca_file, mailbox=config.graph_mailbox, **kwargs)
