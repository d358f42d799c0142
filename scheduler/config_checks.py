"""Rules across keys that pydantic's per-field checks do not see: transport
security. Applied by ``load_config``, so ``check-config`` refuses exactly
what ``run`` would refuse, and nothing is refused only once a server is
contacted. Each problem is one sentence naming the file, line and key.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from scheduler.tls import http_url_problem, plaintext_allowed, postgres_url_problem, security_problem


def security_problems(config) -> Iterator[tuple[tuple[str, ...], str]]:
    """(key path, what is wrong) for every setting that would send data or
    credentials unencrypted or to an unchecked server."""
    for loc, section in ((("intake", "imap"), config.intake.imap), (("outbox", "smtp"), config.outbox.smtp)):
        problem = security_problem(section.host, section.security)
        if problem:
            yield (*loc, "security"), problem
    for loc, url in ((("calendar", "caldav", "url"), config.calendar.caldav.url),
                     (("exchange", "service_endpoint"), config.exchange.service_endpoint),
                     (("graph", "authority"), config.graph.authority),
                     (("graph", "endpoint"), config.graph.endpoint)):
        problem = http_url_problem(url) if url.strip() else None
        if problem:
            yield loc, problem
    endpoint = urlsplit(config.exchange.service_endpoint.strip()).hostname or ""
    if not config.exchange.verify_tls and not plaintext_allowed(endpoint):
        yield ("exchange", "verify_tls"), (
            "false is not allowed: the server's certificate must be checked; "
            "name a private CA with exchange.ca_file instead")
    problem = postgres_url_problem(config.storage.url) if config.storage.url.strip() else None
    if problem:
        yield ("storage", "url"), problem
