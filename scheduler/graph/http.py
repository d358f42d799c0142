"""HTTP plumbing shared by the token provider and the Graph client.

``check_url`` refuses plaintext to anything but loopback, like every other
transport. ``VerifyingSession`` is a ``requests.Session`` that verifies TLS
against ``ca_file`` when one is configured: requests lets
``REQUESTS_CA_BUNDLE`` override a session's ``verify`` unless it is passed
with each request, so it is passed here; proxies from the environment still
apply.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import requests

from scheduler.errors import ConfigError
from scheduler.ports import PermanentError, TransientError
from scheduler.tls import http_url_problem


def check_url(url: str, key: str) -> str:
    """``url`` if it is https (or http to a loopback IP), else one ConfigError sentence."""
    url = url.strip()
    problem = http_url_problem(url)
    if problem:
        raise ConfigError(f"{key}: {problem}.")
    return url


class VerifyingSession(requests.Session):
    """A session whose every request verifies against ``ca_file`` (or the
    system's CAs) and has a timeout; ``on_send`` counts round trips."""

    def __init__(self, ca_file: str = "", timeout: float = 30) -> None:
        if ca_file and not Path(ca_file).is_file():
            raise ConfigError(f"graph.ca_file {ca_file}: file not found; give the path of a PEM CA certificate.")
        super().__init__()
        self.ca_file = ca_file
        self.timeout = timeout
        self.on_send: Callable[[], None] = lambda: None

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if self.ca_file:
            kwargs["verify"] = self.ca_file
        kwargs.setdefault("timeout", self.timeout)
        self.on_send()
        return super().request(method, url, *args, **kwargs)


def transport_error(exc: requests.exceptions.RequestException, what: str, where: str) -> Exception:
    """The port error for a request that got no answer: a refused TLS
    certificate is permanent, anything else (refused, timed out) transient."""
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentError(f"Graph {what} failed: the TLS certificate of {where} was not accepted; "
                              "set graph.ca_file to the CA that signed it.")
    return TransientError(f"Graph {what} failed: {where} could not be reached ({type(exc).__name__}); "
                          "try again later.")
