"""TLS policy shared by the mail clients (IMAP, SMTP).

Certificates are always verified (hostname and chain); a private CA can be
named with ``ca_file``. Plaintext is allowed only to a loopback address
given as an IP literal, so a name that resolves elsewhere can never carry
credentials or personal data unencrypted.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Literal

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


def require_tls_or_loopback(host: str, security: str, what: str) -> None:
    """Refuse an unknown mode, or plaintext to anything but loopback.

    ``what`` names the setting for the message, e.g. "intake.imap".
    """
    if security not in SECURITY_MODES:
        raise ConfigError(
            f"{what}: security {security!r} is not allowed; use \"tls\", \"starttls\" or \"none\"."
        )
    if security == "none" and not is_loopback(host):
        raise ConfigError(
            f"{what}: plaintext (security = \"none\") is only allowed to 127.0.0.1, "
            f"not to {host}; use \"tls\" or \"starttls\"."
        )
