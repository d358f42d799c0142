"""A data directory is either live or a rehearsal, never both.

``run`` sends real mail and records agendas as sent; ``simulate`` records
the same marks for sessions on a simulated clock. In one database the
daemon would then send no agenda for a session the simulation marked, and a
simulation would replay the real outbox. The first of them to use a
database records it; the other refuses it with one sentence.
"""

from __future__ import annotations

from scheduler.errors import UserError

KEY = "used_by"


def claim(app, use: str) -> None:
    """Record ``use`` ("run" or "simulate"), or refuse a database the other used."""
    with app.transaction() as repo:
        marked = repo.get_meta(KEY)
        if marked is None:
            repo.set_meta(KEY, use)
            return
    if marked == use:
        return
    where = (f"the data directory {app.data_dir}" if not app.config.storage.url.strip()
             else "the database in storage.url")
    if use == "simulate":
        raise UserError(f"simulate: {where} is used by `sparring run`, whose agendas and outbox are live; "
                        "simulate in a data directory of its own, e.g. --data-dir var/simulation.")
    raise UserError(f"run: {where} was written by `sparring simulate`, whose agendas and outbox are simulated; "
                    "run on a data directory of its own (the default is ./var) and keep simulations in "
                    "e.g. --data-dir var/simulation.")
