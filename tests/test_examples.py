"""The sample mails the README's first run points to (``examples/mail/``)
are taken in as their README says: a test keeps the two in step."""

from __future__ import annotations

import json
import re
from pathlib import Path

from scheduler import cli
from scheduler.store.keys import new_key
from tests.appkit import CONFIG

EXAMPLES = Path(__file__).parent.parent / "examples" / "mail"
OUTCOME = {"receipt": "accepted", "rejected": "rejected", "quarantined": "quarantined", "ignored": "ignored"}


def promised() -> dict[str, str]:
    """file name -> outcome, from the table in examples/mail/README.md."""
    rows = re.findall(r"^\| `(\S+\.eml)` \| .* \| (\w+)", (EXAMPLES / "README.md").read_text(), re.MULTILINE)
    return {name: OUTCOME[first] for name, first in rows}


def test_every_sample_mail_is_listed_and_taken_in_as_its_readme_says(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    files = sorted(EXAMPLES.glob("*.eml"))
    assert sorted(promised()) == [p.name for p in files]
    code = cli.main(["--config", str(CONFIG), "--data-dir", str(tmp_path), "--now", "2027-01-04T08:00",
                     "ingest", "--json", "--eml", *map(str, files)])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["outcome"] for row in rows] == [promised()[p.name] for p in files]
    series = {p.name: row["series"] for p, row in zip(files, rows, strict=True) if row["series"]}
    assert series == {"01-young-plain.eml": "unge", "02-adult-outlook-html.eml": "voksne",
                      "03-latin1-qp.eml": "unge"}
