"""``sparring serve`` and ``run`` with ``[web] enabled`` as real processes on free ports.

The pages answer over HTTP, a port in use is one sentence and a non-zero
exit, SIGTERM stops both cleanly; ``web-passwd`` makes a hash that checks.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from scheduler.web.auth import check_password
from tests.daemonkit import CONFIG, CPR_LIKE, ROOT, Proc, cli, environment, wait_for

pytestmark = pytest.mark.servers
NOW = "2027-01-04T08:00"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode("utf-8")
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode("utf-8")


def answering(url: str):
    def probe():
        try:
            return get(url)
        except (urllib.error.URLError, ConnectionError):
            return None
    return probe


def test_serve_answers_the_pages_refuses_a_port_in_use_and_stops_on_sigterm(tmp_path):
    data, env, port = tmp_path / "var", environment(None), free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(data, "serve", "--listen", f"127.0.0.1:{port}", env=env, log_path=tmp_path / "serve.log",
                demo=True, now=NOW)
    try:
        status, page = wait_for(answering(base + "/"), 60, "the overview over HTTP")
        assert status == 200 and '<html lang="da">' in page and "Overblik" in page
        status, page = get(base + "/statistik?period=2027-Q1&lang=en")
        assert status == 200 and 'id="statistics"' in page and "<svg" in page
        assert get(base + "/statistik?period=2027-Q9")[0] == 400
        assert get(base + "/healthz")[0] == 503  # no daemon has run on this database
        assert get(base + "/metrics")[0] == 200
        assert get(base + "/static/sparring.css")[0] == 200

        second = cli(data, "serve", "--listen", f"127.0.0.1:{port}", env=env, demo=True, now=NOW, timeout=60)
        assert second.returncode != 0
        assert second.stderr.strip().splitlines()[-1] == (
            f"sparring: web listen: 127.0.0.1:{port} is already in use by another program; stop it or "
            "choose another address with --listen or [web] listen.")

        proc.signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.close()
    log = proc.log()
    assert re.search(r'GET /statistik HTTP/1.1\\" 200', log), log[-2000:]  # the path, not its query
    assert "period=" not in log and not CPR_LIKE.search(log)


def test_run_with_web_enabled_serves_in_the_daemon_and_stops_with_it(tmp_path):
    port = free_port()
    config = tmp_path / "sparring.toml"
    config.write_text(CONFIG.read_text(encoding="utf-8").replace(
        "enabled = false                     # true: `sparring run`", "enabled = true  #", 1).replace(
        'listen = "127.0.0.1:8765"', f'listen = "127.0.0.1:{port}"', 1), encoding="utf-8")
    proc = Proc(tmp_path / "var", "run", env=environment(None), log_path=tmp_path / "run.log", demo=True,
                now=NOW, config=config)
    try:
        proc.wait_log(r'msg="running holder=', 60)
        status, page = wait_for(answering(f"http://127.0.0.1:{port}/"), 30, "the overview from the daemon")
        assert status == 200 and "kører i denne proces" in page
        assert wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200 or None, 30, "healthz ok")
        proc.signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.close()
    assert 'logger=sparring.daemon msg="stopped"' in proc.log() and "Finished server process" in proc.log()


def test_web_passwd_reads_the_password_from_stdin_and_prints_a_hash(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scheduler.cli", "web-passwd", "karen"], input="hemmeligt\n",
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    name, _, stored = done.stdout.strip().partition(":")
    assert name == "karen" and check_password("hemmeligt", stored) and "hemmeligt" not in done.stdout
    empty = subprocess.run([sys.executable, "-m", "scheduler.cli", "web-passwd", "karen"], input="",
                           capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert empty.returncode == 1 and empty.stderr == "sparring: web-passwd: no password was given on standard input.\n"
