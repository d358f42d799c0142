"""Parsing on a second core while the first decides.

Parsing is pure CPU work and about a third of intake's time; decisions are
taken one by one, in arrival order, in one transaction. So a large batch is
pipelined: the caller parses the first chunk itself while a worker process
parses the next, and from then on the worker parses chunk k+1 while the
caller decides chunk k.

The worker (``python -m scheduler.mail.parse_worker``) is a plain child
process on two pipes, not a ``multiprocessing`` pool: that would fork a
threaded daemon or, spawned, import the parent's main script again. It sees
only raw mail bytes, writes and logs nothing (its stderr is closed), and
keeps nothing between chunks. Exactly one chunk is in flight, sent only
when the worker waits to read, so the pipes cannot deadlock. Should the
worker die, hang or fail to start, the caller parses the rest itself, logs
the class of the error, and starts a new worker for the next batch.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import subprocess
import sys
from collections.abc import Iterator, Sequence

from scheduler.mail.parse import ParsedMail, parse_mail

log = logging.getLogger("sparring.intake")

Parsed = ParsedMail | Exception
_HEADER = 8  # bytes of a frame's length, big-endian


class ParseFailed(Exception):
    """``parse_mail`` raised in the worker. Only the exception's class name
    crosses back (a message could quote the mail)."""


class WorkerLost(Exception):
    """The worker died, hung or answered nonsense."""


def parse_one(raw: bytes, max_bytes: int) -> Parsed:
    """A mail's parse, or the exception it raised: a failure is that mail's alone."""
    try:
        return parse_mail(raw, max_bytes=max_bytes)
    except Exception as exc:
        return exc


def parse_chunk(raws: Sequence[bytes], max_bytes: int) -> list[Parsed]:
    """What the worker runs: exceptions are replaced by ``ParseFailed``."""
    out: list[Parsed] = []
    for raw in raws:
        parsed = parse_one(raw, max_bytes)
        out.append(ParseFailed(type(parsed).__name__) if isinstance(parsed, Exception) else parsed)
    return out


def write_frame(stream, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(_HEADER, "big") + data)
    stream.flush()


def read_exactly(stream, size: int) -> bytes:
    """``size`` bytes from a pipe, which may hand them over in pieces."""
    parts, wanted = [], size
    while wanted:
        data = stream.read(wanted)
        if not data:
            raise EOFError("the pipe closed mid-frame")
        parts.append(data)
        wanted -= len(data)
    return b"".join(parts)


class ParallelParser:
    """Parses batches in chunks, with a worker process when ``workers`` > 0.

    A batch under ``min_batch`` mails is parsed in the caller: for a few
    mails the worker's round trips cost more than they save. ``timeout`` is
    how long a chunk may take in the worker before it counts as hung.
    """

    def __init__(self, max_bytes: int, workers: int = 1, chunk: int = 25, min_batch: int = 100,
                 timeout: float = 60.0) -> None:
        self.max_bytes = max_bytes
        self.workers = workers
        self.chunk = chunk
        self.min_batch = max(min_batch, 2 * chunk)
        self.timeout = timeout
        self._worker: subprocess.Popen | None = None

    def chunks(self, raws: Sequence[bytes]) -> Iterator[list[Parsed]]:
        """The batch's parses in order, a chunk at a time."""
        pieces = [raws[i:i + self.chunk] for i in range(0, len(raws), self.chunk)]
        away = self.workers > 0 and len(raws) >= self.min_batch and self._send(pieces, 1)
        for index, piece in enumerate(pieces):
            if index == 0 or not away:
                yield self._here(piece)
                continue
            parsed = self._receive(len(piece))
            away = parsed is not None and self._send(pieces, index + 1)
            yield parsed if parsed is not None else self._here(piece)

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stdin.close()  # the worker's cue to exit
            try:
                worker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            worker.stdout.close()

    # -- the caller's side of the pipes --------------------------------------

    def _here(self, piece: Sequence[bytes]) -> list[Parsed]:
        return [parse_one(raw, self.max_bytes) for raw in piece]

    def _send(self, pieces: list, index: int) -> bool:
        """Hand chunk ``index`` to the worker; False if there is none or it is gone."""
        if index >= len(pieces):
            return False
        try:
            write_frame(self._running().stdin, (self.max_bytes, list(pieces[index])))
        except (OSError, ValueError) as exc:
            self._lost(exc)
            return False
        return True

    def _receive(self, count: int) -> list[Parsed] | None:
        """The chunk in flight, parsed; None if the worker was lost."""
        worker = self._worker
        try:
            if worker is None:
                raise WorkerLost("no worker")
            ready, _, _ = select.select([worker.stdout], [], [], self.timeout)
            if not ready:
                raise WorkerLost("a chunk took longer than the timeout")
            size = int.from_bytes(read_exactly(worker.stdout, _HEADER), "big")
            parsed = pickle.loads(read_exactly(worker.stdout, size))
            if not isinstance(parsed, list) or len(parsed) != count:
                raise WorkerLost("an answer of the wrong length")
            return parsed
        except (OSError, EOFError, ValueError, pickle.UnpicklingError, WorkerLost) as exc:
            self._lost(exc)
            return None

    def _running(self) -> subprocess.Popen:
        if self._worker is None or self._worker.poll() is not None:
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "scheduler.mail.parse_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                bufsize=0,  # raw pipes: ``select`` sees every byte that waits
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
                close_fds=True,
            )
        return self._worker

    def _lost(self, exc: BaseException) -> None:
        log.warning("intake: parse worker lost, parsing in the daemon error=%s", type(exc).__name__)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()
            worker.wait()
            for pipe in (worker.stdin, worker.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
