"""Folders and files sparring keeps personal data in: its user's alone.

Folders are 0700 and files 0600, whatever the umask: settled mails, the
outbox and the calendar files sit in the data directory next to each other,
and nothing there is for other users of the machine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` as a folder only this user can enter: created so, or
    tightened if an earlier sparring (or a umask) left it open to others."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, FOLDER_MODE)
    return path


def fsync_path(path: Path) -> None:
    """Flush a file's data, or (a folder) the names in it, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
