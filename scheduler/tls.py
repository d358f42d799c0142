"""TLS policy shared by every client: IMAP, SMTP, CalDAV, EWS, Graph, PostgreSQL.

Certificates are always verified (hostname and chain); a private CA can be
named with ``ca_file``. Plaintext is allowed only to a loopback address
given as an IP literal, so a name that resolves elsewhere can never carry
credentials or personal data unencrypted. The ``*_problem`` functions say
what is wrong in words (or None); ``config_checks`` applies them when the
configuration is loaded, so ``check-config`` refuses what ``run`` refuses.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Literal
from urllib.parse import urlsplit

from scheduler.errors import ConfigError

Security = Literal["tls", "starttls", "none"]
SECURITY_MODES: tuple[str, ...] = ("tls", "starttls", "none")


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server (TLS 1.2 or newer).

    Without ``ca_file`` the system's trust store is used.
    """
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except FileNotFoundError:
        raise ConfigError(f"ca_file {ca_file}: file not found; give the path of a PEM CA certificate.") from None
    except (ssl.SSLError, OSError, ValueError):
        raise ConfigError(f"ca_file {ca_file}: not a readable PEM CA certificate.") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def is_loopback(host: str) -> bool:
    """True only for a loopback IP literal (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plaintext_allowed(host: str) -> bool:
    """Plaintext (``http://``, ``security = "none"``) goes only to 127.0.0.1 or ::1."""
    return is_loopback(host)


def http_url_problem(url: str) -> str | None:
    """An HTTP endpoint (CalDAV, EWS, Graph): https, or plain http to loopback only."""
    parts = urlsplit(url.strip())
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and plaintext_allowed(parts.hostname):
        return None
    if parts.scheme == "http":
        return f"plain http is allowed only to 127.0.0.1, not to {parts.hostname or 'no host'}; use https://"
    return f"must be an https:// URL (got {parts.scheme or 'no'} scheme); plain http is allowed only to 127.0.0.1"


def security_problem(host: str, security: str) -> str | None:
    """A mail server's ``security``: plaintext only to loopback."""
    if security not in SECURITY_MODES:
        return f'{security!r} is not allowed; use "tls", "starttls" or "none"'
    if security == "none" and not plaintext_allowed(host):
        return f'plaintext (security = "none") is only allowed to 127.0.0.1, not to {host}; use "tls" or "starttls"'
    return None


def postgres_url_problem(url: str) -> str | None:
    """A PostgreSQL URL off this machine must say ``sslmode=verify-full``:
    ``require`` and ``verify-ca`` encrypt but do not check whom they talk to.
    Every target counts (``host``, ``hostaddr``, comma-separated lists); a
    ``service`` may point anywhere, so it counts as remote. The message
    names hosts only, never credentials."""
    from sqlalchemy import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None  # not a URL: ``store.db`` says so when the engine is made
    if parsed.get_backend_name() != "postgresql":
        return None
    targets = [_without_port(t.strip())
               for value in (parsed.host, *_values(parsed.query, "host"), *_values(parsed.query, "hostaddr"))
               for t in (value or "").split(",") if t.strip()]
    remote = [t for t in targets if not (t.startswith("/") or t.lower() == "localhost" or is_loopback(t))]
    if "service" in parsed.query:
        remote.append(f"service {parsed.query['service']}")
    if not remote or _values(parsed.query, "sslmode") == ("verify-full",):
        return None
    return (f"the PostgreSQL server {', '.join(remote)} is not on this machine, so the connection must use TLS "
            "with the server's certificate checked; add ?sslmode=verify-full to the URL (require and verify-ca "
            "do not check the server's name)")


def _without_port(target: str) -> str:
    """``127.0.0.1:5432`` (SQLAlchemy's ``?host=HOST:PORT``, one per server) as its host."""
    if target.startswith("["):
        return target.partition("]")[0] + "]"
    return target.partition(":")[0] if target.count(":") == 1 else target


def _values(query, key: str) -> tuple[str, ...]:
    value = query.get(key)
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def require_tls_or_loopback(host: str, security: str, what: str) -> None:
    """Refuse an unknown mode, or plaintext to anything but loopback.

    ``what`` names the setting for the message, e.g. "intake.imap".
    """
    problem = security_problem(host, security)
    if problem:
        raise ConfigError(f"{what}.security: {problem}.")
