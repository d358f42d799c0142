"""Real servers the tests start on 127.0.0.1, as pytest fixtures.

One module per server (dovecot, smtp, postgres, radicale, ews, graph); each is
registered as a pytest plugin in ``tests/conftest.py``. A fixture that
cannot start its server on this machine skips with the reason under a
developer's run, and fails under CI (env CI=true), so a missing install
step is never hidden.
"""

import os
import subprocess

import pytest


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: CI must have every server."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"test server unavailable in CI: {reason}")
    pytest.skip(reason)


def stop_process(process, timeout: float = 10) -> None:
    """Terminate a server started by the tests; kill it if it will not go."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
