"""A year in simulated time (issue 5 item 5): ``python -m bench.simulate``.

Generates a year of mail (1,000 agenda items across both series, plus the
usual share of rejections, auto-replies, outsiders and withdrawals from
``bench.mailgen``, Date headers spread over the year's working days) into a
fresh data directory's inbox, runs ``sparring simulate --from … --to …`` on
the shipped configuration (the embedded default: local folders) as a
subprocess, and reports its time (target under 10 s) and summary table.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, datetime, time as clock_time
from pathlib import Path

from bench.intake import TZ
from bench.mailgen import GenMail, generate, write_inbox

ROOT = Path(__file__).parent.parent
TARGET_SECONDS = 10.0


def year_of_mail(year: int, items: int, seed: int) -> list[GenMail]:
    """Generated mails over ``year`` holding exactly ``items`` agenda items."""
    first = datetime.combine(date(year, 1, 1), clock_time(0), tzinfo=TZ)
    last = datetime.combine(date(year, 12, 31), clock_time(23, 59), tzinfo=TZ)
    mails, count = [], 0
    for mail in generate(int(items * 1.25), first, last, seed):
        if mail.expect == "item":
            if count == items:
                continue
            count += 1
        mails.append(mail)
    if count < items:
        raise SystemExit(f"only {count} items generated; raise the factor")
    return mails


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def count_files(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.eml")) if folder.is_dir() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2027)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args(argv)
    from scheduler.store.keys import new_key

    mails = year_of_mail(args.year, args.items, args.seed)
    kinds = Counter(m.expect for m in mails)
    with tempfile.TemporaryDirectory(prefix="sparring-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        write_inbox(mails, data_dir / "inbox")
        print(f"simulate: {len(mails)} mails in the inbox over {args.year} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
        env = {**os.environ, "SPARRING_SECRET_KEY": new_key()}
        env.pop("SPARRING_NOW", None)
        command = [sys.executable, "-m", "scheduler.cli", "--config", str(ROOT / "config" / "sparring.toml"),
                   "--data-dir", str(data_dir), "simulate", "--from", f"{args.year}-01-01",
                   "--to", f"{args.year}-12-31"]
        # The inbox just written (and an earlier run's files just deleted) are
        # set-up: flush them first, or the command pays for their write-back.
        os.sync()
        cpu_before = _children_cpu()
        began = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        cpu = _children_cpu() - cpu_before
        if result.returncode != 0:
            print(result.stderr[-2000:])
            raise SystemExit(f"sparring simulate failed with exit code {result.returncode}")
        print(result.stdout.rstrip())
        verdict = "met" if seconds < TARGET_SECONDS else "MISSED"
        print(f"time: {seconds:.1f} s for the whole command, start-up included (target < 10 s: {verdict}); "
              f"{cpu:.1f} s of it on the CPU")
        outbox = count_files(data_dir / "outbox")
        folders = {f: count_files(data_dir / f) for f in ("processed", "rejected", "quarantine", "ignored")}
        print(f"outbox: {outbox} files; inbox left: {count_files(data_dir / 'inbox')}; "
              + ", ".join(f"{k} {v}" for k, v in folders.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
