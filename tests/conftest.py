"""Shared test set-up. Server fixtures live in tests/servers/, one per server."""

pytest_plugins = [
    "tests.servers.dovecot",
    "tests.servers.smtp",
    "tests.servers.postgres",
    "tests.servers.radicale",
    "tests.servers.ews",
    "tests.servers.graph",
    "tests.servers.graph_calendar",
    "tests.servers.faults",
]
