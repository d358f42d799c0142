"""The daemon under load (issue 5 item 7b): ``python -m bench.daemon``.

Starts Dovecot on 127.0.0.1 and ``sparring run`` as a subprocess on a fresh
data directory, configured for IMAP over STARTTLS with IDLE (the test CA as
``ca_file``, the password from the environment) and the folder outbox, on
the real clock. Then:

(a) latency: 200 mails APPENDed one by one, each timed from the APPEND to
    its receipt appearing in ``<data-dir>/outbox/`` (matched by
    In-Reply-To); p50 and p95 (target p95 under 2 s);
(b) burst: 1,000 mails in one MULTIAPPEND, timed until every one has its
    receipt in the outbox;
(c) idle: the daemon's CPU time (utime + stime from /proc, its parse
    worker's included) over 60 idle seconds, and the RSS of each.

The mails are ``bench.mailgen`` items and rejections (each gets a receipt).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.intake import TZ, bulk_append, starttls_login
from bench.mailgen import GenMail, generate

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "config" / "sparring.toml"
TARGET_P95 = 2.0
_IN_REPLY_TO = re.compile(rb"^In-Reply-To:\s*<([^>\r\n]+)>", re.MULTILINE | re.IGNORECASE)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>\r\n]+)>", re.MULTILINE | re.IGNORECASE)


def daemon_config(server, path: Path) -> Path:
    """The shipped configuration with [intake] on IMAP (STARTTLS, IDLE) at ``server``."""
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace('source = "folder"', 'source = "imap"', 1)
    head, _, rest = text.partition("[intake.imap]\n")
    imap, _, tail = rest.partition("\n[outbox]")
    for key, value in (("port", str(server.imap_port)), ("security", '"starttls"'),
                       ("username", f'"{server.user}"'), ("ca_file", f'"{server.ca_file}"'),
                       ("password_env", '"SPARRING_IMAP_PASSWORD"'), ("idle", "true")):
        imap, count = re.subn(rf"(?m)^{key} = [^#\n]*?(\s*(#.*)?)$", rf"{key} = {value}\1", imap, count=1)
        assert count == 1, key
    path.write_text(head + "[intake.imap]\n" + imap + "\n[outbox]" + tail, encoding="utf-8")
    return path


def answered_mails(count: int, seed: int) -> list[GenMail]:
    """Mails that each get a receipt, dated now: items (a sender's repeat of a
    rejection within the hour is filed without an answer, so rejections would
    not all be answered)."""
    now = datetime.now(TZ)
    mails = [m for m in generate(count * 2, now - timedelta(minutes=30), now, seed) if m.expect == "item"]
    return mails[:count]


def message_id(raw: bytes) -> str:
    return _MESSAGE_ID.search(raw).group(1).decode()


class Outbox:
    """Receipts appearing in the outbox folder, by the Message-ID they answer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: set[str] = set()
        self.answered: dict[str, float] = {}  # Message-ID -> perf_counter when seen

    def poll(self) -> int:
        """Read new files; returns how many appeared."""
        try:
            names = [n for n in os.listdir(self.folder) if n.endswith(".eml") and n not in self.seen]
        except FileNotFoundError:
            return 0
        now = time.perf_counter()
        for name in names:
            self.seen.add(name)
            head = (self.folder / name).read_bytes()[:4000]
            match = _IN_REPLY_TO.search(head)
            if match:
                self.answered.setdefault(match.group(1).decode(), now)
        return len(names)

    def wait_quiet(self, quiet: float = 2.0, limit: float = 120.0) -> None:
        """Until no new file has appeared for ``quiet`` seconds (start-up publishing)."""
        began = last = time.monotonic()
        while time.monotonic() - last < quiet and time.monotonic() - began < limit:
            if self.poll():
                last = time.monotonic()
            time.sleep(0.05)


def start_daemon(config: Path, data_dir: Path, password: str) -> tuple[subprocess.Popen, Path]:
    from scheduler.store.keys import new_key

    env = {**os.environ, "SPARRING_SECRET_KEY": new_key(), "SPARRING_IMAP_PASSWORD": password}
    env.pop("SPARRING_NOW", None)
    log = data_dir.parent / "daemon.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "--config", str(config), "--data-dir", str(data_dir),
             "run", "--log-level", "INFO"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 60
    while b"running holder=" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"sparring run did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    return process, log


def latency(server, outbox: Outbox, mails: list[GenMail], budget: float, timeout: float = 30.0) -> list[float]:
    """Seconds from APPEND to receipt per mail; stops early when ``budget`` seconds are spent."""
    conn = starttls_login(server, server.tls.client_context())
    out: list[float] = []
    start = time.perf_counter()
    for mail in mails:
        if time.perf_counter() - start > budget:
            break
        wanted = message_id(mail.raw)
        began = time.perf_counter()
        typ, data = conn.append("INBOX", None, None, mail.raw)
        assert typ == "OK", data
        while wanted not in outbox.answered:
            if time.perf_counter() - began > timeout:
                raise SystemExit(f"no receipt after {timeout:.0f} s for mail {len(out) + 1}")
            outbox.poll()
            time.sleep(0.002)
        out.append(outbox.answered[wanted] - began)
    conn.logout()
    return out


def burst(server, outbox: Outbox, mails: list[GenMail], timeout: float) -> tuple[int, float]:
    """(mails answered, seconds until the last of them): all of them unless ``timeout`` passed first."""
    began = time.perf_counter()
    now = datetime.now(TZ)
    bulk_append(server, [GenMail(m.raw, now, m.expect, m.variant, m.form) for m in mails], batch=len(mails))
    done = drain(outbox, {message_id(m.raw) for m in mails}, began + timeout)
    return len(done), (max(done) - began if done else timeout)


def drain(outbox: Outbox, wanted: set[str], deadline: float) -> list[float]:
    """When each wanted receipt appeared (perf_counter), polling until all did or ``deadline``."""
    while not wanted <= outbox.answered.keys() and time.perf_counter() < deadline:
        outbox.poll()
        time.sleep(0.01)
    return [outbox.answered[w] for w in wanted if w in outbox.answered]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024


def children(pid: int) -> list[int]:
    """The daemon's child processes (its parse worker), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--one-by-one", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=60.0, help="idle seconds measured")
    parser.add_argument("--budget", type=float, default=90.0, help="at most this many seconds for (a)")
    parser.add_argument("--burst-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    from tests.servers import stop_process
    from tests.servers.dovecot import dovecot_server

    with dovecot_server() as server, tempfile.TemporaryDirectory(prefix="sparring-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        config = daemon_config(server, Path(tmp) / "sparring.toml")
        began = time.perf_counter()
        process, log = start_daemon(config, data_dir, server.password)
        try:
            outbox = Outbox(data_dir / "outbox")
            outbox.wait_quiet()
            print(f"daemon: sparring run (pid {process.pid}) on IMAP STARTTLS + IDLE, folder outbox; "
                  f"started and published in {time.perf_counter() - began:.1f} s "
                  f"({len(outbox.seen)} files in the outbox)")
            times = latency(server, outbox, answered_mails(args.one_by_one, 11), args.budget)
            p50, p95 = statistics.median(times), percentile(times, 0.95)
            verdict = "met" if p95 < TARGET_P95 else "MISSED"
            cut = "" if len(times) == args.one_by_one else f" (stopped after the {args.budget:.0f} s budget)"
            print(f"(a) APPEND -> receipt in the outbox, {len(times)} mails one by one{cut}: "
                  f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
                  f"(target p95 < 2 s: {verdict})")
            burst_mails = answered_mails(args.burst, 12)
            began_burst = time.perf_counter()
            answered, seconds = burst(server, outbox, burst_mails, args.burst_timeout)
            what = "all answered" if answered == args.burst else f"only {answered} answered (timeout)"
            print(f"(b) burst of {args.burst} mails in one MULTIAPPEND: {what} in {seconds:.1f} s "
                  f"({answered / seconds:.0f} mails/s)")
            if answered < args.burst:  # let the backlog drain, so that (c) measures idling
                wanted = {message_id(m.raw) for m in burst_mails}
                done = drain(outbox, wanted, time.perf_counter() + 2 * args.burst_timeout)
                print(f"    after draining: {len(done)} answered, the last {max(done) - began_burst:.0f} s "
                      "after the APPEND" if done else "    after draining: none answered")
            outbox.wait_quiet()
            pids = [process.pid, *children(process.pid)]
            cpu0, t0 = sum(map(cpu_seconds, pids)), time.monotonic()
            time.sleep(args.idle)  # the measurement window itself, not an assertion
            cpu = sum(map(cpu_seconds, pids)) - cpu0
            wall = time.monotonic() - t0
            worker = "".join(f" + parse worker {rss_mb(pid):.0f} MB" for pid in pids[1:])
            print(f"(c) idle {wall:.0f} s: CPU {cpu:.2f} s ({cpu / wall:.2%} of one core, with its children); "
                  f"RSS {rss_mb(process.pid):.0f} MB{worker}")
            folders = server.folders()
            print("folders: " + ", ".join(f"{k} {v}" for k, v in sorted(folders.items())))
        finally:
            stop_process(process, timeout=30)
        errors = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
        for line in errors[:5]:
            print(f"daemon log: {line[:200]}")
        print(f"daemon exit code {process.returncode}; {len(errors)} error lines in its log")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
