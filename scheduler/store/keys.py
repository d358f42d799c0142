"""Where the master key comes from: environment, key file, or a demo key.

Order: env ``SPARRING_SECRET_KEY``, then the file named by
``service.key_file``, then (only with ``--demo``) ``<data-dir>/secret.key``,
created on first use. Without any of them sparring refuses to start: it
never touches personal data unencrypted. A key is urlsafe base64 of 32
random bytes, as ``sparring keygen`` prints it. Messages name where a key
came from, never the key itself.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from scheduler.errors import KeyMissingError

ENV_VAR = "SPARRING_SECRET_KEY"
DEMO_FILE = "secret.key"
KEY_BYTES = 32
_SHAPE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]=?")  # 32 bytes, padding optional

_HOW = (
    "create one with `sparring keygen` and put it in the environment variable "
    f"{ENV_VAR} or in a file named by service.key_file, or start with --demo"
)


def new_key() -> str:
    """A fresh key, printable and pasteable (44 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key(text: str, origin: str) -> bytes:
    """Decode a key; a malformed one names ``origin`` only."""
    raw = text.strip()
    if not _SHAPE.fullmatch(raw):
        raise KeyMissingError(
            f"The secret key in {origin} is malformed: it must be the 44 characters `sparring keygen` prints."
        )
    return base64.urlsafe_b64decode(raw.rstrip("=") + "=")


def load_key(env: Mapping[str, str], key_file: str | None, data_dir: Path, demo: bool) -> tuple[bytes, str]:
    """Return the master key and a one-line description of its origin."""
    if env.get(ENV_VAR, "").strip():
        origin = f"the environment variable {ENV_VAR}"
        return parse_key(env[ENV_VAR], origin), origin
    if key_file:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise KeyMissingError(f"The key file {path} named in service.key_file does not exist; {_HOW}.")
        return _read_key_file(path, f"the key file {path}"), f"the key file {path}"
    if demo:
        return _demo_key(Path(data_dir) / DEMO_FILE)
    raise KeyMissingError(f"No secret key is configured, so sparring will not start; {_HOW}.")


def _read_key_file(path: Path, origin: str) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise KeyMissingError(f"The key file {path} could not be read ({exc.strerror}).") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyMissingError(
            f"The key file {path} is accessible to other users (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}` and start again."
        )
    return parse_key(text, origin)


def _demo_key(path: Path) -> tuple[bytes, str]:
    if path.exists():
        return _read_key_file(path, f"the demo key file {path}"), f"demo key from {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then linked: a concurrent start never reads a half-written key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(new_key() + "\n")
    try:
        os.link(tmp, path)
        created = True
    except FileExistsError:  # another process won; use its key
        created = False
    finally:
        tmp.unlink()
    key = _read_key_file(path, f"the demo key file {path}")
    if not created:
        return key, f"demo key from {path}"
    return key, f"demo key created in {path}; keep it, without it the stored data cannot be read"
