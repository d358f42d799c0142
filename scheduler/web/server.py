"""Serving the pages with uvicorn: alone (``sparring serve``) or in a thread of ``sparring run``.

The socket is bound here, before uvicorn starts, so an address in use is one
sentence and a non-zero exit instead of uvicorn's own log and ``sys.exit``.
The log is the service's (key=value, CPR masked); access lines carry the
path without its query string, and never a password (uvicorn logs no headers).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading

import uvicorn

from scheduler.config import loopback_problem, parse_listen
from scheduler.errors import UserError
from scheduler.web.app import make_web_app


class _PathOnly(logging.Filter):
    """uvicorn.access's arguments are (client, method, path?query, version, status): drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, target, version, status = record.args
            record.args = (client, method, str(target).partition("?")[0], version, status)
        return True


class _Server(uvicorn.Server):
    """Signals are the caller's: ``serve`` sets its own, the daemon stops the thread."""

    def capture_signals(self):
        return contextlib.nullcontext()


def bind(listen: str, auth: str) -> socket.socket:
    """A listening socket on ``listen``, or a UserError saying why not, in one sentence."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise UserError(f"web listen: {exc}.") from None
    problem = loopback_problem(listen, auth)
    if problem:
        raise UserError(f"web listen: {problem}.")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"web listen: {listen} is already in use by another program; stop it or choose "
                            "another address with --listen or [web] listen.") from None
        raise UserError(f"web listen: cannot listen on {listen} ({exc.strerror or exc.__class__.__name__}).") \
            from None
    return sock  # not inheritable (PEP 446): no program sparring starts holds the port


def _server(app, live) -> _Server:
    logging.getLogger("uvicorn.access").addFilter(_PathOnly())
    config = uvicorn.Config(make_web_app(app, live=live), log_config=None, access_log=True,
                            server_header=False, proxy_headers=False, lifespan="off")
    return _Server(config)


def serve(app, listen: str) -> int:
    """``sparring serve``: until SIGTERM or SIGINT."""
    sock = bind(listen, app.config.web.auth)
    server = _server(app, None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    logging.getLogger("sparring.web").info("serving listen=%s auth=%s", listen, app.config.web.auth)
    server.run(sockets=[sock])
    sock.close()
    return 0


class InThread:
    """The pages inside ``sparring run``: a uvicorn server on a thread of the daemon."""

    def __init__(self, app, live) -> None:
        self.listen = app.config.web.listen
        self.sock = bind(self.listen, app.config.web.auth)
        self.server = _server(app, live)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="web", daemon=True)

    def start(self) -> InThread:
        self.thread.start()
        logging.getLogger("sparring.web").info("serving listen=%s in the daemon", self.listen)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
