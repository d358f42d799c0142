"""A throwaway SMTP server (aiosmtpd) on 127.0.0.1 for the tests.

Two listeners share one handler: submission with STARTTLS required before
anything else and AUTH (PLAIN/LOGIN) only over TLS, and SMTPS (implicit
TLS). The certificate comes from ``tests/servers/tls.py``. The handler
keeps every accepted message for assertions and can be told to answer a
given recipient with a refusal (421/451/452 temporary, 550/554 permanent),
for ever or ``times`` times, and the DATA of the next messages likewise.
Faults on the wire (resets, stalls) are ``tests/servers/faults.py``'s.

Fixtures:
- ``smtp_server``: session; the running server (``SmtpServer``).
- ``smtp``: per test; the same server with no messages and no failures.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest

from tests.servers import unavailable
from tests.servers.tls import TlsFiles, throwaway_tls

USER, PASSWORD = "sparring", "smtp-test-password"


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    authenticated_as: str | None


@dataclass
class Handler:
    """aiosmtpd handler: refusals by recipient, and what was accepted."""

    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, list] = field(default_factory=dict)  # address -> ["451 ...", times left or None]
    data_answers: list[str] = field(default_factory=list)  # the next DATA replies, e.g. "554 ..."
    attempts: list[tuple[str, ...]] = field(default_factory=list)  # RCPTs offered, per DATA

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.refuse.get(address.lower())
        if refusal:
            answer, left = refusal
            if left is not None:
                refusal[1] = left - 1
                if left <= 1:
                    del self.refuse[address.lower()]
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.attempts.append(tuple(envelope.rcpt_tos))
        if self.data_answers:
            return self.data_answers.pop(0)
        login = session.auth_data if session.authenticated else None
        self.messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos),
                                      bytes(envelope.original_content or envelope.content), login))
        return "250 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    good = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(), auth_data.password.decode()) == (USER, PASSWORD)
    return AuthResult(success=good, handled=False, auth_data=auth_data.login.decode() if good else None)


@dataclass
class SmtpServer:
    host: str
    port: int  # STARTTLS required (submission)
    smtps_port: int  # implicit TLS
    user: str
    password: str
    tls: TlsFiles
    handler: Handler

    @property
    def ca_file(self) -> str:
        return str(self.tls.ca_file)

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def refuse(self, address: str, answer: str, times: int | None = None) -> None:
        """Answer RCPT TO for ``address`` with ``answer``, e.g. "550 5.1.1 No such user";
        ``times`` times, or until ``reset``."""
        self.handler.refuse[address.lower()] = [answer, times]

    def refuse_data(self, *answers: str) -> None:
        """Answer the next DATA commands with these, one each (e.g. "451 4.3.0 Busy")."""
        self.handler.data_answers.extend(answers)

    def reset(self) -> None:
        self.handler.messages.clear()
        self.handler.refuse.clear()
        self.handler.data_answers.clear()
        self.handler.attempts.clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _controllers(tls: TlsFiles, handler: Handler):
    from aiosmtpd.controller import Controller

    common = dict(hostname="127.0.0.1", server_hostname="localhost", authenticator=authenticator,
                  auth_exclude_mechanism=["CRAM-MD5"])
    submission = Controller(handler, port=_free_port(), tls_context=tls.server_context(),
                            require_starttls=True, auth_require_tls=True, **common)
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; SMTPS is TLS throughout.
    smtps = Controller(handler, port=_free_port(), ssl_context=tls.server_context(),
                       auth_require_tls=False, **common)
    return submission, smtps


@contextmanager
def aiosmtpd_server() -> Iterator[SmtpServer]:
    """The server outside pytest (benchmarks); RuntimeError if it cannot start."""
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        raise RuntimeError("aiosmtpd is not installed") from None
    tls, handler = throwaway_tls(), Handler()
    submission, smtps = _controllers(tls, handler)
    started = []
    try:
        for controller in (submission, smtps):
            controller.start()
            started.append(controller)
    except Exception as exc:  # noqa: BLE001 - any start failure means: no server
        for controller in started:
            controller.stop()
        raise RuntimeError(f"aiosmtpd could not be started: {exc}") from None
    try:
        yield SmtpServer("127.0.0.1", submission.port, smtps.port, USER, PASSWORD, tls, handler)
    finally:
        for controller in started:
            controller.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(aiosmtpd_server())
        except RuntimeError as exc:
            unavailable(str(exc))
        yield server


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.reset()
    return smtp_server
