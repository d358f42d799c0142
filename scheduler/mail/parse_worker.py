"""The parse worker: ``python -m scheduler.mail.parse_worker``, started by
``ParallelParser``. Reads (max_bytes, [raw mail, ...]) frames on stdin and
answers each with a frame of parses on stdout, until stdin closes.
Ctrl-C is its parent's to handle."""

from __future__ import annotations

import pickle
import signal
import sys

from scheduler.mail.parallel import _HEADER, parse_chunk, read_exactly, write_frame


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = requests.read(_HEADER)
        if not header:
            return 0
        if len(header) < _HEADER:
            header += read_exactly(requests, _HEADER - len(header))
        max_bytes, raws = pickle.loads(read_exactly(requests, int.from_bytes(header, "big")))
        write_frame(answers, parse_chunk(raws, max_bytes))


if __name__ == "__main__":
    raise SystemExit(main())
