"""Intake throughput over IMAP beside a raw fetch (issue 3 item 8): ``python -m bench.intake``.

Starts Dovecot on 127.0.0.1 (the tests' server), APPENDs 5,000 generated
mails (``bench.mailgen``) with their INTERNALDATE in a few MULTIAPPEND
commands, then in the same run measures

(a) a raw imaplib fetch over STARTTLS: UID SEARCH and UID FETCH of
    ``BODY.PEEK[]`` in batches of 500 (best of three), mails/s;
(b) sparring's whole pipeline on a fresh SQLite data directory:
    ``ImapSource`` fetch, ``Intake`` (parse, validate, allocate, encrypt,
    store, receipt queued in the outbox, calendar sync) and settle (UID MOVE
    to the Danish folders), mails/s,

and prints both, their ratio (target at least 1/25) and a breakdown per
stage, measured by timing wrappers around the real functions (installed by
this benchmark only; a stage's time excludes the wrapped stages it calls).
Correctness is checked on the way: the inbox ends empty, every mail is in
the folder of its outcome, every mail a person wrote has its receipt queued.
"""

from __future__ import annotations

import argparse
import functools
import imaplib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.mailgen import GenMail, generate, summary
from scheduler.ports import chunked

TZ = ZoneInfo("Europe/Copenhagen")
TARGET_RATIO = 1 / 25
FETCH_BATCH = 500
FOLDER_OF = {"processed": "Behandlet", "rejected": "Afvist", "quarantine": "Karantæne", "ignored": "Ignoreret"}
ANSWERED = {"accepted", "moved", "rejected", "withdrawn"}


# -- stage timing ------------------------------------------------------------


class Stages:
    """Exclusive time per stage: a wrapped call's time minus its wrapped callees'."""

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()
        self._stack: list[list[float]] = []  # per open call: [time spent in wrapped callees]

    def wrap(self, stage: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._stack.append([0.0])
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - began
                inner = self._stack.pop()[0]
                self.seconds[stage] += spent - inner
                self.calls[stage] += 1
                if self._stack:
                    self._stack[-1][0] += spent
        return timed

    def patch(self, stage: str, owner: object, name: str) -> Callable[[], None]:
        original = getattr(owner, name)
        setattr(owner, name, self.wrap(stage, original))
        return lambda: setattr(owner, name, original)


@contextmanager
def pipeline_stages(stages: Stages):
    """Wrap the real functions of each stage (before the app is built: handlers bind early)."""
    import sqlalchemy.orm

    from scheduler.mail.imap import ImapSource
    from scheduler.mail.parallel import ParallelParser
    from scheduler.services import intake
    from scheduler.services.calendar_sync import CalendarSync
    from scheduler.services.context import App
    from scheduler.services.notices import Notices
    from scheduler.store.repository import Repository

    plan = [
        ("fetch", ImapSource, "fetch"),
        ("parse", intake, "parse_mail"),
        ("parse", ParallelParser, "_here"),  # the first chunk, parsed while the worker takes the next
        ("parse", ParallelParser, "_send"),  # handing a chunk to the worker
        ("parse", ParallelParser, "_receive"),  # waiting for the worker, and unpickling
        ("validate+allocate", intake.Intake, "process"),
        ("validate+allocate", intake.Intake, "_decide"),
        ("encrypt+store", Repository, "earlier"),
        ("encrypt+store", Repository, "begin_mail"),
        ("encrypt+store", Repository, "finish_mail"),
        ("encrypt+store", Repository, "place_item"),
        ("encrypt+store", Repository, "withdraw"),
        ("encrypt+store", Repository, "flush_writes"),
        ("encrypt+store", sqlalchemy.orm.Session, "commit"),
        ("receipt render+queue", Notices, "placed"),
        ("receipt render+queue", Notices, "rejected"),
        ("receipt render+queue", Notices, "withdrawn"),
        ("calendar sync", CalendarSync, "items_changed"),
        ("settle", ImapSource, "settle"),
        ("settle", App, "set_meta"),
    ]
    helper = getattr(intake.Intake, "_decide_batch", None)  # the batched run, when present
    if helper is not None:
        plan.append(("validate+allocate", intake.Intake, "_decide_batch"))
    undo = [stages.patch(stage, owner, name) for stage, owner, name in plan]
    try:
        yield
    finally:
        for restore in reversed(undo):
            restore()


# -- IMAP helpers --------------------------------------------------------------


def starttls_login(server, ssl_context) -> imaplib.IMAP4:
    conn = imaplib.IMAP4(server.host, server.imap_port, timeout=60)
    conn.starttls(ssl_context=ssl_context)
    conn.login(server.user, server.password)
    return conn


def bulk_append(server, mails: Sequence[GenMail], batch: int = 250) -> None:
    """MULTIAPPEND with LITERAL+: one command per ``batch`` mails, no round trip per mail."""
    conn = starttls_login(server, server.tls.client_context())
    caps = conn.capability()[1][-1].upper().split()
    if b"MULTIAPPEND" not in caps or b"LITERAL+" not in caps:
        raise SystemExit("the IMAP server offers no MULTIAPPEND/LITERAL+; cannot load the benchmark fast")
    for chunk in chunked(list(mails), batch):
        tag = conn._new_tag()
        conn.tagged_commands.pop(tag, None)  # the tagged reply is read here
        parts = [tag + b" APPEND INBOX"]
        for mail in chunk:
            date = imaplib.Time2Internaldate(mail.date).encode()
            parts.append(b" %s {%d+}\r\n%s" % (date, len(mail.raw), mail.raw))
        conn.send(b"".join(parts) + b"\r\n")
        while not (line := conn.readline()).startswith(tag):
            if not line:
                raise SystemExit("the IMAP server closed the connection during APPEND")
        if line.split(b" ", 2)[1] != b"OK":
            raise SystemExit(f"APPEND refused: {line[:200]!r}")
    conn.logout()


def raw_fetch(server) -> tuple[int, int, float]:
    """(mails, bytes, seconds) of a plain batched fetch of the INBOX over STARTTLS."""
    began = time.perf_counter()
    conn = starttls_login(server, server.tls.client_context())
    conn.select("INBOX", readonly=True)
    uids = conn.uid("SEARCH", "ALL")[1][0].split()
    count = size = 0
    for chunk in chunked(uids, FETCH_BATCH):
        typ, data = conn.uid("FETCH", b",".join(chunk).decode(), "(UID INTERNALDATE BODY.PEEK[])")
        assert typ == "OK", data
        literals = [item[1] for item in data if isinstance(item, tuple)]
        count, size = count + len(literals), size + sum(map(len, literals))
    elapsed = time.perf_counter() - began
    conn.logout()
    return count, size, elapsed


# -- sparring's pipeline -------------------------------------------------------


def imap_config(server, parse_workers: int | None = None):
    from scheduler.config import load_config

    config = load_config(Path(__file__).parent.parent / "config" / "sparring.toml")
    imap = config.intake.imap.model_copy(update={
        "host": server.host, "port": server.imap_port, "security": "starttls", "username": server.user,
        "ca_file": server.ca_file, "batch_size": FETCH_BATCH, "password_env": "SPARRING_BENCH_IMAP_PASSWORD",
    })
    workers = config.intake.parse_workers if parse_workers is None else parse_workers
    intake = config.intake.model_copy(update={"source": "imap", "imap": imap, "parse_workers": workers})
    return config.model_copy(update={"intake": intake})


def run_pipeline(server, now: datetime, data_dir: Path, stages: Stages,
                 parse_workers: int | None = None) -> tuple[list, float, object]:
    from scheduler.clock import FixedClock
    from scheduler.services.intake import Intake
    from scheduler.store.keys import new_key
    from scheduler.wiring import make_app, make_source

    os.environ["SPARRING_SECRET_KEY"] = new_key()
    os.environ["SPARRING_BENCH_IMAP_PASSWORD"] = server.password
    config = imap_config(server, parse_workers)
    with pipeline_stages(stages):
        app = make_app(config, FixedClock(now), data_dir)
        intake = Intake(app)
        intake.start()  # as ``sparring run`` does when it starts
        source = make_source(config, data_dir, cipher=app.cipher)
        outcomes: list = []
        began = time.perf_counter()
        while batch := intake.run(source, limit=FETCH_BATCH):
            outcomes += batch
        elapsed = time.perf_counter() - began
        source.close()
        intake.close()
    return outcomes, elapsed, app


def check(server, mails: Sequence[GenMail], outcomes: list, app) -> list[str]:
    """What went wrong, if anything: folders, outcomes and receipts."""
    from sqlalchemy import func, select

    from scheduler.store.tables import OutboxEntry

    problems = []
    folders = server.folders()
    if folders.get("INBOX", 0):
        problems.append(f"{folders['INBOX']} mails left in INBOX")
    if sum(folders.values()) != len(mails):
        problems.append(f"{sum(folders.values())} mails in the folders, {len(mails)} appended")
    if len(outcomes) != len(mails):
        problems.append(f"{len(outcomes)} outcomes for {len(mails)} mails")
    by_folder = Counter(FOLDER_OF[o.disposition.value] for o in outcomes)
    for folder, count in by_folder.items():
        if folders.get(folder, 0) != count:
            problems.append(f"folder {folder}: {folders.get(folder, 0)} mails, {count} decided")
    # A sender's repeat of a rejection within the hour is filed unanswered (Floodgate).
    answered = sum(1 for o in outcomes if o.outcome in ANSWERED and o.extra.get("answered", True))
    with app.transaction() as repo:
        receipts = repo.db.scalar(select(func.count()).select_from(OutboxEntry)
                                  .where(OutboxEntry.dedupe_key.like("receipt:%")))
    if receipts != answered:
        problems.append(f"{receipts} receipts queued for {answered} answered mails")
    expected = Counter(m.expect for m in mails)
    got = Counter(o.outcome for o in outcomes)
    if got["quarantined"] != expected["quarantined"] or got["ignored"] != expected["ignored"]:
        problems.append(f"quarantined/ignored {got['quarantined']}/{got['ignored']}, "
                        f"generated {expected['quarantined']}/{expected['ignored']}")
    return problems


def report(stages: Stages, total: float, count: int) -> None:
    print(f"  {'stage':22} {'seconds':>8} {'share':>6} {'µs/mail':>8}  calls")
    order = ["fetch", "parse", "validate+allocate", "encrypt+store", "receipt render+queue",
             "calendar sync", "settle"]
    for stage in order:
        seconds = stages.seconds[stage]
        print(f"  {stage:22} {seconds:8.2f} {seconds / total:6.1%} {seconds / count * 1e6:8.0f}  "
              f"{stages.calls[stage]}")
    rest = total - sum(stages.seconds[s] for s in order)
    print(f"  {'other':22} {rest:8.2f} {rest / total:6.1%} {rest / count * 1e6:8.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the pipeline here")
    parser.add_argument("--parse-workers", type=int, metavar="N",
                        help="parse worker processes (default: the shipped configuration's, 1; 0: none)")
    args = parser.parse_args(argv)
    from tests.servers.dovecot import dovecot_server

    last = datetime.now(TZ).replace(microsecond=0) - timedelta(hours=1)
    mails = generate(args.mails, last - timedelta(days=365), last, args.seed)
    print(f"intake: {len(mails)} generated mails over a year up to {last:%Y-%m-%d %H:%M}")
    print(f"  {summary(mails)}")
    with dovecot_server() as server, tempfile.TemporaryDirectory(prefix="sparring-bench-") as tmp:
        began = time.perf_counter()
        bulk_append(server, mails)
        print(f"appended in {time.perf_counter() - began:.1f} s (MULTIAPPEND, 250 a command)")
        raw = [raw_fetch(server) for _ in range(3)]
        count, size, raw_s = min(raw, key=lambda r: r[2])
        raw_rate = count / raw_s
        print(f"(a) raw imaplib STARTTLS fetch: {count} mails, {size / 1e6:.1f} MB in {raw_s:.2f} s "
              f"= {raw_rate:,.0f} mails/s (best of 3)")
        stages = Stages()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        outcomes, total, app = run_pipeline(server, last + timedelta(minutes=1), Path(tmp), stages,
                                            args.parse_workers)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        rate = len(outcomes) / total
        print(f"(b) sparring pipeline: {len(outcomes)} mails in {total:.2f} s = {rate:,.0f} mails/s")
        ratio = rate / raw_rate
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(f"ratio: 1/{1 / ratio:.1f} of the raw fetch (target at least 1/25: {verdict})")
        report(stages, total, len(outcomes))
        print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(o.outcome for o in outcomes).items())))
        print("folders: " + ", ".join(f"{k} {v}" for k, v in sorted(server.folders().items())))
        problems = check(server, mails, outcomes, app)
        app.engine.dispose()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("checks: " + ("all passed" if not problems else f"{len(problems)} failed"))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
