"""S/MIME (RFC 8551): encrypting, signing, decrypting and verifying mails.

Encryption and decryption use ``cryptography``'s PKCS#7 support (enveloped
data, AES-256-CBC, RSA key transport: what Outlook and the Danish OCES/MOCES
certificates speak). ``cryptography`` cannot verify a signature, so the
CMS SignedData is read with ``asn1crypto`` and its signature checked with
``cryptography``: the digest of the signed part, the signature over the
signed attributes, and the signer's certificate issued by a trusted CA.
Nothing here logs; errors name the problem, never the content.
"""

from __future__ import annotations

import base64
import email
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

_CONTENT_HEADERS = {"mime-version", "content-type", "content-transfer-encoding", "content-disposition",
                    "content-description", "content-id"}
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512, "sha1": hashlib.sha1}
_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512, "sha1": hashes.SHA1}


class SmimeError(ValueError):
    """A mail that cannot be decrypted or whose signature does not hold."""


# -- certificates ------------------------------------------------------------


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def load_key(path: str | Path):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def addresses_of(cert: x509.Certificate) -> set[str]:
    """The mail addresses a certificate is issued to (SAN, else subject)."""
    found: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found.update(a.lower() for a in san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    found.update(str(a.value).lower() for a in cert.subject.get_attributes_for_oid(x509.NameOID.EMAIL_ADDRESS))
    return found


def certificate_problem(cert: x509.Certificate, address: str, now: datetime,
                        authorities: Sequence[x509.Certificate] = ()) -> str | None:
    """Why ``cert`` may not be used for ``address`` at ``now``, or None."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "expired" if now > cert.not_valid_after_utc else "not yet valid"
    if address.lower() not in addresses_of(cert):
        return "issued to another address"
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        return "not an RSA key"
    if authorities and not _issued_by_any(cert, authorities):
        return "not issued by a trusted CA (smime.ca_file)"
    return None


def _issued_by_any(cert: x509.Certificate, authorities: Sequence[x509.Certificate]) -> bool:
    for authority in authorities:
        try:
            cert.verify_directly_issued_by(authority)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


# -- outgoing ------------------------------------------------------------------


def split(message: bytes) -> tuple[list[bytes], bytes]:
    """(header lines, body) of a CRLF message; folded lines kept whole."""
    head, _, body = message.partition(b"\r\n\r\n")
    lines: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b"\r\n" + line
        else:
            lines.append(line)
    return lines, body


def _name(line: bytes) -> str:
    return line.partition(b":")[0].strip().decode("ascii", "replace").lower()


def _entity(lines: list[bytes], body: bytes) -> bytes:
    """The MIME entity (content headers and body) that S/MIME wraps."""
    content = [line for line in lines if _name(line) in _CONTENT_HEADERS and _name(line) != "mime-version"]
    return b"\r\n".join(content) + b"\r\n\r\n" + body


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def encrypt(message: bytes, recipients: Sequence[x509.Certificate], signer=None) -> bytes:
    """The message with its content signed (if ``signer`` = (cert, key)) and
    enveloped for ``recipients`` (AES-256); the outer headers stay as they are."""
    lines, body = split(message)
    entity = _entity(lines, body)
    if signer is not None:
        entity = sign_entity(entity, *signer)
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(entity).set_content_encryption_algorithm(algorithms.AES256)
    for cert in recipients:
        builder = builder.add_recipient(cert)
    smime = _crlf(builder.encrypt(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.Binary]))
    outer = [line for line in lines if _name(line) not in _CONTENT_HEADERS]
    smime_head, smime_body = split(smime)
    return b"\r\n".join(outer + smime_head) + b"\r\n\r\n" + smime_body


def sign_entity(entity: bytes, cert: x509.Certificate, key) -> bytes:
    """A multipart/signed entity (detached SHA-256 signature) around ``entity``."""
    signed = (pkcs7.PKCS7SignatureBuilder().set_data(entity).add_signer(cert, key, hashes.SHA256())
              .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))
    lines, body = split(_crlf(signed))
    return _entity(lines, body)


# -- incoming ------------------------------------------------------------------


def _content_type(raw: bytes) -> str:
    head = _HEADER_END.split(raw, 1)[0]
    found = re.search(rb"^content-type:[ \t]*([^;\r\n]+)((?:[^\r\n]|\r?\n[ \t])*)", head, re.I | re.M)
    if not found:
        return ""
    return (found.group(1) + found.group(2)).decode("ascii", "replace").lower()


def is_enveloped(raw: bytes) -> bool:
    kind = _content_type(raw)
    return ("application/pkcs7-mime" in kind or "application/x-pkcs7-mime" in kind) and "signed-data" not in kind


def is_signed(raw: bytes) -> bool:
    kind = _content_type(raw)
    return "multipart/signed" in kind and "pkcs7-signature" in kind


def decrypt(raw: bytes, cert: x509.Certificate, key) -> bytes:
    """The mail with its enveloped content replaced by the decrypted entity."""
    lines, body = split(_crlf(raw))
    smime = b"\r\n".join(line for line in lines if _name(line) in _CONTENT_HEADERS) + b"\r\n\r\n" + body
    try:
        entity = pkcs7.pkcs7_decrypt_smime(smime, cert, key, [])
    except (ValueError, TypeError):
        raise SmimeError("the mail is encrypted, but not to the forum's certificate (smime.decrypt_cert)") from None
    outer = [line for line in lines if _name(line) not in _CONTENT_HEADERS]
    return b"\r\n".join(outer) + b"\r\nMIME-Version: 1.0\r\n" + _crlf(entity)


@dataclass(frozen=True)
class Signature:
    signer: x509.Certificate
    content: bytes  # the mail with the signed entity in place of multipart/signed


def verify(raw: bytes, authorities: Sequence[x509.Certificate], now: datetime) -> Signature:
    """Check a multipart/signed mail; raises ``SmimeError`` naming what fails."""
    message = email.message_from_bytes(raw, policy=policy.compat32)
    boundary = message.get_boundary()
    if not boundary:
        raise SmimeError("the signed mail has no MIME boundary")
    lines, body = split(_crlf(raw))
    signed_part, signature = _parts(body, boundary.encode("ascii", "replace"))
    signed_data = _signed_data(signature)
    signer_info = signed_data["signer_infos"][0]
    signer = _signer_certificate(signed_data, signer_info)
    _check_digest(signed_part, signer_info)
    _check_signature(signer, signer_info)
    if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
        raise SmimeError("the signer's certificate was not valid when the mail arrived")
    if not authorities or not _issued_by_any(signer, authorities):
        raise SmimeError("the signer's certificate is not issued by a trusted CA (smime.ca_file)")
    outer = [line for line in lines if _name(line) not in _CONTENT_HEADERS]
    return Signature(signer, b"\r\n".join(outer) + b"\r\nMIME-Version: 1.0\r\n" + signed_part)


def _parts(body: bytes, boundary: bytes) -> tuple[bytes, bytes]:
    """The signed entity (byte for byte as signed) and the signature part."""
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary)
    if len(chunks) < 4 or b"\r\n" not in chunks[1] or b"\r\n" not in chunks[2]:
        raise SmimeError("the signed mail does not hold the two parts it should")
    return chunks[1].split(b"\r\n", 1)[1], chunks[2].split(b"\r\n", 1)[1]


def _signed_data(part: bytes):
    head, _, body = part.partition(b"\r\n\r\n")
    try:
        info = cms.ContentInfo.load(base64.b64decode(body))
        if info["content_type"].native != "signed_data":
            raise SmimeError("the signature part holds no signed data")
        data = info["content"]
        data["signer_infos"][0]  # noqa: B018  (parse now: a malformed structure fails here)
        return data
    except SmimeError:
        raise
    except Exception:
        raise SmimeError("the signature part cannot be read") from None


def _signer_certificate(signed_data, signer_info) -> x509.Certificate:
    sid = signer_info["sid"]
    for choice in signed_data["certificates"] or ():
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number" and (
                cert.issuer == sid.chosen["issuer"] and cert.serial_number == sid.chosen["serial_number"].native):
            return x509.load_der_x509_certificate(cert.dump())
    raise SmimeError("the signer's certificate is not in the signature")


def _check_digest(signed_part: bytes, signer_info) -> None:
    algorithm = signer_info["digest_algorithm"]["algorithm"].native
    if algorithm not in _DIGESTS:
        raise SmimeError(f"the signature uses an unsupported digest ({algorithm})")
    attributes = {a["type"].native: a["values"][0].native for a in signer_info["signed_attrs"] or ()}
    if attributes.get("message_digest") != _DIGESTS[algorithm](signed_part).digest():
        raise SmimeError("the signature does not match the mail's content (it was changed)")


def _check_signature(signer: x509.Certificate, signer_info) -> None:
    attributes = signer_info["signed_attrs"]
    signed = b"\x31" + attributes.dump()[1:]  # as SET OF, the form signed (RFC 5652, 5.4)
    algorithm = _HASHES[signer_info["digest_algorithm"]["algorithm"].native]()
    key = signer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signer_info["signature"].native, signed, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signer_info["signature"].native, signed, ec.ECDSA(algorithm))
        else:
            raise SmimeError("the signer's key type is not supported")
    except InvalidSignature:
        raise SmimeError("the signature is not valid (forged or changed)") from None
