"""Who may read the pages: ``[web] auth`` = none, basic or header.

Passwords are stored as scrypt hashes (``sparring web-passwd NAME``), never
in clear, and never logged. ``header`` trusts the user name a reverse proxy
doing the single sign-on sets, but only from ``trusted_proxies``: the same
header from any other address is refused (403). ``/healthz`` is open to
all: it says only whether the service works, for a load balancer.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse

from scheduler.errors import ConfigError

OPEN_PATHS = ("/healthz",)
_N, _R, _P = 2**14, 8, 1  # scrypt's cost: ~16 MiB and tens of ms per check
# At most this many checks at once (memory: 16 MiB each), however many requests
# come: a flood of wrong passwords queues instead of filling the thread pool.
CHECKS_AT_ONCE = 2
REMEMBER_SECONDS = 300.0  # a browser sends the same credentials with every request
REMEMBER_MAX = 256


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64), for ``users_file`` or ``basic_users``."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, binascii.Error):
        return False
    return kind == "scrypt" and hmac.compare_digest(got, expected)


@functools.cache
def _decoy() -> str:
    """A hash that matches nothing and costs what a real check does."""
    return hash_password(secrets.token_urlsafe(16))


def load_users(web, base: Path) -> dict[str, str]:
    """Name -> hash from ``basic_users`` and ``users_file`` (lines ``name:hash``; # comments)."""
    users = dict(web.basic_users)
    if web.users_file.strip():
        path = Path(web.users_file)
        path = path if path.is_absolute() else base / path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"web.users_file: {path} cannot be read ({exc.__class__.__name__}).") from None
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                name, sep, stored = line.strip().partition(":")
                if not sep or not stored.startswith("scrypt$"):
                    raise ConfigError(f"web.users_file: {path}: line {number} is not name:hash "
                                      "(make one with `sparring web-passwd NAME`).")
                users[name] = stored
    return users


class Access(BaseHTTPMiddleware):
    """Refuses a request the configured ``auth`` does not let in; sets ``request.state.user``."""

    def __init__(self, app, web, users: dict[str, str]) -> None:
        super().__init__(app)
        self.web = web
        self.users = users
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in web.trusted_proxies]
        self.checks = threading.BoundedSemaphore(CHECKS_AT_ONCE)
        self.known = _Remembered()

    async def dispatch(self, request, call_next):
        if request.url.path in OPEN_PATHS or self.web.auth == "none":
            request.state.user = None
            return await call_next(request)
        if self.web.auth == "basic":
            # scrypt takes tens of milliseconds on purpose: off the event loop.
            user = await run_in_threadpool(self._basic, request.headers.get("authorization", ""))
            if user is None:
                return PlainTextResponse("Log in with your name and password.\n", 401,
                                         headers={"WWW-Authenticate": 'Basic realm="sparring", charset="UTF-8"'})
        else:
            if not self._trusted(request.client.host if request.client else ""):
                return PlainTextResponse("Only the reverse proxy may be asked; go through it.\n", 403)
            user = request.headers.get(self.web.user_header, "").strip()
            if not user:
                return PlainTextResponse(f"The proxy did not name the user ({self.web.user_header}).\n", 403)
        request.state.user = user
        return await call_next(request)

    def _basic(self, header: str) -> str | None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        stored = self.users.get(name)
        if sep and stored and self.known.get(header) == name:
            return name
        with self.checks:
            # An unknown name is checked against a hash too: the answer's speed must not tell which names exist.
            right = check_password(password, stored or _decoy())
        if sep and stored and right:
            self.known.put(header, name)
            return name
        return None

    def _trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        # A dual-stack socket ([::]:8765) names an IPv4 peer as ::ffff:a.b.c.d.
        address = getattr(address, "ipv4_mapped", None) or address
        return any(address in network for network in self.proxies)


class _Remembered:
    """Credentials checked lately, by a keyed hash of the header (never the
    password itself), so a page and its stylesheet cost one scrypt, not two."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._seen: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _tag(self, header: str) -> bytes:
        return hmac.digest(self._key, header.encode("utf-8", "surrogateescape"), "sha256")

    def get(self, header: str) -> str | None:
        tag = self._tag(header)
        with self._lock:
            name, until = self._seen.get(tag, (None, 0.0))
            return name if until > time.monotonic() else None

    def put(self, header: str, name: str) -> None:
        with self._lock:
            self._seen[self._tag(header)] = (name, time.monotonic() + REMEMBER_SECONDS)
            while len(self._seen) > REMEMBER_MAX:
                self._seen.popitem(last=False)
