"""The Microsoft Graph backend (Exchange Online).

``auth.TokenProvider`` gets app-only tokens through MSAL; ``client.GraphClient``
sends requests with paging, ``$batch`` and throttling; ``mailbox`` holds the
intake source and the transport. Only ``wiring``, the daemon and the CLI name
these classes.
"""
