"""Parsing on a second core while the first decides.

Parsing is pure CPU work and about a third of intake's time; decisions are
taken one by one, in arrival order, in one transaction. So a large batch is
pipelined: the caller parses the first chunk itself while a worker process
parses the next ones, and from then on the worker parses ahead while the
caller decides.

The worker (``python -m scheduler.mail.parse_worker``) is a plain child
process on two pipes, not a ``multiprocessing`` pool: that would fork a
threaded daemon or, spawned, import the parent's main script again. It sees
only raw mail bytes, gets none of the daemon's secrets (its environment is
cut down to what Python needs), writes and logs nothing (its stderr is
closed), and keeps nothing between chunks. A few chunks are handed over
ahead of their turn, so that the worker never idles while the caller
decides; a writer thread sends them, so that neither side can block the
other on a full pipe. Should the worker die, hang or fail to start, the caller parses the
rest itself, logs the class of the error, and starts a new worker for the
next batch.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import select
import subprocess
import sys
import threading
import time
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


def frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "big") + data


def write_frame(stream, obj: object) -> None:
    stream.write(frame(obj))
    stream.flush()


def read_exactly(stream, size: int, deadline: float | None = None) -> bytes:
    """``size`` bytes from a pipe, which may hand them over in pieces; with a
    ``deadline`` (monotonic), ``WorkerLost`` when it passes first: a worker
    that stalls halfway through an answer must not stall the daemon."""
    parts, wanted = [], size
    while wanted:
        if deadline is not None and not select.select([stream], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise WorkerLost("a chunk took longer than the timeout")
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
                 timeout: float = 60.0, ahead: int = 3) -> None:
        self.max_bytes = max_bytes
        self.workers = workers
        self.chunk = chunk
        self.ahead = ahead  # chunks handed to the worker before their turn
        self.min_batch = max(min_batch, 2 * chunk)
        self.timeout = timeout
        self._worker: subprocess.Popen | None = None

    def takes(self, count: int) -> bool:
        """Whether a batch of ``count`` mails goes to the worker."""
        return self.workers > 0 and count >= self.min_batch

    def chunks(self, raws: Sequence[bytes]) -> Iterator[list[Parsed]]:
        """The batch's parses in order, a chunk at a time."""
        pieces = [raws[i:i + self.chunk] for i in range(0, len(raws), self.chunk)]
        sent = 0  # pieces 1..sent are with the worker
        if self.takes(len(raws)):
            self.start()  # a worker lost in an earlier batch is replaced here, never mid-batch
            while sent < min(self.ahead, len(pieces) - 1) and self._send(pieces[sent + 1]):
                sent += 1
        taken = 0  # pieces 1..taken came back
        try:
            yield self._here(pieces[0]) if pieces else []  # while the worker starts on the next ones
            for index, piece in enumerate(pieces[1:], 1):
                parsed = self._receive(len(piece)) if index <= sent else None
                if parsed is None:
                    sent = 0  # none, or lost: the rest is parsed here
                    yield self._here(piece)
                    continue
                taken = index
                if sent + 1 < len(pieces) and self._send(pieces[sent + 1]):
                    sent += 1
                yield parsed
        finally:
            if sent > taken:  # the caller stopped early: answers still due must not reach the next batch
                self._retire()

    def start(self) -> None:
        """Start the worker now rather than with the first large batch: its
        start-up (about 0.1 s, Python and the parser's imports) then overlaps
        other work. Nothing happens without workers."""
        if self.workers > 0:
            try:
                self._running()
            except OSError as exc:
                self._lost(exc)

    def close(self) -> None:
        """Let the worker finish and exit (its stdin closes)."""
        self._retire(graceful=True)

    # -- the caller's side of the pipes --------------------------------------

    def _here(self, piece: Sequence[bytes]) -> list[Parsed]:
        return [parse_one(raw, self.max_bytes) for raw in piece]

    def _send(self, piece: Sequence[bytes]) -> bool:
        """Hand a chunk to the batch's worker; False if it is gone."""
        if self._worker is None:
            return False
        if self._worker.poll() is not None:
            self._lost(WorkerLost("the worker exited"))
            return False
        self._frames.put(frame((self.max_bytes, list(piece))))
        return True

    def _receive(self, count: int) -> list[Parsed] | None:
        """The chunk in flight, parsed; None if the worker was lost."""
        worker = self._worker
        if worker is None:  # lost already, and said so
            return None
        try:
            deadline = time.monotonic() + self.timeout
            size = int.from_bytes(read_exactly(worker.stdout, _HEADER, deadline), "big")
            parsed = pickle.loads(read_exactly(worker.stdout, size, deadline))
            if not isinstance(parsed, list) or len(parsed) != count:
                raise WorkerLost("an answer of the wrong length")
            return parsed
        except (OSError, EOFError, ValueError, pickle.UnpicklingError, WorkerLost) as exc:
            self._lost(exc)
            return None

    def _running(self) -> subprocess.Popen:
        if self._worker is not None and self._worker.poll() is not None:
            self._retire()  # died between batches: its writer thread and pipes go with it
        if self._worker is None:
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "scheduler.mail.parse_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                bufsize=0,  # raw pipes: ``select`` sees every byte that waits
                env=_worker_environment(),
                close_fds=True,
            )
            self._frames = queue.SimpleQueue()
            self._writer = threading.Thread(target=_write_frames, args=(self._worker.stdin, self._frames),
                                            name="parse-worker-writer", daemon=True)
            self._writer.start()
        return self._worker

    def _lost(self, exc: BaseException) -> None:
        log.warning("intake: parse worker lost, parsing in the daemon error=%s", type(exc).__name__)
        self._retire()

    def _retire(self, graceful: bool = False) -> None:
        """End the worker, its writer thread and its pipes; a new one starts when needed."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._frames.put(None)  # the writer's cue to close stdin: the worker's to exit
        try:
            worker.wait(timeout=5 if graceful else 0)
        except subprocess.TimeoutExpired:
            worker.kill()  # a writer blocked on the pipe then fails and ends
            worker.wait()
        self._writer.join(timeout=5)
        try:
            worker.stdout.close()
        except OSError:
            pass

def _worker_environment() -> dict[str, str]:
    """What the worker needs to start, and no more: the daemon's environment
    holds the master key and the mailbox passwords."""
    keep = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")
            if name in os.environ}
    return {**keep, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _write_frames(stdin, frames: queue.SimpleQueue) -> None:
    """The writer thread: frames go out in order while the caller decides, so
    that neither side ever waits on a full pipe for the other."""
    try:
        while (data := frames.get()) is not None:
            stdin.write(data)
    except OSError:  # the worker died: the caller finds out when it reads
        pass
    finally:
        try:
            stdin.close()
        except OSError:
            pass
