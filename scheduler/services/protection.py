"""S/MIME where personal data leaves the building, and in where it arrives.

Outgoing (``protect``): a series with ``encryption = "smime"`` has every
agenda, agenda copy and alert holding personal data enveloped (AES-256) for
the recipients with a valid certificate in ``[smime] certificates_dir``
(``<address>.pem``), and signed when the forum has a signing key. A
recipient without one gets nothing in plain; the administrator is told once
a day per address, with the fix and without personal data. Receipts to an
item that came encrypted go back encrypted when the sender's certificate
is known.

Incoming (``unwrap``): an item encrypted to the forum's certificate is
decrypted for parsing (the raw mail stays encrypted wherever it is kept);
a signed one must carry a valid signature by a certificate from
``[smime] ca_file`` issued to the From address, or it is quarantined.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from scheduler.errors import ConfigError
from scheduler.mail import smime
from scheduler.mail.authresults import failed, trusted_results
from scheduler.mail.compose import text_mail
from scheduler.mail.parse import MailKind, parse_mail
from scheduler.ports import PermanentError
from scheduler.render import render_mail
from scheduler.services.allowlist import Allowlist

log = logging.getLogger("sparring.smime")

# Outgoing kinds that hold the citizen's data in full.
SENSITIVE = frozenset({"agenda", "alert"})


class Protection:
    def __init__(self, app) -> None:
        self.app = app
        cfg = app.config.smime
        self.series = {s.id for s in app.config.series if s.encryption == "smime"}
        self.folder = Path(cfg.certificates_dir) if cfg.certificates_dir else None
        if self.series and self.folder is None:
            raise ConfigError("smime.certificates_dir must be set: a series uses encryption = \"smime\".")
        self.authorities = _load(cfg.ca_file, "smime.ca_file") if cfg.ca_file else []
        self.signer = _pair(cfg.signing_cert, cfg.signing_key, "smime.signing_cert", "smime.signing_key")
        self.decryptor = _pair(cfg.decrypt_cert, cfg.decrypt_key, "smime.decrypt_cert", "smime.decrypt_key")

    # -- outgoing ----------------------------------------------------------

    def needs(self, kind: str, payload: dict) -> bool:
        if payload.get("smime"):
            return True  # a receipt to an encrypted item
        return kind in SENSITIVE and any(about[1] in self.series for about in payload.get("about", ()))

    def outgoing(self, recipients: tuple[str, ...], message: bytes, optional: bool = False):
        """(recipients reached, message enveloped for them). ``optional``: a
        recipient without a certificate gets the mail as it is (a receipt)."""
        now = self.app.now().astimezone(timezone.utc)
        valid, missing = {}, {}
        for address in recipients:
            cert, problem = self.certificate(address, now)
            if problem is None:
                valid[address] = cert
            else:
                missing[address] = problem
        if optional and missing:
            return recipients, message
        for address, problem in missing.items():
            self._tell_admin(address, problem)
        if not valid:
            raise PermanentError("no recipient has a valid S/MIME certificate; the administrator was told which")
        return tuple(valid), smime.encrypt(message, list(valid.values()), self.signer)

    def certificate(self, address: str, now: datetime):
        """(certificate, None) or (None, why not) for ``address`` at ``now``."""
        path = self.folder / f"{address.lower()}.pem" if self.folder else None
        if path is None or not path.is_file():
            return None, "missing"
        try:
            cert = smime.load_certificates(path)[0]
        except (ValueError, IndexError, OSError):
            return None, "unreadable"
        problem = smime.certificate_problem(cert, address, now, self.authorities)
        return (cert, None) if problem is None else (None, problem)

    def _tell_admin(self, address: str, problem: str) -> None:
        app = self.app
        admin = app.config.service.admin
        where = self.folder / f"{address.lower()}.pem" if self.folder else "smime.certificates_dir"
        subject, body = render_mail("smime_missing.txt.j2", app.language, tz=app.tz, address=address, problem=problem,
                                    where=where, ca_file=app.config.smime.ca_file, forum_name=app.forum_name)
        message = text_mail(sender=app.forum_address, sender_name=app.forum_name, to=[admin], subject=subject,
                            body=body, sent_at=app.now(), language=app.language)
        with app.transaction() as repo:
            repo.enqueue_mail(message, kind="report", recipients=[admin],
                              dedupe_key=f"smime:{address.lower()}:{app.now().date()}")
        log.warning("S/MIME certificate %s for %s: nothing sent in plain", problem, address)

    # -- incoming ----------------------------------------------------------

    def unwrap(self, raw: bytes, sender: str) -> Unwrapped:
        """The mail to parse: decrypted and its signature checked, or why not."""
        encrypted = smime.is_enveloped(raw)
        if encrypted:
            if self.decryptor is None:
                return Unwrapped(raw, encrypted, "smime_undecryptable")
            try:
                raw = smime.decrypt(raw, *self.decryptor)
            except smime.SmimeError:
                return Unwrapped(raw, encrypted, "smime_undecryptable")
        if smime.is_signed(raw):
            try:
                signature = smime.verify(raw, self.authorities, self.app.now().astimezone(timezone.utc))
            except smime.SmimeError:
                return Unwrapped(raw, encrypted, "smime_bad_signature")
            if sender.lower() not in smime.addresses_of(signature.signer):
                return Unwrapped(raw, encrypted, "smime_signer_mismatch")
            raw = signature.content
        return Unwrapped(raw, encrypted, None)


@dataclass(frozen=True)
class Unwrapped:
    raw: bytes  # what the parser reads
    encrypted: bool  # it came enveloped: answer it encrypted where possible
    quarantine: str | None  # a reason code, or None


def _load(path: str, key: str) -> list:
    try:
        return smime.load_certificates(path)
    except (OSError, ValueError):
        raise ConfigError(f"{key}: {path} cannot be read as PEM certificates.") from None


def _pair(cert_path: str, key_path: str, cert_key: str, key_key: str):
    if not cert_path and not key_path:
        return None
    if not (cert_path and key_path):
        raise ConfigError(f"{cert_key} and {key_key} must be set together.")
    cert = _load(cert_path, cert_key)[0]
    try:
        key = smime.load_key(key_path)
    except (OSError, ValueError, TypeError):
        raise ConfigError(f"{key_key}: {key_path} cannot be read as an unencrypted PEM private key.") from None
    return cert, key


def protection(app) -> Protection | None:
    """The app's S/MIME settings, built once; None when none are configured."""
    found = getattr(app, "_protection", False)
    if found is False:
        cfg = app.config.smime
        configured = any(s.encryption == "smime" for s in app.config.series) or any(
            (cfg.decrypt_key, cfg.signing_key, cfg.ca_file, cfg.certificates_dir))
        found = app._protection = Protection(app) if configured else None
    return found


def protect(app, kind: str, recipients: tuple[str, ...], message: bytes, payload: dict):
    """The dispatcher's hook: (recipients, message) as they may be sent."""
    guard = protection(app)
    if guard is None or not guard.needs(kind, payload):
        return recipients, message
    return guard.outgoing(recipients, message, optional=bool(payload.get("smime")) and kind == "receipt")


# -- the gate before a mail is decided ---------------------------------------------


@dataclass(frozen=True)
class Screened:
    parsed: object  # ParsedMail, of the decrypted content where it came encrypted
    code: str | None  # a quarantine reason code, or None
    encrypted: bool = False


def screen(app, repo, parsed, raw: bytes) -> Screened:
    """Sender authenticity (Authentication-Results), then S/MIME: a mail
    that fails is quarantined; an encrypted one is parsed decrypted, and its
    receipt goes back encrypted where the sender's certificate is known."""
    intake = app.config.intake
    if intake.authserv_id and Allowlist(intake.allow).permits(parsed.sender):
        results = trusted_results(raw, intake.authserv_id)
        if results is not None and failed(results):
            return Screened(parsed, "auth_failed")
    guard = protection(app)
    if guard is None or parsed.kind is MailKind.TOO_LARGE or not (smime.is_enveloped(raw) or smime.is_signed(raw)):
        return Screened(parsed, None)
    unwrapped = guard.unwrap(raw, parsed.sender)
    if unwrapped.quarantine:
        return Screened(parsed, unwrapped.quarantine, unwrapped.encrypted)
    repo.reply_encrypted(unwrapped.encrypted)
    return Screened(parse_mail(unwrapped.raw, max_bytes=intake.max_bytes), None, unwrapped.encrypted)
