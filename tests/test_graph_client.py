"""The Graph client and its token against the fake Graph server over HTTPS:
one token for many requests, Retry-After waited (not hammered), an expired
token renewed once, paging, $batch, and errors as one sentence."""

from __future__ import annotations

import pytest

from scheduler.config import GraphConfig
from scheduler.errors import ConfigError
from scheduler.graph.auth import TokenProvider
from scheduler.graph.client import GraphClient, GraphError
from scheduler.ports import PermanentError, TransientError
from tests.servers.graph import MAILBOX, SECRET, client_certificate

INBOX = f"/users/{MAILBOX}/mailFolders/inbox"


class Sleeps(list):
    """A fake sleep: records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def provider(graph_server, **overrides) -> TokenProvider:
    return TokenProvider(GraphConfig(**graph_server.config(**overrides)), environ={"SPARRING_GRAPH_SECRET": SECRET})


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def client(graph_server, graph, sleeps):
    return GraphClient(graph.endpoint, provider(graph_server), ca_file=graph_server.ca_file, sleep=sleeps,
                       mailbox=MAILBOX)


def test_one_token_serves_many_requests(client, graph):
    for _ in range(5):
        assert client.get_json(INBOX)["displayName"] == "Indbakke"
    assert len(graph.token_requests) == 1
    assert graph.token_requests[0]["scope"] == f"{graph.base}/.default"
    assert client.requests_made == 5


def test_certificate_credential_signs_an_assertion_entra_checks(graph_server, graph, tmp_path):
    path, graph.certificate = client_certificate(tmp_path)
    tokens = TokenProvider(GraphConfig(**graph_server.config(certificate_file=path)), environ={})
    client = GraphClient(graph.endpoint, tokens, ca_file=graph_server.ca_file)
    assert client.get_json(INBOX)["id"]
    [form] = graph.token_requests
    assert "client_secret" not in form and form["client_assertion_type"].endswith("jwt-bearer")


def test_retry_after_is_waited_not_hammered(client, graph, sleeps):
    graph.fail_next("GET", "/mailFolders/inbox$", 429, retry_after=7, times=2)
    assert client.get_json(INBOX)["id"]
    assert sleeps == [7.0, 7.0]
    assert graph.count("GET", "/mailFolders/inbox$") == 3


def test_busy_without_retry_after_backs_off_exponentially(client, graph, sleeps):
    graph.fail_next("GET", "/mailFolders/inbox$", 503, times=3)
    client.get_json(INBOX)
    assert sleeps == [1.0, 2.0, 4.0]


def test_throttling_beyond_the_attempts_is_transient_with_the_wait(client, graph, sleeps):
    graph.fail_next("GET", "/mailFolders/inbox$", 429, retry_after=3, times=10)
    with pytest.raises(TransientError) as caught:
        client.get_json(INBOX, what="mailbox fetch")
    assert caught.value.retry_after == 3.0 and len(sleeps) == client.max_attempts - 1
    assert "mailbox fetch" in str(caught.value)


def test_a_long_retry_after_goes_to_the_caller_unslept(client, graph, sleeps):
    graph.fail_next("GET", "/mailFolders/inbox$", 429, retry_after=600)
    with pytest.raises(TransientError) as caught:
        client.get_json(INBOX)
    assert caught.value.retry_after == 600.0 and sleeps == []


def test_an_expired_token_is_renewed_once_and_the_request_repeated(client, graph):
    client.get_json(INBOX)
    graph.expire_tokens()
    assert client.get_json(INBOX)["id"]
    assert len(graph.token_requests) == 2
    assert graph.count("GET", "/mailFolders/inbox$") == 3


def test_a_token_refused_after_renewal_is_permanent_not_a_loop(client, graph):
    graph.fail_next("GET", "/mailFolders/inbox$", 401, times=5)
    with pytest.raises(GraphError) as caught:
        client.get_json(INBOX)
    assert caught.value.status == 401
    assert graph.count("GET", "/mailFolders/inbox$") == 2 and len(graph.token_requests) == 2


def test_paging_follows_next_links(client, graph):
    box = graph.mailbox()
    inbox = box.folder("inbox")
    for n in range(25):
        box._add_folder("", f"Mappe {n}", inbox.id)
    names = [f["displayName"] for f in client.paged(INBOX + "/childFolders", {"$top": "10"})]
    assert names == [f"Mappe {n}" for n in range(25)]
    assert graph.count("GET", "/childFolders$") == 3


def test_batch_splits_at_twenty_and_retries_a_throttled_member(client, graph, sleeps):
    graph.fail_next("GET", "/mailFolders/drafts$", 429, retry_after=2)
    urls = [f"/users/{MAILBOX}/mailFolders/{name}" for name in ["inbox"] * 44 + ["drafts"]]
    answers = client.batch([{"method": "GET", "url": u} for u in urls])
    assert [a["status"] for a in answers] == [200] * 45
    assert answers[-1]["body"]["displayName"] == "Kladder"
    assert graph.count("POST", r"^/\$batch$") == 4  # 20 + 20 + 5, then the throttled one again
    assert sleeps == [2.0]


def test_forbidden_names_the_permission_and_the_mailbox_never_the_server_text(client, graph):
    graph.permissions.discard("Mail.ReadWrite")
    with pytest.raises(PermanentError) as caught:
        client.get_json(INBOX, what="mailbox fetch", permission="Mail.ReadWrite")
    text = str(caught.value)
    assert "Mail.ReadWrite" in text and MAILBOX in text and "admin consent" in text
    assert "Access is denied" not in text


def test_wrong_secret_is_one_sentence_naming_the_variable(graph_server, graph):
    tokens = TokenProvider(GraphConfig(**graph_server.config()), environ={"SPARRING_GRAPH_SECRET": "forkert"})
    with pytest.raises(PermanentError, match="AADSTS7000215.*SPARRING_GRAPH_SECRET"):
        tokens.token()


def test_wrong_tenant_and_missing_secret_are_config_errors(graph_server, graph):
    with pytest.raises(ConfigError, match="tenant"):
        provider(graph_server, tenant_id="ukendt-tenant").token()
    with pytest.raises(ConfigError, match="SPARRING_GRAPH_SECRET"):
        TokenProvider(GraphConfig(**graph_server.config()), environ={})


def test_without_the_ca_the_certificate_is_refused(graph_server, graph):
    tokens = provider(graph_server, ca_file="")
    with pytest.raises(PermanentError, match="TLS certificate"):
        tokens.token()


def test_plaintext_only_to_loopback_and_links_only_to_the_endpoint(client):
    with pytest.raises(ConfigError, match="plain http"):
        GraphClient("http://graph.kommune.example/v1.0", client.tokens)
    GraphClient("http://127.0.0.1:1/v1.0", client.tokens)
    with pytest.raises(PermanentError, match="another host"):
        client.get_json("https://evil.example/v1.0/users")


def test_wiring_builds_one_client_per_process_for_all_ports(graph_server, graph, monkeypatch):
    from scheduler.config import Config
    from scheduler.wiring import graph_client

    monkeypatch.setenv("SPARRING_GRAPH_SECRET", SECRET)
    config = Config.model_validate({
        "intake": {"source": "graph"}, "outbox": {"transport": "graph"}, "calendar": {"backend": "graph"},
        "graph": graph_server.config(), "series": [{
            "id": "unge", "name": "Unge", "min_age": 15, "cadence": "weekly", "weekday": "thursday",
            "start": "09:00", "duration": 60, "deadline": {"days_before": 3}, "coordinators": [MAILBOX]}]})
    first = graph_client(config)
    assert graph_client(config) is first and first.mailbox == MAILBOX
    assert first.get_json(INBOX)["id"] and graph_client(config).get_json(INBOX)["id"]
    assert len(graph.token_requests) == 1
