"""Building the exchangelib ``Account`` for the forum mailbox.

No autodiscover: the service endpoint comes from the configuration. TLS is
verified; a ``ca_file`` (a municipality's own CA) is honoured through a
custom HTTP adapter, since exchangelib builds its ``requests`` sessions
itself (``BaseProtocol.HTTP_ADAPTER_CLS``). Plain http is refused except to
127.0.0.1 (tests, a local relay). Throttling is retried by exchangelib's
``FaultTolerance`` policy, bounded by ``max_wait`` seconds.

exchangelib logs whole SOAP requests and responses (mail bodies included)
at DEBUG, and a failed request with its XML at ERROR; a filter keeps that
out of sparring's logs.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests
from exchangelib import BASIC, DELEGATE, NTLM, Account, Configuration, Credentials, FaultTolerance
from exchangelib.errors import UnauthorizedError
from exchangelib.ewsdatetime import EWSTimeZone
from exchangelib.protocol import BaseProtocol

from scheduler.config import ExchangeConfig
from scheduler.errors import ConfigError

log = logging.getLogger(__name__)
_AUTH = {"ntlm": NTLM, "basic": BASIC}
_LOOPBACK = {"127.0.0.1", "::1"}


class HostAdapter(requests.adapters.HTTPAdapter):
    """Per host: verify against a configured CA file, or (only when
    ``verify_tls = false`` was configured) not at all."""

    ca_files: dict[str, str] = {}
    unverified: frozenset[str] = frozenset()

    def send(self, request, **kwargs):  # type: ignore[override]
        host = urlsplit(request.url).hostname or ""
        if host in self.unverified:
            kwargs["verify"] = False
        elif host in self.ca_files and kwargs.get("verify") is True:
            kwargs["verify"] = self.ca_files[host]
        return super().send(request, **kwargs)


class Patience(FaultTolerance):
    """FaultTolerance, but HTTP 401 means bad credentials, not throttling:
    retrying those for ``max_wait`` would hide a wrong password."""

    def raise_response_errors(self, response):
        if response.status_code == 401:
            raise UnauthorizedError("the server refused the credentials (HTTP 401)")
        return super().raise_response_errors(response)


class _RedactXml(logging.Filter):
    """Drop exchangelib records that would carry SOAP bodies."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.endswith(".xml"):
            return False
        if record.levelno >= logging.ERROR and record.name == "exchangelib.util":
            record.msg, record.args = "exchangelib: an EWS request failed (details withheld)", ()
        return True


def quiet_exchangelib_logs() -> None:
    logging.getLogger("exchangelib").setLevel(logging.WARNING)
    for name in ("exchangelib.util", "exchangelib.util.xml"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactXml) for f in logger.filters):
            logger.addFilter(_RedactXml())


def check_endpoint(config: ExchangeConfig) -> str:
    """The endpoint URL, or one ConfigError sentence about what is wrong."""
    url = config.service_endpoint.strip()
    parts = urlsplit(url)
    if not url or parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            "exchange.service_endpoint must be a URL such as https://mail.kommune.example/EWS/Exchange.asmx."
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ConfigError(f"exchange.service_endpoint: plain http is allowed only to 127.0.0.1, not {parts.hostname}; use https.")
    if "@" not in config.mailbox:
        raise ConfigError("exchange.mailbox must be the forum mailbox's primary SMTP address.")
    if config.auth not in _AUTH:
        raise ConfigError(f"exchange.auth = {config.auth!r} is not supported yet; use ntlm or basic.")
    return url


def install_adapter(host: str, ca_file: str, verify: bool) -> None:
    """Route exchangelib's HTTP through the host-aware adapter (process-wide)."""
    if ca_file:
        HostAdapter.ca_files = {**HostAdapter.ca_files, host: ca_file}
    if not verify:
        log.warning("exchange: TLS verification is off for %s (verify_tls = false)", host)
        HostAdapter.unverified = HostAdapter.unverified | {host}
    BaseProtocol.HTTP_ADAPTER_CLS = HostAdapter


def build_account(
    config: ExchangeConfig,
    password: str,
    *,
    timezone: str = "Europe/Copenhagen",
    max_wait: float = 300.0,
) -> Account:
    """An ``Account`` for ``config.mailbox`` with delegate access.

    No request is sent here: exchangelib guesses the server version and
    looks up folders on first use.
    """
    url = check_endpoint(config)
    quiet_exchangelib_logs()
    install_adapter(urlsplit(url).hostname or "", config.ca_file, config.verify_tls)
    credentials = Credentials(config.username or config.mailbox, password)
    configuration = Configuration(
        service_endpoint=url,
        credentials=credentials,
        auth_type=_AUTH[config.auth],
        retry_policy=Patience(max_wait=max_wait),
    )
    return Account(
        primary_smtp_address=config.mailbox,
        config=configuration,
        autodiscover=False,
        access_type=DELEGATE,
        default_timezone=EWSTimeZone.from_timezone(ZoneInfo(timezone)),
    )
