"""``sparring check-connection``: one read-only call per configured backend,
one line each, exit 0 only when all are OK; a missing Graph permission is
named in one sentence."""

from __future__ import annotations

import tomllib
from types import SimpleNamespace

import pytest

from scheduler.cli import main
from scheduler.commands import cmd_check_connection
from scheduler.config import Config
from tests.appkit import CONFIG
from tests.servers.graph import SECRET


def config(**sections) -> Config:
    raw = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return Config.model_validate(raw)


def run(cfg: Config, tmp_path, capsys) -> tuple[int, list[str]]:
    code = cmd_check_connection(SimpleNamespace(config=cfg, data_dir=tmp_path))
    return code, capsys.readouterr().out.splitlines()


def test_the_folders_are_ok_through_the_cli(tmp_path, capsys):
    code = main(["--config", str(CONFIG), "--data-dir", str(tmp_path), "check-connection"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split(":")[0] for line in lines] == ["intake folder", "outbox folder", "calendar local"]
    assert all(": OK (" in line for line in lines)


def test_imap_smtp_and_caldav_each_get_a_line(tmp_path, capsys, monkeypatch, imap_mailbox, smtp, radicale_server):
    monkeypatch.setenv("SPARRING_IMAP_PASSWORD", imap_mailbox.password)
    monkeypatch.setenv("SPARRING_SMTP_PASSWORD", smtp.password)
    monkeypatch.setenv("SPARRING_CALDAV_PASSWORD", "x")
    imap = {"source": "imap", "imap": {"host": imap_mailbox.host, "port": imap_mailbox.imap_port,
                                        "security": "starttls", "username": imap_mailbox.user,
                                        "ca_file": imap_mailbox.ca_file, "idle": False}}
    outbox = {"transport": "smtp", "smtp": {"host": smtp.host, "port": smtp.port, "username": smtp.user,
                                            "ca_file": smtp.ca_file}}
    calendar = {"backend": "caldav", "caldav": {"url": radicale_server, "username": "sparring"}}
    code, lines = run(config(intake=imap, outbox=outbox, calendar=calendar), tmp_path, capsys)
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == ["intake imap", "outbox smtp", "calendar caldav"]
    assert smtp.messages == []  # nothing was sent

    monkeypatch.setenv("SPARRING_IMAP_PASSWORD", "forkert")
    code, lines = run(config(intake=imap, outbox=outbox, calendar=calendar), tmp_path, capsys)
    assert code == 4
    assert lines[0].startswith("intake imap: ") and "refused the login" in lines[0] and "check" in lines[0]
    assert lines[1].startswith("outbox smtp: OK") and lines[2].startswith("calendar caldav: OK")


def test_exchange_is_one_line_for_the_ports_it_serves(tmp_path, capsys, monkeypatch, ews, ews_server):
    from exchangelib.protocol import Protocol

    Protocol.clear_cache()
    monkeypatch.setenv("SPARRING_EWS_PASSWORD", ews.password)
    ews_section = {"service_endpoint": ews_server.url, "mailbox": "sparring@kommune.example",
                   "username": ews.user, "auth": "basic"}
    code, lines = run(config(intake={"source": "exchange"}, calendar={"backend": "exchange"},
                             exchange=ews_section), tmp_path, capsys)
    assert code == 0, lines
    assert lines == [lines[0], f"exchange (intake, calendar): OK ({ews_server.url}, mailbox sparring@kommune.example)"]
    assert {op for op, _ in ews.requests} <= {"GetFolder", "ConvertId"}  # ConvertId: exchangelib's version guess


@pytest.fixture
def graph_config(graph_server, graph, monkeypatch):
    monkeypatch.setenv("SPARRING_GRAPH_SECRET", SECRET)
    return config(intake={"source": "graph"}, outbox={"transport": "graph"}, calendar={"backend": "graph"},
                  graph=graph_server.config())


def test_graph_signs_in_and_reads_the_inbox_and_the_calendar(graph_config, graph, tmp_path, capsys):
    code, lines = run(graph_config, tmp_path, capsys)
    assert code == 0, lines
    assert lines == ["graph (intake, outbox, calendar): OK (sparring@kommune.example: signed in, inbox readable, "
                     "calendar readable, Mail.Send is tried by the first mail)"]
    assert {(r.method, r.path.rsplit("/", 1)[-1]) for r in graph.requests} == {("GET", "inbox"), ("GET", "calendar")}


def test_a_missing_graph_permission_is_named_in_one_sentence(graph_config, graph, tmp_path, capsys):
    graph.permissions.discard("Mail.ReadWrite")
    code, [line] = run(graph_config, tmp_path, capsys)
    assert code == 4
    assert line.startswith("graph (intake, outbox, calendar): Graph check of the inbox failed: HTTP 403")
    assert "grant the application permission Mail.ReadWrite with admin consent" in line
    assert line.count(". ") == 0 and line.endswith(".")


def test_a_wrong_graph_secret_names_the_variable(graph_config, graph, tmp_path, capsys, monkeypatch):
    from scheduler import wiring

    monkeypatch.setattr(wiring, "_graph_clients", {})
    monkeypatch.setenv("SPARRING_GRAPH_SECRET", "forkert")
    code, [line] = run(graph_config, tmp_path, capsys)
    assert code == 4 and "AADSTS7000215" in line and "SPARRING_GRAPH_SECRET" in line
