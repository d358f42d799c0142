"""The SMTP mail transport (smtplib): TLS, AUTH, one kept-open connection.

SMTPS or STARTTLS with verified certificates; plaintext only to a
loopback address. The connection stays open across sends and is reopened
once when the server dropped it in between. Replies map onto the ports'
errors: 4xx and lost connections are ``TransientError``, 5xx (a refused
recipient, bad credentials) ``PermanentError``; a message some recipients
refused (or all, with both 4xx and 5xx replies) is a ``PartialDelivery``
naming each refused address and its code, so that the outbox retries only
the 4xx ones and fails only the 5xx ones (the others have it). Messages
never reach a log line.
"""

from __future__ import annotations

import logging
import smtplib
import ssl

from scheduler.ports import OutgoingMail, PartialDelivery, PermanentError, TransientError
from scheduler.tls import client_context, require_tls_or_loopback

log = logging.getLogger(__name__)


class SmtpTransport:
    """ports.MailTransport over SMTP submission (587/STARTTLS) or SMTPS (465)."""

    def __init__(self, host: str, port: int, security: str = "starttls", username: str = "",
                 password: str = "", ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 30.0, local_hostname: str | None = None) -> None:
        require_tls_or_loopback(host, security, "outbox.smtp")
        self.host, self.port, self.security = host, port, security
        self.username, self._password = username, password
        self.ssl_context = ssl_context or client_context()  # smtplib's default does not verify
        self.timeout, self.local_hostname = timeout, local_hostname
        self._conn: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, mail: OutgoingMail) -> None:
        if not mail.recipients:
            raise PermanentError("An outgoing mail has no recipients.")
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._conn or self._open()
            try:
                refused = self._sendmail(conn, mail)
                break
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                self._drop()
                if not reused or attempt == 2:
                    raise TransientError(f"The SMTP server {self.where} closed the connection.") from None
                log.info("smtp connection lost; reconnecting server=%s", self.where)
        if refused:
            raise self._partial(refused, mail)

    def _partial(self, refused: dict, mail: OutgoingMail) -> PartialDelivery:
        codes = sorted({code for code, _ in refused.values()})
        return PartialDelivery(
            f"The SMTP server {self.where} refused {len(refused)} of {len(mail.recipients)} recipients "
            f"({', '.join(map(str, codes))}); the others received the message.",
            {address: code for address, (code, _) in refused.items()},
            [address for address in mail.recipients if address not in refused])

    def check(self) -> str:
        """Connect, secure, log in and NOOP (``check-connection``); sends nothing."""
        conn = self._conn or self._open()
        try:
            code, _ = conn.noop()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransientError(f"The SMTP server {self.where} did not answer NOOP ({type(exc).__name__}).") from None
        if code != 250:
            raise self._by_code(code, "NOOP")
        return self.where

    def _sendmail(self, conn: smtplib.SMTP, mail: OutgoingMail) -> dict:
        """sendmail with its failures mapped; lost connections propagate."""
        try:
            return conn.sendmail(mail.sender, list(mail.recipients), mail.message)
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            if 421 in codes:  # the server closed the session: nothing was sent, try it all again
                self._drop()
                raise self._by_code(421, "the session") from None
            if len({code // 100 for code in codes}) > 1:  # 4xx for some, 5xx for others
                raise self._partial(exc.recipients, mail) from None
            what = f"all {len(exc.recipients)} recipients"
            raise self._by_code(max(codes), what, codes) from None
        except smtplib.SMTPSenderRefused as exc:
            self._drop()
            raise self._by_code(exc.smtp_code, "the sender address") from None
        except smtplib.SMTPResponseException as exc:  # DATA refused, 421 and the like
            self._drop()
            raise self._by_code(exc.smtp_code, "the message") from None
        except (TimeoutError, ssl.SSLError) as exc:
            self._drop()
            raise TransientError(f"The SMTP server {self.where} did not complete the delivery "
                                 f"({type(exc).__name__}).") from None

    def _by_code(self, code: int, what: str, codes: list[int] | None = None) -> Exception:
        shown = ", ".join(map(str, codes or [code]))
        if 400 <= code < 500:
            return TransientError(f"The SMTP server {self.where} temporarily refused {what} ({shown}).")
        return PermanentError(f"The SMTP server {self.where} refused {what} ({shown}).")

    def _open(self) -> smtplib.SMTP:
        try:
            conn = self._dial()
            self._secure_and_login(conn)
        except ssl.SSLCertVerificationError:
            raise PermanentError(f"The certificate of the SMTP server {self.where} could not be verified; "
                                 "set ca_file to the CA that signed it.") from None
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientError(f"The SMTP server {self.where} cannot authenticate right now "
                                     f"({exc.smtp_code}).") from None
            raise PermanentError(f"The SMTP server {self.where} refused the login for {self.username!r}; "
                                 "check the user name and password.") from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentError(f"The SMTP server {self.where} does not offer "
                                 f"{'STARTTLS' if self.security == 'starttls' else 'AUTH'}.") from None
        except smtplib.SMTPResponseException as exc:  # a 421/554 greeting
            raise self._by_code(exc.smtp_code, "the connection") from None
        except OSError as exc:  # refused, unreachable, timed out, dropped
            raise TransientError(f"The SMTP server {self.where} cannot be reached "
                                 f"({type(exc).__name__}).") from None
        self._conn = conn
        log.info("smtp connected server=%s security=%s", self.where, self.security)
        return conn

    def _dial(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, local_hostname=self.local_hostname,
                                    timeout=self.timeout, context=self.ssl_context)
        return smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)

    def _secure_and_login(self, conn: smtplib.SMTP) -> None:
        try:
            if self.security == "starttls":
                conn.ehlo()
                conn.starttls(context=self.ssl_context)  # raises SMTPNotSupportedError if absent
                conn.ehlo()
            if self.username:
                conn.login(self.username, self._password)
        except Exception:
            _close(conn)
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            _close(self._conn)
        self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            _close(self._conn)
        self._conn = None


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        pass
