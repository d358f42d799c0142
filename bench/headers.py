"""Slow headers (issue 11 item 18): ``python -m bench.headers``.

Times ``parse_mail`` on a mail whose Subject holds N RFC 2047 encoded
words, against the stdlib's ``decode_header`` on the same Subject, which
takes time in the square of N. sparring decodes no header value longer
than ``MAX_HEADER`` characters, so its time grows with the mail's size only.
"""

from __future__ import annotations

import time
from email.header import decode_header

from scheduler.mail.parse import parse_mail

WORD = "=?utf-8?q?a=C3=A6?="


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    print(f"{'words':>7} {'subject':>9} {'parse_mail':>11} {'decode_header':>14}")
    for words in (1_000, 10_000, 70_000):
        subject = " ".join([WORD] * words)
        raw = f"From: a@kommune.example\r\nSubject: {subject}\r\n\r\nCPR: 150303-4321\r\n".encode()
        parse = best(lambda: parse_mail(raw, max_bytes=10_000_000))
        stdlib = best(lambda: decode_header(subject), repeat=1)
        print(f"{words:>7} {len(subject) / 1e6:>7.2f}MB {parse * 1e3:>9.1f}ms {stdlib * 1e3:>12.0f}ms")


if __name__ == "__main__":
    main()
