"""Issue 14 item 3: the soak test. A simulated quarter (``tests/soak.py``)
through Dovecot and aiosmtpd behind the fault injector, with faults at 5 %
of operations (``SPARRING_SOAK_RATE``, ``SPARRING_SOAK_SEED``; the seed is
printed), compared with the same quarter without faults: the same
decisions, the same messages to the same people (receipts, agendas,
invitations, reminders), the same calendar; no message lost; a duplicate
only where a fault cut a send between the server taking it and sparring
recording it, at most one per such fault.
"""

from __future__ import annotations

import os

import pytest

from scheduler.store.keys import new_key
from tests.soak import MAY_DUPLICATE, Servers, compare, run_quarter

pytestmark = pytest.mark.servers

RATE = float(os.environ.get("SPARRING_SOAK_RATE", "0.05"))
SEED = int(os.environ.get("SPARRING_SOAK_SEED", "20270104"))


def test_a_quarter_with_random_faults_ends_as_one_without(tmp_path, monkeypatch, faults, imap_mailbox, smtp):
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    servers = Servers(imap_mailbox, smtp, faults.imap, faults.smtp)
    print(f"soak: rate {RATE:.0%}, seed {SEED}")
    reference = run_quarter(servers, tmp_path / "reference", rate=0.0, seed=SEED)
    faulty = run_quarter(servers, tmp_path / "faulty", rate=RATE, seed=SEED)
    injected = {kind: t.injected for kind, t in faulty.tally.items() if t.injected}
    failed = {kind: t.failed for kind, t in faulty.tally.items() if t.failed}
    print(f"soak: {faulty.operations} operations, faults {injected}; duplicates {faulty.duplicates}; "
          f"ran out of attempts (then retried as the administrator would) {failed}")

    assert reference.duplicates == 0 and reference.reports == 0
    assert sum(injected.values()) >= 10, injected
    assert {k.split(":")[0] for k in injected} == {"imap", "smtp"}
    assert faulty.decisions == reference.decisions
    assert set(faulty.sent) == set(reference.sent)
    assert compare(reference, faulty)["lost"] == 0
    assert faulty.calendar == reference.calendar
    cuts = sum(t.injected for kind, t in faulty.tally.items() if kind in MAY_DUPLICATE)
    assert faulty.duplicates <= cuts
    assert set(failed) <= {"smtp:outage"}, failed  # only an outage longer than the attempts fails an entry
