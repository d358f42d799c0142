"""The house rules of ``scheduler/`` (issue 12 item 9), read from the imports.

Imports point inward: the pure core (``planning/``, ``model.py``, ``cpr.py``) imports
neither an adapter, nor a service, nor an I/O library; the store imports no
use case; and no two modules of the core import each other. Every import
counts, also one inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "scheduler"
CORE = sorted([*(PACKAGE / "planning").glob("*.py"), PACKAGE / "model.py", PACKAGE / "cpr.py"])
ADAPTERS_AND_USES = ("scheduler.mail", "scheduler.store", "scheduler.services", "scheduler.calendars",
                     "scheduler.exchange", "scheduler.graph", "scheduler.wiring", "scheduler.daemon",
                     "scheduler.jobs", "scheduler.cli", "scheduler.commands", "scheduler.render",
                     "scheduler.web")
IO_LIBRARIES = ("os", "io", "socket", "ssl", "subprocess", "pathlib", "shutil", "tempfile", "glob", "time",
                "threading", "multiprocessing", "logging", "email", "smtplib", "imaplib", "http", "urllib",
                "sqlite3", "sqlalchemy", "alembic", "psycopg", "caldav", "exchangelib", "requests",
                "httpx", "msal", "icalendar", "jinja2", "lxml", "apscheduler", "tenacity", "cryptography")


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def imports(path: Path, module: str | None = None) -> set[str]:
    """Every module ``path`` imports, absolute, wherever the import stands."""
    found = set()
    package = (module or module_of(path)).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # from scheduler import jobs
    return found


def offending(path: Path, prefixes: tuple[str, ...], module: str | None = None) -> list[str]:
    return sorted(name for name in imports(path, module)
                  if any(name == p or name.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("path", CORE, ids=module_of)
def test_the_core_imports_no_adapter_no_service_and_no_io(path):
    assert offending(path, ADAPTERS_AND_USES + IO_LIBRARIES) == []


def test_the_store_imports_no_use_case_and_no_adapter():
    for path in sorted((PACKAGE / "store").rglob("*.py")):
        assert offending(path, ("scheduler.services", "scheduler.daemon", "scheduler.jobs", "scheduler.cli",
                                "scheduler.commands", "scheduler.wiring", "scheduler.mail", "scheduler.calendars",
                                "scheduler.exchange", "scheduler.graph")) == [], path


def test_the_services_and_the_store_import_no_web_page():
    """The pages (``scheduler.web``) sit outside, beside the CLI: they call services, never the reverse."""
    for path in sorted([*(PACKAGE / "services").rglob("*.py"), *(PACKAGE / "store").rglob("*.py")]):
        assert offending(path, ("scheduler.web", "starlette", "uvicorn", "pygal")) == [], path


def test_no_two_modules_of_the_core_import_each_other():
    names = {module_of(path): path for path in CORE}
    arrows = {(a, b) for a, path in names.items() for b in names if b != a and b in imports(path)}
    assert sorted((a, b) for a, b in arrows if (b, a) in arrows) == []


def test_the_checks_see_imports_where_they_hide(tmp_path):
    """Imports inside functions, under TYPE_CHECKING and relative ones count."""
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .slots import X\n"
                     "def f():\n    from scheduler.services.booking import B\n    import os.path\n",
                     encoding="utf-8")
    assert offending(probe, ADAPTERS_AND_USES + IO_LIBRARIES, "scheduler.planning.probe") == [
        "os.path", "scheduler.services.booking", "scheduler.services.booking.B"]
    assert "scheduler.planning.slots" in imports(probe, "scheduler.planning.probe")
