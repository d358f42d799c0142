"""Field encryption at rest (AES-256-GCM) and keyed lookup hashes (HMAC-SHA256).

One 32-byte master key (see ``keys.py``) never touches data directly: HKDF
derives one subkey for encryption and one for lookup hashes, so a leaked
hash key cannot decrypt anything and vice versa.

Blob layout (all values; ``LargeBinary`` columns)::

    byte 0      format version (1)
    byte 1      key id (0-255): which master key encrypted the value
    bytes 2-13  random 96-bit nonce, fresh per value
    bytes 14-   AES-GCM ciphertext followed by its 16-byte tag

The associated data binds version, key id and a *context* such as
``"items.cpr"``, so a value copied into another column (or another row
kind) fails to decrypt instead of being read as something else.

Whole files (a settled mail, ``seal_mail``) are one such blob behind a
small header of their own: ``sparring-mail`` and a format version byte, so
a file is recognised (and a later format told apart) before decrypting.

Key rotation readiness: ``FieldCipher(new_key, key_id=2, previous={1: old})``
encrypts with the new key and still decrypts blobs made under key id 1; a
re-encryption job can then rewrite old rows. Lookup hashes are bound to the
current key only, so rotating means recomputing the ``*_hash`` columns in
the same job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from scheduler.errors import UserError

FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
_HEADER = 2 + NONCE_BYTES
_INFO_ENCRYPT = b"sparring/v1/field-encryption"
_INFO_LOOKUP = b"sparring/v1/lookup-hmac"


class DecryptionError(UserError):
    """A stored value could not be decrypted: wrong key or altered data."""


def _subkey(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(master)


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError("the master key must be exactly 32 bytes")
    return key


class FieldCipher:
    """Encrypts single values with their column context; hashes lookup values."""

    def __init__(self, key: bytes, *, key_id: int = 1, previous: Mapping[int, bytes] | None = None) -> None:
        if not 0 <= key_id <= 255:
            raise ValueError("key_id must fit in one byte (0-255)")
        self.key_id = key_id
        keys = {i: _check_key(k) for i, k in (previous or {}).items()}
        keys[key_id] = _check_key(key)
        self._aead = {i: AESGCM(_subkey(k, _INFO_ENCRYPT)) for i, k in keys.items()}
        self._lookup_key = _subkey(key, _INFO_LOOKUP)

    # -- text ---------------------------------------------------------------

    def encrypt(self, text: str, *, context: str) -> bytes:
        return self.encrypt_bytes(text.encode("utf-8"), context=context)

    def decrypt(self, blob: bytes, *, context: str) -> str:
        return self.decrypt_bytes(blob, context=context).decode("utf-8")

    # -- bytes --------------------------------------------------------------

    def encrypt_bytes(self, plain: bytes, *, context: str) -> bytes:
        header = bytes((FORMAT_VERSION, self.key_id))
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + self._aead[self.key_id].encrypt(nonce, plain, _aad(header, context))

    def decrypt_bytes(self, blob: bytes, *, context: str) -> bytes:
        blob = bytes(blob)  # PostgreSQL hands back memoryview
        if len(blob) < _HEADER + 16 or blob[0] != FORMAT_VERSION:
            raise DecryptionError(f"A stored value ({context}) is not in a format sparring can read.")
        aead = self._aead.get(blob[1])
        if aead is None:
            raise DecryptionError(
                f"A stored value ({context}) was encrypted with key id {blob[1]}, which is not configured."
            )
        try:
            plain = aead.decrypt(blob[2:_HEADER], blob[_HEADER:], _aad(blob[:2], context))
        except InvalidTag:
            raise DecryptionError(
                f"A stored value ({context}) could not be decrypted: the secret key is wrong or the data was altered."
            ) from None
        return plain

    # -- JSON ---------------------------------------------------------------

    def encrypt_json(self, value: Any, *, context: str) -> bytes:
        return self.encrypt(json.dumps(value, ensure_ascii=False, separators=(",", ":")), context=context)

    def decrypt_json(self, blob: bytes, *, context: str) -> Any:
        return json.loads(self.decrypt(blob, context=context))

    # -- lookups ------------------------------------------------------------

    def lookup_hash(self, value: str, *, purpose: str) -> str:
        """Hex HMAC-SHA256 of ``value``, separated per purpose (a CPR hash is no Message-ID hash)."""
        message = purpose.encode("utf-8") + b"\x00" + value.encode("utf-8")
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()


MAIL_MAGIC = b"sparring-mail"
MAIL_VERSION = 1
MAIL_SUFFIX = ".enc"  # a settled mail is kept as ``<name>.eml.enc``
_MAIL_CONTEXT = "mail.raw"


def seal_mail(cipher: FieldCipher, raw: bytes) -> bytes:
    """A raw mail as it is kept on disk once settled: header, then one blob."""
    return MAIL_MAGIC + bytes((MAIL_VERSION,)) + cipher.encrypt_bytes(raw, context=_MAIL_CONTEXT)


def open_mail(cipher: FieldCipher, data: bytes) -> bytes:
    """The raw mail back from ``seal_mail``'s bytes; ``DecryptionError`` if it is none."""
    if not data.startswith(MAIL_MAGIC) or len(data) <= len(MAIL_MAGIC):
        raise DecryptionError("This is not a mail file sparring has stored (no sparring-mail header).")
    version = data[len(MAIL_MAGIC)]
    if version != MAIL_VERSION:
        raise DecryptionError(f"This mail file has format version {version}, which this sparring cannot read.")
    return cipher.decrypt_bytes(data[len(MAIL_MAGIC) + 1:], context=_MAIL_CONTEXT)


def _aad(header: bytes, context: str) -> bytes:
    return header + context.encode("utf-8")
