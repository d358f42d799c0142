"""The fault injector: a TCP proxy on 127.0.0.1 in front of a test server.

Neither Debian nor PyPI ships a Toxiproxy server (PyPI has only clients),
so this is a small threaded proxy that speaks Toxiproxy's vocabulary:

- ``proxy.down()`` / ``proxy.up()``: refuse new connections and cut the
  open ones / listen again on the same port.
- ``proxy.toxic(kind, stream="downstream", toxicity=1.0, **attributes)``
  adds a toxic and returns it (``.remove()``). ``stream`` is the direction
  of the bytes it acts on: ``downstream`` server to client, ``upstream``
  client to server. Kinds and attributes (times in milliseconds):

  ``latency`` (latency, jitter): each chunk delayed;
  ``bandwidth`` (rate, KB/s): chunks paced;
  ``timeout`` (timeout): nothing passes; closed after ``timeout`` ms,
  never when 0 (a stall: the peer waits until its own timeout);
  ``reset_peer`` (timeout, after_bytes): TCP RST after ``timeout`` ms, or
  once ``after_bytes`` have passed in the stream (a cut mid-response);
  ``slow_close`` (delay): the close of a connection delayed;
  ``limit_data`` (bytes): closed once ``bytes`` have passed in the stream.

  ``toxicity`` is the share of connections the toxic applies to (drawn
  with the proxy's seeded ``random.Random``).
- ``proxy.answer(pattern, reply, close=False, times=None)``: a protocol
  fault for line protocols in plaintext (IMAP without TLS to loopback,
  HTTP): a client line matching the regex ``pattern`` is not forwarded;
  ``reply`` goes back instead (``{tag}`` is the line's first word, for
  IMAP), and with ``close`` the connection is then closed. ``times``
  limits how often (None: until healed).
- ``proxy.heal()``: every toxic and rule removed, and up.

``imap_no``, ``imap_bye`` and ``http_reply`` make the usual replies.

Fixture ``faults`` (per test): ``faults.smtp`` (in front of aiosmtpd's
STARTTLS port), ``faults.smtps``, ``faults.imap`` (Dovecot's plain port:
connect with ``security="none"`` to use ``answer``), ``faults.imaps``,
``faults.caldav`` (Radicale; ``faults.caldav.url``), ``faults.postgres``;
each made when first used, its server started then, and closed after the
test. ``faults.proxy(host, port)`` fronts anything else.
"""

from __future__ import annotations

import random
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import pytest

KINDS = {"latency", "bandwidth", "timeout", "reset_peer", "slow_close", "limit_data"}
STREAMS = ("upstream", "downstream")
POLL = 0.05  # seconds: how often a pump looks at its toxics while idle


@dataclass(eq=False)
class Toxic:
    kind: str
    stream: str
    toxicity: float
    attributes: dict
    proxy: Proxy | None = None

    def __getattr__(self, name: str):
        try:
            return self.__dict__["attributes"][name]
        except KeyError:
            raise AttributeError(name) from None

    def remove(self) -> None:
        if self.proxy is not None:
            self.proxy.remove(self)


@dataclass
class Rule:
    pattern: re.Pattern
    reply: bytes | Callable[[bytes], bytes]
    close: bool
    times: int | None
    hits: int = 0

    def render(self, line: bytes) -> bytes:
        if callable(self.reply):
            return self.reply(line)
        tag = line.split(b" ", 1)[0]
        return self.reply.replace(b"{tag}", tag)


def imap_no(text: str = "[UNAVAILABLE] injected fault") -> bytes:
    return b"{tag} NO " + text.encode() + b"\r\n"


def imap_bye(text: str = "injected fault") -> bytes:
    return b"* BYE " + text.encode() + b"\r\n"


def http_reply(status: int, reason: str = "Injected", headers: dict | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Length: 0", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Stats:
    connections: int = 0
    refused: int = 0  # connection attempts while down
    cut: int = 0  # connections ended by a toxic, a rule or down()
    answered: int = 0  # lines answered by a rule


class _Link:
    """One client connection and its upstream: two pump threads."""

    def __init__(self, proxy: Proxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.chosen: dict[int, bool] = {}  # toxic id -> applies to this link (toxicity)
        self.base: dict[int, int] = {}  # toxic id -> bytes passed in its stream when first seen
        self.passed = {"upstream": 0, "downstream": 0}
        self.started = time.monotonic()

    def start(self) -> None:
        for stream in STREAMS:
            threading.Thread(target=self._pump, args=(stream,), daemon=True,
                             name=f"faults-{self.proxy.name}-{stream}").start()

    def applies(self, toxic: Toxic) -> bool:
        key = id(toxic)
        if key not in self.chosen:  # bytes are counted from here (limit_data, after_bytes)
            self.chosen[key] = toxic.toxicity >= 1 or self.proxy.rng.random() < toxic.toxicity
            self.base[key] = self.passed[toxic.stream]
        return self.chosen[key]

    def toxics(self, stream: str) -> list[Toxic]:
        return [t for t in self.proxy.active() if t.stream == stream and self.applies(t)]

    def _pump(self, stream: str) -> None:
        src, dst = (self.client, self.server) if stream == "upstream" else (self.server, self.client)
        pending = b""  # upstream text not yet a whole line, while rules are set
        try:
            while not self.closed.is_set():
                if self._timed_out(stream):
                    return self.close(reset=False, cut=True)
                ready, _, _ = select.select([src], [], [], POLL)
                if not ready:
                    if pending:  # no line end came (an HTTP body): judged as it is
                        chunk, pending = self._apply_rules(pending + b"\n")
                        chunk = chunk[:-1] if chunk else chunk
                        if chunk is None:
                            return
                        if chunk and not self._forward(stream, chunk, dst):
                            return
                    continue
                chunk = src.recv(65536)
                if not chunk:
                    return self.close(reset=False)
                if stream == "upstream" and (self.proxy.rules or pending):
                    chunk, pending = self._apply_rules(pending + chunk)
                    if chunk is None:
                        return
                if chunk and not self._forward(stream, chunk, dst):
                    return
        except OSError:
            self.close(reset=False)

    def _timed_out(self, stream: str) -> bool:
        for toxic in self.toxics(stream):
            timeout = toxic.attributes.get("timeout", 0) / 1000
            if toxic.kind == "timeout" and timeout <= 0 or "after_bytes" in toxic.attributes:
                continue  # a stall, or a cut that waits for its bytes
            if toxic.kind in ("timeout", "reset_peer") and \
                    time.monotonic() - max(self.started, toxic.attributes["_since"]) >= timeout:
                if toxic.kind == "reset_peer":
                    self.close(reset=True)
                return True
        return False

    def _forward(self, stream: str, chunk: bytes, dst: socket.socket) -> bool:
        """Send ``chunk`` through this stream's toxics; False once the link is cut."""
        toxics = self.toxics(stream)
        if any(t.kind == "timeout" for t in toxics):
            return True  # dropped: the stall
        for toxic in toxics:
            if toxic.kind == "latency":
                jitter = toxic.attributes.get("jitter", 0)
                time.sleep(max(0, toxic.latency + random.uniform(-jitter, jitter)) / 1000)
            elif toxic.kind == "bandwidth":
                time.sleep(len(chunk) / max(1, toxic.rate * 1024))
        limits = [(t.kind, t.attributes.get("after_bytes", t.attributes.get("bytes")), self.base[id(t)])
                  for t in toxics
                  if t.kind == "limit_data" or (t.kind == "reset_peer" and "after_bytes" in t.attributes)]
        for kind, limit, base in limits:
            room = limit - (self.passed[stream] - base)
            if room < len(chunk):
                if room > 0:
                    dst.sendall(chunk[:room])
                    self.passed[stream] += room
                self.close(reset=kind == "reset_peer", cut=True)
                return False
        dst.sendall(chunk)
        self.passed[stream] += len(chunk)
        return True

    def _apply_rules(self, data: bytes) -> tuple[bytes | None, bytes]:
        """(what to forward, the unfinished line kept); None when a rule closed the link."""
        out = b""
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            line += b"\n"
            rule = self.proxy.match(line.rstrip(b"\r\n"))
            if rule is None:
                out += line
                continue
            if out:
                self._forward("upstream", out, self.server)
                out = b""
            self.client.sendall(rule.render(line.rstrip(b"\r\n")))
            if rule.close:
                self.close(reset=False, cut=True)
                return None, b""
        return out, data

    def close(self, reset: bool, cut: bool = False) -> None:
        """End the link: ``reset`` with a TCP RST; ``cut`` counts a fault's doing."""
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
        self.proxy.stats.cut += reset or cut
        delay = max((t.delay for t in self.proxy.active() if t.kind == "slow_close"), default=0)
        if delay:
            time.sleep(delay / 1000)
        for sock in (self.client, self.server):
            if reset:  # SO_LINGER 0: close sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            try:
                sock.close()
            except OSError:
                pass
        self.proxy.forget(self)


class Proxy:
    """A TCP proxy from ``127.0.0.1:port`` to ``upstream``, with toxics."""

    def __init__(self, name: str, upstream: tuple[str, int], seed: int = 0) -> None:
        self.name, self.upstream = name, upstream
        self.host = "127.0.0.1"
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.rules: list[Rule] = []
        self._toxics: list[Toxic] = []
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0
        self.up()

    # -- control -----------------------------------------------------------

    def up(self) -> None:
        """Listen (again, on the same port)."""
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"faults-{self.name}").start()

    def down(self) -> None:
        """Refuse connections and cut the open ones (Toxiproxy's ``enabled=false``)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone would not free the port)
            except OSError:
                pass
            listener.close()
        for link in list(self._links):
            link.close(reset=False, cut=True)

    def toxic(self, kind: str, stream: str = "downstream", toxicity: float = 1.0, **attributes) -> Toxic:
        if kind not in KINDS or stream not in STREAMS:
            raise ValueError(f"unknown toxic {kind!r} on {stream!r}; kinds: {sorted(KINDS)}")
        made = Toxic(kind, stream, toxicity, {**attributes, "_since": time.monotonic()}, self)
        with self._lock:
            self._toxics.append(made)
        return made

    def remove(self, toxic: Toxic) -> None:
        with self._lock:
            if toxic in self._toxics:
                self._toxics.remove(toxic)

    def answer(self, pattern: str | bytes, reply: bytes | Callable[[bytes], bytes], close: bool = False,
               times: int | None = None) -> Rule:
        raw = pattern.encode() if isinstance(pattern, str) else pattern
        rule = Rule(re.compile(raw, re.IGNORECASE), reply, close, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def heal(self) -> None:
        with self._lock:
            self._toxics.clear()
            self.rules.clear()
        self.up()

    def close(self) -> None:
        self.heal()
        self.down()

    @property
    def where(self) -> tuple[str, int]:
        return self.host, self.port

    # -- for the links -------------------------------------------------------

    def active(self) -> list[Toxic]:
        with self._lock:
            return list(self._toxics)

    def match(self, line: bytes) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.pattern.search(line):
                    rule.hits += 1
                    self.stats.answered += 1
                    if rule.times is not None and rule.hits >= rule.times:
                        self.rules.remove(rule)
                    return rule
        return None

    def forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            if self._listener is not listener:
                self.stats.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self.stats.connections += 1
            link = _Link(self, client, server)
            with self._lock:
                self._links.add(link)
            link.start()


@dataclass
class Faults:
    """The proxies of one test, made on first use (see the module docstring)."""

    request: pytest.FixtureRequest
    seed: int = 0
    made: dict[str, Proxy] = field(default_factory=dict)

    def proxy(self, host: str, port: int, name: str | None = None) -> Proxy:
        name = name or f"{host}:{port}"
        if name not in self.made:
            self.made[name] = Proxy(name, (host, port), self.seed)
        return self.made[name]

    def _server(self, fixture: str):
        return self.request.getfixturevalue(fixture)

    @property
    def smtp(self) -> Proxy:
        server = self._server("smtp")
        return self.proxy(server.host, server.port, "smtp")

    @property
    def smtps(self) -> Proxy:
        server = self._server("smtp")
        return self.proxy(server.host, server.smtps_port, "smtps")

    @property
    def imap(self) -> Proxy:
        server = self._server("imap_mailbox")
        return self.proxy(server.host, server.imap_port, "imap")

    @property
    def imaps(self) -> Proxy:
        server = self._server("imap_mailbox")
        return self.proxy(server.host, server.imaps_port, "imaps")

    @property
    def caldav(self) -> Proxy:
        url = urlsplit(self._server("radicale_server"))
        proxy = self.proxy(url.hostname, url.port, "caldav")
        proxy.url = urlunsplit(url._replace(netloc=f"{proxy.host}:{proxy.port}"))
        return proxy

    @property
    def postgres(self) -> Proxy:
        server = self._server("postgres_server")
        return self.proxy("127.0.0.1", server.port, "postgres")

    def close(self) -> None:
        for proxy in self.made.values():
            proxy.close()


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Iterator[Faults]:
    made = Faults(request)
    try:
        yield made
    finally:
        made.close()
