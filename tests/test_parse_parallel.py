"""Parsing large batches in a worker process: the same parses as in the
caller, in order, and nothing lost when the worker dies or hangs."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from scheduler.mail.parallel import ParallelParser, ParseFailed, parse_chunk
from scheduler.mail.parse import ParsedMail, parse_mail

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "mail").glob("*.eml"))
MAX_BYTES = 1_000_000


def batch(count: int) -> list[bytes]:
    """``count`` fixture mails, each with its own Message-ID so that no two are equal."""
    raws = [path.read_bytes() for path in FIXTURES]
    return [raws[n % len(raws)].replace(b"Message-ID: <", b"Message-ID: <n%d." % n, 1) for n in range(count)]


def flat(parser: ParallelParser, raws: list[bytes]) -> list:
    return [parsed for chunk in parser.chunks(raws) for parsed in chunk]


@pytest.fixture
def parser():
    parser = ParallelParser(MAX_BYTES, workers=1, chunk=10, min_batch=30)
    yield parser
    parser.close()


def test_a_large_batch_is_parsed_by_the_worker_exactly_as_here(parser):
    raws = batch(95)
    parsed = flat(parser, raws)
    assert parser._worker is not None and parser._worker.poll() is None, "the worker took part"
    assert parsed == [parse_mail(raw, max_bytes=MAX_BYTES) for raw in raws]
    assert all(isinstance(p, ParsedMail) for p in parsed)
    assert flat(parser, raws[:7]) == parsed[:7], "a small batch is parsed here"


def test_chunks_come_in_order_and_in_the_sizes_asked(parser):
    sizes = [len(chunk) for chunk in parser.chunks(batch(45))]
    assert sizes == [10, 10, 10, 10, 5]


def test_large_mails_cannot_block_the_pipes(parser):
    """Chunks of megabytes, several handed over ahead: the writer thread keeps
    both sides moving (a full pipe in each direction would otherwise hang)."""
    big = [raw.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"x" * 200_000 + b"\r\n\r\n", 1) for raw in batch(60)]
    assert flat(parser, big) == [parse_mail(raw, max_bytes=MAX_BYTES) for raw in big]


def test_a_failure_in_the_worker_crosses_as_its_class_name_only(monkeypatch):
    import scheduler.mail.parallel as parallel

    def breaking(raw, max_bytes):
        raise ValueError("CPR 0101011234 in a message")

    monkeypatch.setattr(parallel, "parse_mail", breaking)
    [failed] = parse_chunk([b"x"], MAX_BYTES)
    assert isinstance(failed, ParseFailed) and str(failed) == "ValueError"


def interrupted(parser, raws, caplog, *, after: int, sig: int) -> tuple[list, object]:
    """Parse ``raws`` and send the worker ``sig`` after ``after`` chunks came back."""
    chunks = parser.chunks(raws)
    got = [p for _ in range(after) for p in next(chunks)]
    worker = parser._worker
    os.kill(worker.pid, sig)
    with caplog.at_level(logging.WARNING, logger="sparring.intake"):
        got += [p for chunk in chunks for p in chunk]
    assert got == [parse_mail(raw, max_bytes=MAX_BYTES) for raw in raws], "nothing lost, order kept"
    return got, worker


def test_a_worker_that_dies_mid_batch_loses_nothing_and_is_replaced(parser, caplog):
    raws = batch(200)
    _, first = interrupted(parser, raws, caplog, after=2, sig=signal.SIGKILL)  # chunks 3.. not yet parsed
    assert "parse worker lost" in caplog.text
    flat(parser, raws)
    assert parser._worker is not None and parser._worker is not first, "a new worker for the next batch"


def test_a_hung_worker_is_killed_and_its_chunk_parsed_here(caplog):
    parser = ParallelParser(MAX_BYTES, workers=1, chunk=10, min_batch=30, timeout=0.5)
    try:
        _, hung = interrupted(parser, batch(200), caplog, after=1, sig=signal.SIGSTOP)
        assert "error=WorkerLost" in caplog.text
        assert hung.poll() is not None, "killed, not left behind"
    finally:
        parser.close()


def test_close_ends_the_worker(parser):
    flat(parser, batch(40))
    worker = parser._worker
    parser.close()
    assert worker.poll() == 0 and parser._worker is None


def test_without_workers_everything_is_parsed_here():
    parser = ParallelParser(MAX_BYTES, workers=0, chunk=10, min_batch=30)
    assert len(flat(parser, batch(40))) == 40 and parser._worker is None


def test_intake_decides_a_large_batch_alike_with_and_without_the_worker(tmp_path, monkeypatch):
    from scheduler.config import load_config
    from scheduler.mail.folder import FolderSource
    from scheduler.services.intake import Intake
    from tests.appkit import CONFIG, at, build

    base = load_config(CONFIG)
    outcomes = {}
    for workers in (0, 1):
        config = base.model_copy(update={"intake": base.intake.model_copy(update={"parse_workers": workers})})
        app, _ = build(tmp_path / str(workers), "2027-01-04T08:00", monkeypatch, config)
        inbox = tmp_path / str(workers) / "inbox"
        inbox.mkdir()
        arrival = at("2027-01-04T07:00").timestamp()
        for n, raw in enumerate(batch(130)):
            path = inbox / f"{n:04d}.eml"
            path.write_bytes(raw)
            os.utime(path, (arrival + n, arrival + n))
        intake = Intake(app)
        try:
            outcomes[workers] = [o.as_json() for o in intake.run(FolderSource(inbox))]
            assert (intake._parser._worker is not None) == bool(workers)
        finally:
            intake.close()
        assert not list(inbox.glob("*.eml"))
    assert len(outcomes[1]) == 130 and outcomes[0] == outcomes[1]
    assert {o["outcome"] for o in outcomes[1]} >= {"accepted", "rejected", "ignored", "quarantined"}


def test_start_spawns_the_worker_ahead_and_the_batch_uses_it(parser):
    parser.start()
    worker = parser._worker
    assert worker is not None and worker.poll() is None
    assert len(flat(parser, batch(40))) == 40 and parser._worker is worker
    idle = ParallelParser(MAX_BYTES, workers=0)
    idle.start()
    assert idle._worker is None


def test_the_worker_gets_none_of_the_daemons_secrets(parser, monkeypatch):
    monkeypatch.setenv("SPARRING_SECRET_KEY", "not-for-the-worker")
    monkeypatch.setenv("SPARRING_IMAP_PASSWORD", "nor-this")
    parser.start()
    environ = Path(f"/proc/{parser._worker.pid}/environ").read_bytes()
    assert b"not-for-the-worker" not in environ and b"nor-this" not in environ
    assert b"PYTHONPATH=" in environ
    assert len(flat(parser, batch(40))) == 40, "and it still starts and parses"


def test_a_batch_left_half_read_leaves_nothing_for_the_next(parser):
    """Answers still due for an abandoned batch must never be taken for the
    next batch's: that would put one mail's parse on another mail."""
    first = batch(120)
    chunks = parser.chunks(first)
    next(chunks), next(chunks)
    chunks.close()  # the caller stops early, chunks still with the worker
    second = [raw.replace(b"Message-ID: <n", b"Message-ID: <second.n", 1) for raw in batch(120)]
    assert flat(parser, second) == [parse_mail(raw, max_bytes=MAX_BYTES) for raw in second]


def test_a_worker_dead_between_batches_is_replaced_without_leaking(parser):
    import threading

    flat(parser, batch(40))
    threads = threading.active_count()
    for _ in range(3):
        os.kill(parser._worker.pid, signal.SIGKILL)
        parser._worker.wait()
        assert len(flat(parser, batch(40))) == 40
    assert threading.active_count() == threads, "one writer thread, not one per dead worker"
