"""``sparring run --once`` with intake and outbox on Graph, against the fake
Graph server: mails are taken in from the inbox, filed by decision, and
answered through sendMail. (The calendar half is the Graph calendar's.)"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email import message_from_bytes

from scheduler import wiring
from scheduler.cli import main
from scheduler.store.keys import new_key
from tests.appkit import CONFIG, item_mail
from tests.servers.graph import SECRET


def graph_toml(graph_server, tmp_path, *, calendar: str = "local"):
    """config/sparring.toml with the ports on Graph and [graph] pointing at the fake."""
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace('source = "folder"', 'source = "graph"').replace('transport = "folder"', 'transport = "graph"')
    text = text.replace('backend = "local"', f'backend = "{calendar}"')
    head, _, rest = text.partition("[graph]\n")
    section, _, tail = rest.partition("\n[storage]")
    for key, value in graph_server.config().items():
        section = re.sub(rf"^{key} = .*$", f'{key} = "{value}"', section, flags=re.M)
    path = tmp_path / "sparring.toml"
    path.write_text(f"{head}[graph]\n{section}\n[storage]{tail}", encoding="utf-8")
    return path


def test_run_once_takes_in_mail_and_answers_it_through_graph(tmp_path, graph_server, graph, monkeypatch):
    monkeypatch.setattr(wiring, "_graph_clients", {})
    monkeypatch.setenv("SPARRING_GRAPH_SECRET", SECRET)
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    # Received 12:05 local, after Monday's noon deadline: the item goes to the next session.
    graph.deliver(item_mail("150303-4321", "g1"), datetime(2027, 1, 4, 11, 5, tzinfo=timezone.utc))
    graph.deliver(item_mail("300290-1111", "g2", sender="jens@kommune.example"),
                  datetime(2027, 1, 4, 11, 6, tzinfo=timezone.utc))
    config = graph_toml(graph_server, tmp_path)

    code = main(["--config", str(config), "--data-dir", str(tmp_path / "var"), "--now", "2027-01-04T12:30",
                 "run", "--once"])

    assert code == 0
    assert graph.in_folder("inbox") == []
    assert len(graph.in_folder("Behandlet")) == 1 and len(graph.in_folder("Afvist")) == 1
    answered = {message_from_bytes(m.mime)["To"] for m in graph.mailbox().sent}
    assert {"karen@kommune.example", "jens@kommune.example"} <= answered
    assert graph.count("POST", "/sendMail$") == len(graph.mailbox().sent)

    graph.requests.clear()  # a second run: nothing reprocessed, nothing answered twice
    sent = len(graph.mailbox().sent)
    assert main(["--config", str(config), "--data-dir", str(tmp_path / "var"), "--now", "2027-01-04T12:40",
                 "run", "--once"]) == 0
    assert len(graph.mailbox().sent) == sent and graph.count("POST", r"\$batch") == 0


def test_erase_deletes_the_citizens_mails_in_the_graph_mailbox_and_a_throttled_run_can_be_repeated(
        tmp_path, graph_server, graph, monkeypatch, capsys):
    monkeypatch.setattr(wiring, "_graph_clients", {})
    monkeypatch.setenv("SPARRING_GRAPH_SECRET", SECRET)
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    for n, (cpr, mid) in enumerate((("150303-4321", "g1"), ("020304-4002", "g2"), ("150303-4321", "g3"))):
        graph.deliver(item_mail(cpr, mid), datetime(2027, 1, 4, 8, n, tzinfo=timezone.utc))
    config = graph_toml(graph_server, tmp_path)
    cli = ["--config", str(config), "--data-dir", str(tmp_path / "var"), "--now", "2027-01-04T12:30"]
    assert main([*cli, "run", "--once"]) == 0
    ids = lambda: sorted(message_from_bytes(m.mime)["Message-ID"] for m in graph.in_folder("Behandlet"))  # noqa: E731
    assert ids() == ["<g1@kommune.example>", "<g2@kommune.example>", "<g3@kommune.example>"]
    capsys.readouterr()

    graph.fail_next("POST", "/permanentDelete$", 429, retry_after=600)  # longer than the client waits
    assert main([*cli, "erase", "--cpr", "150303-4321", "--json"]) != 0
    error = capsys.readouterr().err
    assert "the mailbox could not be cleaned (Graph mailbox erase failed: HTTP 429" in error
    assert "run the same erase again" in error and "Traceback" not in error

    assert main([*cli, "erase", "--cpr", "150303-4321", "--json"]) == 0
    assert ids() == ["<g2@kommune.example>"], "only the other citizen's mail is left"
    assert graph.in_folder("inbox") == []


def test_the_purge_command_empties_the_graph_mailboxs_settled_folders_after_the_retention(
        tmp_path, graph_server, graph, monkeypatch, capsys):
    monkeypatch.setattr(wiring, "_graph_clients", {})
    monkeypatch.setenv("SPARRING_GRAPH_SECRET", SECRET)
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    graph.deliver(item_mail("150303-4321", "g1"), datetime(2027, 1, 4, 8, 0, tzinfo=timezone.utc))
    graph.deliver(item_mail("300290-1111", "g2"), datetime(2027, 1, 4, 8, 1, tzinfo=timezone.utc))
    config = graph_toml(graph_server, tmp_path)
    cli = ["--config", str(config), "--data-dir", str(tmp_path / "var")]
    assert main([*cli, "--now", "2027-01-04T12:30", "run", "--once"]) == 0
    assert len(graph.in_folder("Behandlet")) == 1 and len(graph.in_folder("Afvist")) == 1

    assert main([*cli, "--now", "2027-01-20T12:00", "purge"]) == 0  # within retention_days = 30
    assert len(graph.in_folder("Behandlet")) == 1 and len(graph.in_folder("Afvist")) == 1
    assert main([*cli, "--now", "2027-03-15T12:00", "purge"]) == 0
    assert graph.in_folder("Behandlet") == [] and graph.in_folder("Afvist") == []
