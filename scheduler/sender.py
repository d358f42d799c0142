"""The outbox's own thread in ``sparring run``: sending apart from intake.

A mail server that stalls or fails holds up only this thread: the intake
loop goes on taking in and deciding mail (its receipts wait here), and the
scheduler's jobs only wake it. Each round sends what is due; then it
sleeps until the earliest entry's own back-off time (``next_attempt_at``),
or until woken by new work, so a retry is made when its back-off ends, not
at the next run of a periodic job.

``stalled`` tells the daemon's watchdog feeder that a round has made no
progress (no attempt finished) for too long: with socket timeouts on
every adapter that means a hang, and systemd should restart the service.
"""

from __future__ import annotations

import logging
import threading
import time

from scheduler.faults import describe
from scheduler.services import metrics
from scheduler.services.dispatch import next_due
from scheduler.services.outage import Episode

log = logging.getLogger("sparring.outbox")

IDLE = 30.0  # seconds: the longest sleep with nothing due (a safety net; new work wakes it)
AFTER_ERROR = 5.0  # seconds before trying again when a round itself failed (the database away)


class Sender:
    def __init__(self, app, dispatcher, stopping: threading.Event) -> None:
        self.app, self.dispatcher, self.stopping = app, dispatcher, stopping
        self._wake = threading.Event()
        self._busy = False
        self._moved = time.monotonic()  # the last sign of progress
        self._failing = Episode(log)  # a round that fails (the database away): logged once, not every 5 s
        dispatcher.progress = self._progressed
        self._thread = threading.Thread(target=self._run, name="sparring-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New work was queued: send it now."""
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._wake.set()
        self._thread.join(timeout)

    def stalled(self, limit: float) -> float | None:
        """Seconds without progress inside a round, if more than ``limit``."""
        idle = time.monotonic() - self._moved
        return idle if self._busy and idle > limit else None

    def _progressed(self) -> None:
        self._moved = time.monotonic()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._wake.clear()
            pause = self._round()
            self._wake.wait(pause)

    def _round(self) -> float:
        """Send what is due; the seconds until the next entry is."""
        self._moved, self._busy = time.monotonic(), True
        try:
            while not self.stopping.is_set() and self.dispatcher.run_once().sent:
                metrics.heartbeat(self.app, "sender")  # a long round is alive too
            due = next_due(self.app)
            metrics.heartbeat(self.app, "sender")
        except Exception as exc:  # the database away, or a bug: logged once, tried again soon
            self._failing.begin(f"outbox rounds failing; nothing is lost, they are tried again every "
                                f"{AFTER_ERROR:.0f} s error={describe(exc)}")
            return AFTER_ERROR
        finally:
            self._busy = False
        self._failing.end("outbox rounds work again")
        if due is None:
            return IDLE
        return min(IDLE, max(0.05, (due - self.app.now()).total_seconds()))
