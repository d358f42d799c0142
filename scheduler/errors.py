"""Errors a user can cause. Each carries one sentence: what, and where.

The CLI prints ``str(error)`` on stderr and exits with ``exit_code``;
no traceback reaches the user for these.
"""


class UserError(Exception):
    """A problem the user can fix; the message is one complete sentence."""

    exit_code = 1


class ConfigError(UserError):
    """The configuration file is missing, malformed or invalid."""

    exit_code = 2


class KeyMissingError(UserError):
    """No encryption key: sparring refuses to touch personal data without one."""

    exit_code = 2


class BackendUnavailable(UserError):
    """A server (IMAP, SMTP, CalDAV, Exchange, database) could not be reached."""

    exit_code = 4
