"""Engines, migrations, UTC datetimes and encryption at rest on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from alembic.script import ScriptDirectory
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from scheduler.errors import BackendUnavailable, ConfigError
from scheduler.store.crypto import FieldCipher
from scheduler.store.db import alembic_config, database_url, make_engine, migrate, session_factory
from scheduler.store.tables import Base, Item, Lease, Mail, Meta, OutboxEntry, include_name

CPH = ZoneInfo("Europe/Copenhagen")
CIPHER = FieldCipher(bytes(range(32)))
CPRS = ["0707614285", "1502891234", "3112457771"]
HEALTH = ["Svær angst og depression efter trafikulykke", "Alkoholmisbrug, i behandling"]
SOCIAL = ["Udsat for vold i hjemmet", "Mistet bolig og job"]
NOW = datetime(2027, 1, 4, 8, 0, tzinfo=timezone.utc)  # the rows' times: never the real clock


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _diffs(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include_name})
        return compare_metadata(context, Base.metadata)


# -- URLs and engines -----------------------------------------------------------


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path):
    assert database_url("", tmp_path) == f"sqlite:///{tmp_path / 'sparring.db'}"
    assert database_url(" postgresql://db/x ", tmp_path) == "postgresql://db/x"


@pytest.mark.parametrize("url", [
    "postgresql://u:pw@127.0.0.1/db",
    "postgresql://u@localhost:5433/db",
    "postgresql:///db?host=/var/run/postgresql",
    "postgresql://u:pw@db.kommune.example/db?sslmode=verify-full",
    "postgresql+psycopg://u:pw@db.kommune.example/db?sslmode=verify-full",
    "postgresql://u@/db?host=127.0.0.1,::1&hostaddr=127.0.0.1",
    "postgresql://u@db.kommune.example/db?hostaddr=10.0.0.5&sslmode=verify-full",
])
def test_postgres_urls_accepted_without_connecting(url):
    engine = make_engine(url)
    assert engine.url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", [
    "postgresql://u:pw@db.kommune.example/db",
    "postgresql://u:pw@10.0.0.5/db?sslmode=prefer",
    # Issue 11, 19: no certificate check, or a target the old check did not look at.
    "postgresql+psycopg://u:pw@db.kommune.example/db?sslmode=require",
    "postgresql://u:pw@db.kommune.example/db?sslmode=verify-ca",
    "postgresql://u:pw@localhost/db?hostaddr=10.0.0.5",
    "postgresql://u:pw@/db?hostaddr=10.0.0.5",
    "postgresql://u:pw@/db?service=sparring",
    "postgresql://u:pw@/db?host=127.0.0.1,db.kommune.example",
    "postgresql://u:pw@/db?host=127.0.0.1&host=db.kommune.example",
])
def test_remote_postgres_without_tls_is_refused(url):
    with pytest.raises(ConfigError, match="must use TLS") as caught:
        make_engine(url)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url"])
def test_unsupported_urls_are_refused(url):
    with pytest.raises(ConfigError):
        make_engine(url)


def test_unreachable_postgres_names_host_and_port_not_password():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = make_engine(f"postgresql://sparring:Hemmelig42@127.0.0.1:{port}/db")
    with pytest.raises(BackendUnavailable) as caught:
        migrate(engine)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "Hemmelig42" not in message
    assert "\n" not in message


def test_unopenable_sqlite_is_backend_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable, match="could not be reached"):
        migrate(make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"))


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    assert (tmp_path / "x.db").stat().st_mode & 0o077 == 0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


# -- migrations -------------------------------------------------------------------


def test_migrate_is_idempotent_and_matches_the_models(engine):
    migrate(engine)
    assert _diffs(engine) == []
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_apscheduler_table_beside_ours_is_left_alone(engine):
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs").start(None, "default")
    migrate(engine)
    assert _diffs(engine) == []
    assert "apscheduler_jobs" in inspect(engine).get_table_names()


def test_concurrent_starts_migrate_once(db_url):
    engines = [make_engine(db_url) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def start(engine):
        try:
            barrier.wait()
            migrate(engine)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _diffs(engines[0]) == []
    for engine in engines:
        engine.dispose()


def test_foreign_keys_are_enforced(engine):
    with session_factory(engine)() as db, pytest.raises(IntegrityError):
        db.add(_item(mail_id=999_999, cpr=CPRS[0], now=NOW))
        db.commit()


# -- datetimes --------------------------------------------------------------------


def test_aware_datetimes_round_trip_as_utc(engine):
    local = datetime(2025, 3, 30, 2, 30, tzinfo=timezone.utc).astimezone(CPH)  # around the DST switch
    with session_factory(engine)() as db:
        db.add(Lease(name="daemon", holder="host-1", expires_at=local))
        db.commit()
    with session_factory(engine)() as db:
        row = db.get(Lease, "daemon")
        assert row.expires_at == local
        assert row.expires_at.utcoffset() == timedelta(0)
        # comparison in SQL with a value in another offset
        earlier = local - timedelta(minutes=1)
        assert db.scalar(select(Lease.name).where(Lease.expires_at > earlier.astimezone(CPH))) == "daemon"
        assert db.scalar(select(Lease.name).where(Lease.expires_at > local)) is None


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
       st.sampled_from([CPH, timezone.utc, timezone(timedelta(hours=-3, minutes=-30)), ZoneInfo("America/New_York")]),
       st.booleans())
def test_bind_gives_the_utc_instant_astimezone_gives(moment, zone, fold):
    """``UTCDateTime`` subtracts the offset itself (one zone lookup, it runs for
    every datetime written): the same instant as ``astimezone``, folds included."""
    from sqlalchemy.dialects import postgresql, sqlite

    from scheduler.store.tables import UTCDateTime

    aware = moment.replace(tzinfo=zone, fold=int(fold))
    expected = aware.astimezone(timezone.utc)
    assert UTCDateTime().process_bind_param(aware, sqlite.dialect()) == expected.replace(tzinfo=None)
    stored = UTCDateTime().process_bind_param(aware, postgresql.dialect())
    assert stored == expected and stored.tzinfo is timezone.utc


def test_naive_datetimes_are_refused(engine):
    with session_factory(engine)() as db, pytest.raises(StatementError, match="naive datetime"):
        db.add(Lease(name="x", holder="h", expires_at=datetime(2025, 1, 1, 12, 0)))
        db.commit()


# -- encryption at rest: the raw bytes ---------------------------------------------


def _mail(n: int, now: datetime) -> Mail:
    return Mail(message_key=CIPHER.lookup_hash(f"<m{n}@kommune.example>", purpose="message-id"),
                source_ref=f"inbox/{n}.eml", received_at=now, processed_at=now, outcome="accepted",
                sender="sagsbehandler@kommune.example", purge_after=now + timedelta(days=30))


def _item(mail_id: int, cpr: str, now: datetime) -> Item:
    return Item(
        mail_id=mail_id, series_id="ung", session_key="ung/2025-03-04", session_start=now + timedelta(days=7),
        acute=False, status="pending", cpr_hash=CIPHER.lookup_hash(cpr, purpose="cpr"),
        cpr_enc=CIPHER.encrypt(cpr, context="items.cpr"),
        text_enc=CIPHER.encrypt_json({"health": HEALTH, "social": SOCIAL}, context="items.text"),
        sender="sagsbehandler@kommune.example", received_at=now, created_at=now, updated_at=now,
        purge_after=now + timedelta(days=37), version=1,
    )


MARKER = "plaintext-control-marker-7f3a"


def _write_personal_data(engine) -> None:
    now = NOW
    with session_factory(engine)() as db:
        for n, cpr in enumerate(CPRS):
            mail = _mail(n, now)
            db.add(mail)
            db.flush()
            db.add(_item(mail.id, cpr, now))
            receipt = f"Kvittering for {cpr[:6]}-{cpr[6:]}: {HEALTH[0]}"
            db.add(OutboxEntry(dedupe_key=f"receipt:{n}", kind="receipt", recipients='["a@kommune.example"]',
                               payload_enc=CIPHER.encrypt_json({"message": receipt}, context="outbox.payload"),
                               status="pending", attempts=0, next_attempt_at=now, created_at=now,
                               purge_after=now + timedelta(days=30)))
        db.add(Meta(key="control", value=MARKER))  # proves the bytes read are the live data
        db.commit()
    with session_factory(engine)() as db:  # and it all reads back
        items = db.scalars(select(Item).order_by(Item.id)).all()
        assert [CIPHER.decrypt(i.cpr_enc, context="items.cpr") for i in items] == CPRS
        assert CIPHER.decrypt_json(items[0].text_enc, context="items.text")["health"] == HEALTH


def _assert_no_personal_data(raw: bytes) -> None:
    assert raw.count(MARKER.encode()) > 0, "control value missing: the bytes read are not the database"
    needles = [form for cpr in CPRS for form in (cpr, f"{cpr[:6]}-{cpr[6:]}", f"{cpr[:6]} {cpr[6:]}")]
    needles += [*HEALTH, *SOCIAL, "angst", "depression", "misbrug"]
    found = [(n, enc) for n in needles for enc in ("utf-8", "utf-16-le") if n.encode(enc) in raw]
    assert found == [], "personal data stored in plain text"


def test_sqlite_file_bytes_hold_no_cpr_or_health_text(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'sparring.db'}")
    migrate(engine)
    _write_personal_data(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    files = sorted(tmp_path.glob("sparring.db*"))
    _assert_no_personal_data(b"".join(path.read_bytes() for path in files))


@pytest.mark.servers
def test_postgres_files_and_dump_hold_no_cpr_or_health_text(postgres_server):
    name = "bytes_at_rest"
    postgres_server.sql(f"CREATE DATABASE {name}")
    engine = make_engine(postgres_server.url(name))
    migrate(engine)
    _write_personal_data(engine)
    engine.dispose()
    postgres_server.sql("CHECKPOINT")
    raw = b"".join(p.read_bytes() for p in Path(postgres_server.data_dir).rglob("*") if p.is_file())
    _assert_no_personal_data(raw)
    pg_dump = postgres_server.bin_dir / "pg_dump"
    dump = subprocess.run([str(pg_dump) if pg_dump.exists() else "pg_dump", "-h", "127.0.0.1", "-p", str(postgres_server.port), "-U",
                           postgres_server.user, name], check=True, capture_output=True, timeout=60).stdout
    _assert_no_personal_data(dump)
    postgres_server.sql(f"DROP DATABASE {name} WITH (FORCE)")
