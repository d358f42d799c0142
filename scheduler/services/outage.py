"""One log line when a condition begins and one when it ends, not one per retry.

A full disk or an unreachable database makes every round fail the same
way until it is mended; the administrator needs to read that once, with
what is at stake ("nothing is lost, it waits"), and once more when it is
over, not a line every few seconds.
"""

from __future__ import annotations

import logging
import threading


class Episode:
    """A condition that is either on or off; logs only the changes."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self._active: str | None = None  # the line that began it
        self._lock = threading.Lock()  # the intake loop and the scheduler's thread share it

    @property
    def active(self) -> bool:
        return self._active is not None

    def begin(self, line: str) -> bool:
        """Log ``line`` as an error unless this episode is already on; True if it began now."""
        with self._lock:
            if self._active is not None:
                return False
            self._active = line
        self.log.error(line)
        return True

    def end(self, line: str) -> bool:
        """Log ``line`` if the episode was on; True if it ended now."""
        with self._lock:
            if self._active is None:
                return False
            self._active = None
        self.log.warning(line)
        return True
