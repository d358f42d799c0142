"""Running ``sparring`` as real subprocesses for the daemon tests.

``Proc`` starts one command (usually ``run`` or ``run --once``) on a data
directory, with stderr in a file that the test reads while it runs; the
test sends signals or SIGKILL and waits for files, log lines or the exit.
Every process is started through ``BOOT``, which announces on stderr when
the (slow) imports are done, so the fault-injection test can time its
kills from the moment real work begins.

Nothing here sleeps as an assertion: ``wait_for`` polls a condition and
fails with what it was waiting for.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "config" / "sparring.toml"
CPR_LIKE = re.compile(r"\d{6}-?\d{4}")
IMPORTED = "sparring-test: imported"
BOOT = (
    "import sys, scheduler.cli, scheduler.daemon, scheduler.wiring\n"
    f"print({IMPORTED!r}, file=sys.stderr, flush=True)\n"
    "sys.exit(scheduler.cli.main(sys.argv[1:]))\n"
)
FOLDERS = ("processed", "rejected", "quarantine", "ignored")

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def write_config(path: Path, storage_url: str | None = None) -> Path:
    """The shipped configuration, whole (there is no include), with [storage] url set."""
    text = CONFIG.read_text(encoding="utf-8")
    if storage_url is not None:
        text, n = re.subn(r'(?m)^url = ""(?=\s+# empty: SQLite)', f'url = "{storage_url}"', text)
        assert n == 1, "config/sparring.toml no longer has the [storage] url line this helper rewrites"
    path.write_text(text, encoding="utf-8")
    return path


def environment(key: str | None, **extra: str) -> dict[str, str]:
    """The child's environment: the key (or none, for --demo) and test overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARRING_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    if key:
        env["SPARRING_SECRET_KEY"] = key
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def command(data_dir: Path, *args: str, config: Path = CONFIG, now: str | None = None,
            demo: bool = False) -> list[str]:
    argv = [sys.executable, "-c", BOOT, "--config", str(config), "--data-dir", str(data_dir)]
    if now:
        argv += ["--now", now]
    if demo:
        argv.append("--demo")
    return argv + list(args)


def cli(data_dir: Path, *args: str, env: dict[str, str], timeout: float = 120,
        **options) -> subprocess.CompletedProcess:
    """Run one command to completion; stdout and stderr as text. The caller checks the exit code."""
    return subprocess.run(command(data_dir, *args, **options), env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


class Proc:
    """One ``sparring`` process with its stderr captured in ``log_path``."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str], log_path: Path, **options) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - held for the life of the process
        self._offset = self._log.tell()  # this process's part of a shared log file
        self.popen = subprocess.Popen(command(data_dir, *args, **options), env=env, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=self._log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        with open(self.log_path, "rb") as handle:
            handle.seek(self._offset)
            return handle.read().decode("utf-8", "replace")

    def wait_log(self, pattern: str, timeout: float) -> re.Match:
        """Wait for a log line matching ``pattern``; fail early if the process died."""
        regex = re.compile(pattern)

        def seen():
            found = regex.search(self.log())
            if not found and self.popen.poll() is not None:
                raise AssertionError(f"sparring exited ({self.popen.returncode}) before logging "
                                     f"{pattern!r}:\n{self.log()[-2000:]}")
            return found

        return wait_for(seen, timeout, f"log line {pattern!r}")

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            self.popen.send_signal(sig)

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return self.wait(30)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            if self.popen.returncode is not None:
                self._log.close()

    def close(self) -> None:
        """Make sure nothing outlives the test."""
        if self.running():
            self.kill()
        self._log.close()


def on_the_wall(received: datetime, now: datetime) -> float:
    """The mtime that a process started just after this call with ``--now``
    ``now`` reads as ``received``: its clock runs ``now - wall`` ahead of
    the wall clock, so a mail that arrived ``now - received`` before its
    start has a wall-clock mtime that long before the real now. (The
    process starts a moment later, so it reads a second or so earlier.)"""
    return time.time() - (now - received).total_seconds()


def restamp(path: Path, received: datetime, now: datetime) -> None:
    """Give a waiting mail the mtime a process with ``--now now`` reads as ``received``."""
    stamp = on_the_wall(received, now)
    os.utime(path, (stamp, stamp))


def drop_mail(inbox: Path, name: str, raw: bytes, received: datetime | None = None,
              now: datetime | None = None) -> Path:
    """Put a mail in the folder inbox atomically; its mtime is its arrival
    time: ``received`` as it stands (a FixedClock's timeline) or, with
    ``now``, as a process started with ``--now now`` reads it."""
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f".{name}.tmp"
    tmp.write_bytes(raw)
    if received is not None:
        stamp = on_the_wall(received, now) if now is not None else received.timestamp()
        os.utime(tmp, (stamp, stamp))
    final = inbox / f"{name}.eml"
    os.replace(tmp, final)
    return final


def eml_files(folder: Path) -> list[Path]:
    """Finished mails (not hidden temporaries), by name: ``.eml`` in the
    inbox, sealed ``.eml.enc`` once settled, named here as they arrived
    (``.enc`` dropped: the path names the mail, read it with ``mail show``)."""
    if not folder.is_dir():
        return []
    return sorted(folder / p.name.removesuffix(".enc") for p in folder.iterdir()
                  if p.name.endswith((".eml", ".eml.enc")) and not p.name.startswith("."))


def read_mail(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def outbox_kind(data_dir: Path, kind: str) -> list[Path]:
    """Outbox files of one kind (``<stamp>-<kind>-<n>.eml``)."""
    return [p for p in eml_files(data_dir / "outbox") if p.name.split("-")[1] == kind]


def plain_body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return part.get_content() if part is not None else ""
