"""exchangelib's exceptions, mapped to the ports' TransientError / PermanentError.

exchangelib already retries throttling (``ErrorServerBusy`` with
``BackOffMilliseconds``) under its ``FaultTolerance`` policy; what still
escapes is turned into one of the two port errors here. Messages name the
operation and the EWS error class only: exchangelib's own texts may quote
server content, which could carry personal data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from exchangelib import errors as ews

from scheduler.ports import PermanentError, TransientError

# What a later retry may cure: throttling, timeouts, a store briefly away, 5xx.
_TRANSIENT = (
    ews.ErrorServerBusy,
    ews.RateLimitError,
    ews.ErrorTimeoutExpired,
    ews.ErrorInternalServerTransientError,
    ews.ErrorInternalServerError,
    ews.ErrorTooManyObjectsOpened,
    ews.ErrorExceededConnectionCount,
    ews.ErrorMailboxStoreUnavailable,
    ews.ErrorMailboxMoveInProgress,
    ews.ErrorConnectionFailed,
    ews.ErrorBatchProcessingStopped,
    ews.MalformedResponseError,  # an HTTP 5xx without a SOAP body
    ews.SOAPError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)
# What it will not: credentials, rights, addresses, a malformed request.
_PERMANENT = (
    ews.UnauthorizedError,
    ews.ErrorAccessDenied,
    ews.ErrorNonExistentMailbox,
    ews.ErrorInvalidRecipients,
    ews.ErrorMailRecipientNotFound,
    ews.ErrorInvalidSmtpAddress,
    ews.ErrorImpersonateUserDenied,
    ews.ErrorMessageSizeExceeded,
    ews.ErrorSchemaValidation,
    ews.ErrorInvalidRequest,
    ews.CASError,
)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait, if it said."""
    for attribute in ("back_off", "wait"):
        value = getattr(exc, attribute, None)
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None


def translate(exc: BaseException, what: str) -> Exception:
    """The port error for ``exc`` raised while doing ``what``."""
    name = type(exc).__name__
    if isinstance(exc, TransientError | PermanentError):
        return exc
    if isinstance(exc, _PERMANENT):
        return PermanentError(f"Exchange {what} failed: {name}.")
    if isinstance(exc, ews.TransportError) and "SSL" in str(exc):
        return PermanentError(f"Exchange {what} failed: the TLS certificate was not accepted.")
    if isinstance(exc, _TRANSIENT):
        return TransientError(f"Exchange {what} failed: {name}; try again later.", retry_after(exc))
    if isinstance(exc, ews.EWSError):
        return PermanentError(f"Exchange {what} failed: {name}.")
    return PermanentError(f"Exchange {what} failed unexpectedly: {name}.")


def check(results: list, what: str, ignore: tuple[type[Exception], ...] = ()) -> None:
    """Raise the first exception exchangelib returned in a bulk result list."""
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, ignore):
            raise translate(result, what)


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Let only TransientError and PermanentError escape the block."""
    try:
        yield
    except (TransientError, PermanentError):
        raise
    except (ews.EWSError, requests.exceptions.RequestException, OSError) as exc:
        raise translate(exc, what) from None
