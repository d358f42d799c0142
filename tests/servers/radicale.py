"""Radicale 3 on 127.0.0.1 for the CalDAV tests.

``auth type = none`` accepts any password, but the rights file only grants
anything to a *named* user, so a client that sends no credentials is
refused, like a real server would. Each user reads and writes their own
collections (``/<user>/<calendar>/``) and may only ask for free/busy
(permission ``f``) of other people's calendars.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import stop_process, unavailable

RIGHTS = """\
[root]
user: .+
collection:
permissions: R

[own-principal]
user: .+
collection: {user}
permissions: RW

[own-calendars]
user: .+
collection: {user}/[^/]+
permissions: rw

[other-principals]
user: .+
collection: [^/]+
permissions: R

[other-calendars]
user: .+
collection: [^/]+/[^/]+
permissions: f
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(root: Path, port: int) -> Path:
    (root / "rights").write_text(RIGHTS, encoding="utf-8")
    config = root / "config"
    config.write_text(
        f"""\
[server]
hosts = 127.0.0.1:{port}

[auth]
type = none

[rights]
type = from_file
file = {root / "rights"}

[storage]
filesystem_folder = {root / "collections"}

[web]
type = none

[logging]
level = warning
mask_passwords = True
""",
        encoding="utf-8",
    )
    return config


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except urllib.error.HTTPError:
            return True  # it answers; 401/403 without credentials is fine
        except OSError:
            time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a fresh Radicale, e.g. ``http://127.0.0.1:5232/``."""
    try:
        import radicale  # noqa: F401
    except ImportError:
        unavailable("radicale is not installed (pip install radicale)")
    root = tmp_path_factory.mktemp("radicale")
    port = free_port()
    config = write_config(root, port)
    log = (root / "radicale.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        if not wait_until_up(url, process):
            log.flush()
            tail = (root / "radicale.log").read_text(errors="replace")[-500:]
            unavailable(f"Radicale did not start on {url}: {tail}")
        yield url
    finally:
        stop_process(process)
        log.close()
