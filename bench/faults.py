"""Faults per kind over a simulated quarter (issue 14 item 4).

``python -m bench.faults [--rate 0.2] [--seed N] [--backoff-cap S]``
starts Dovecot and aiosmtpd with the fault injector's proxies in front
(``tests/servers``), runs the soak's quarter (``tests/soak.py``) once
without faults and once with faults at ``--rate`` of operations, and
prints for each fault kind: faults injected, operations that failed under
it and succeeded on a retry, reported failures (entries that ran out of
attempts, listed by ``sparring outbox --failed``; sent again afterwards
as the administrator would), duplicate sends, and the longest time from
the server's return to the operation's success, against the configured
back-off cap. Mails lost are counted against the fault-free run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from scheduler.store.keys import new_key


def _servers(stack):
    from tests.servers.dovecot import dovecot_server
    from tests.servers.faults import Proxy
    from tests.servers.smtp import aiosmtpd_server
    from tests.soak import Servers

    dovecot = stack.enter_context(dovecot_server())
    smtp = stack.enter_context(aiosmtpd_server())
    imap_proxy = Proxy("imap", (dovecot.host, dovecot.imap_port))
    smtp_proxy = Proxy("smtp", (smtp.host, smtp.port))
    stack.callback(imap_proxy.close)
    stack.callback(smtp_proxy.close)
    return Servers(dovecot, smtp, imap_proxy, smtp_proxy)


def table(reference, faulty) -> str:
    from tests.soak import compare

    cap = faulty.backoff_cap
    duplicates = faulty.duplicates_by_fault()
    rows = [f"{'fault':<16} {'injected':>8} {'recovered':>9} {'reported':>8} {'lost':>4} {'dupl.':>5} "
            f"{'recover max':>11} {'<= cap':>6}"]
    for kind in sorted(k for k, t in faulty.tally.items() if t.injected):
        t = faulty.tally[kind]
        worst = max(t.recover_seconds, default=0.0)
        rows.append(f"{kind:<16} {t.injected:>8} {t.recovered:>9} {t.failed:>8} {0:>4} {duplicates[kind]:>5} "
                    f"{worst:>9.0f} s {'yes' if worst <= cap else 'NO':>6}")
    for kind in sorted(set(duplicates) - set(faulty.tally)):
        rows.append(f"{kind:<16} {'-':>8} {'-':>9} {'-':>8} {'-':>4} {duplicates[kind]:>5}")
    totals = compare(reference, faulty)
    rows.append(f"lost (against the run without faults): {totals['lost']}; sent only under faults: "
                f"{totals['extra']}; duplicates: {totals['duplicates']}; decisions equal: "
                f"{faulty.decisions == reference.decisions}; calendar equal: {faulty.calendar == reference.calendar}; "
                f"mails to the administrator: {faulty.reports}; back-off cap {cap:.0f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from contextlib import ExitStack

    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.2, help="share of operations with a fault (0.2)")
    parser.add_argument("--seed", type=int, default=20270104)
    parser.add_argument("--backoff-cap", type=float, default=900.0, help="outbox.backoff_max_seconds (900)")
    args = parser.parse_args(argv)
    os.environ.setdefault("SPARRING_SECRET_KEY", new_key())
    from tests.soak import MAILS, run_quarter

    print(f"faults: a quarter of {MAILS} mails through Dovecot and aiosmtpd behind the injector; "
          f"rate {args.rate:.0%}, seed {args.seed}")
    with ExitStack() as stack:
        servers = _servers(stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sparring-faults-")))
        began = time.perf_counter()
        reference = run_quarter(servers, tmp / "reference", rate=0.0, seed=args.seed, backoff_cap=args.backoff_cap)
        faulty = run_quarter(servers, tmp / "faulty", rate=args.rate, seed=args.seed, backoff_cap=args.backoff_cap)
        print(f"{faulty.operations} operations, {time.perf_counter() - began:.0f} s for both runs")
        print(table(reference, faulty))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
