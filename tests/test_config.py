"""Configuration loading: the shipped file is valid; every mistake is one sentence."""

import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.config import load_config
from scheduler.errors import ConfigError

SHIPPED = Path(__file__).parent.parent / "config" / "sparring.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sparring.toml"
    path.write_text(text, encoding="utf-8")
    return path


def shipped_with(old: str, new: str, tmp_path: Path) -> Path:
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text
    return write(tmp_path, text.replace(old, new, 1))


def test_shipped_config_models_the_rule_book():
    config = load_config(SHIPPED)
    young, adult = config.all_series()
    assert (young.min_age, young.max_age, young.cadence.value) == (15, 29, "weekly")
    assert young.capacity == 6 and young.deadline.days_before == 3
    assert (adult.min_age, adult.max_age, adult.cadence.value) == (30, None, "monthly")
    assert adult.capacity == 3 and adult.week_parity.value == "even"
    assert adult.deadline.weekday_before == 0 and adult.start.hour == 14
    addresses = [config.service.mailbox, config.service.admin, *young.coordinators, *adult.coordinators]
    assert all(a.endswith("@kommune.example") for a in addresses)


def test_unknown_key_names_file_key_and_line(tmp_path):
    path = shipped_with('weekday = "thursday"', 'weekday = "thursday"\ncolour = "blue"', tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    line = path.read_text().splitlines().index('colour = "blue"') + 1
    assert message.startswith(f"{path}: line {line}: series[0].colour: unknown key")
    assert "\n" not in message


def test_wrong_value_says_what_is_allowed(tmp_path):
    path = shipped_with('weekday = "wednesday"', 'weekday = "onsdag"', tmp_path)
    message = str(pytest.raises(ConfigError, load_config, path).value)
    assert "series[1].weekday" in message and "'onsdag'" in message and "wednesday" in message


def test_wrong_type_and_bad_time(tmp_path):
    path = shipped_with("duration = 60", 'duration = "an hour"', tmp_path)
    assert "series[0].duration" in str(pytest.raises(ConfigError, load_config, path).value)
    path = shipped_with('start = "14:00"', 'start = "2pm"', tmp_path)
    message = str(pytest.raises(ConfigError, load_config, path).value)
    assert "series[1].start" in message and "HH:MM" in message


def test_toml_syntax_error_gives_line(tmp_path):
    path = shipped_with('id = "unge"', 'id = "unge', tmp_path)
    message = str(pytest.raises(ConfigError, load_config, path).value)
    assert message.startswith(f"{path}: not valid TOML") and "line" in message


def test_missing_file(tmp_path):
    message = str(pytest.raises(ConfigError, load_config, tmp_path / "nope.toml").value)
    assert "not found" in message


def test_unknown_time_zone(tmp_path):
    path = shipped_with('timezone = "Europe/Copenhagen"', 'timezone = "Europe/Aarhus"', tmp_path)
    message = str(pytest.raises(ConfigError, load_config, path).value)
    assert "service.timezone" in message and "Europe/Aarhus" in message


def test_deadline_needs_exactly_one_rule(tmp_path):
    path = shipped_with("deadline = { days_before = 3, at = \"12:00\" }",
                        "deadline = { days_before = 3, weekday_before = \"monday\" }", tmp_path)
    message = str(pytest.raises(ConfigError, load_config, path).value)
    assert "series[0].deadline" in message and "exactly one" in message


def test_cli_reports_one_sentence_exit_2_no_traceback(tmp_path):
    path = shipped_with("slot_minutes = 10", "slot_minutes = 7", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "--config", str(path), "check-config"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "whole number of slots" in result.stderr


def test_check_config_ok():
    result = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "--config", str(SHIPPED), "check-config"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "voksne" in result.stdout


def test_unreachable_server_is_one_sentence_exit_4(tmp_path):
    text = SHIPPED.read_text(encoding="utf-8")
    text = text.replace('source = "folder"', 'source = "imap"', 1).replace("port = 993", "port = 1", 1)
    path = write(tmp_path, text)
    env = {**__import__("os").environ, "SPARRING_IMAP_PASSWORD": "x"}
    result = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "--config", str(path), "--data-dir", str(tmp_path / "var"),
         "--demo", "ingest"], capture_output=True, text=True, env=env,
    )
    assert result.returncode == 4
    assert "Traceback" not in result.stderr and "127.0.0.1:1" in result.stderr.splitlines()[-1]


def test_missing_key_refuses_to_start(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "SPARRING_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "--config", str(SHIPPED), "--data-dir", str(tmp_path),
         "agenda", "--series", "unge"], capture_output=True, text=True, env=env,
    )
    assert result.returncode == 2 and "sparring keygen" in result.stderr and "Traceback" not in result.stderr


def test_a_port_on_graph_needs_the_app_registration_ids(tmp_path):
    path = shipped_with('transport = "folder"', 'transport = "graph"', tmp_path)
    message = str(pytest.raises(ConfigError, load_config, path).value)
    line = path.read_text().splitlines().index('tenant_id = ""                      # Directory (tenant) ID from Entra ID') + 1
    assert message.startswith(f"{path}: line {line}: graph.tenant_id: required when outbox.transport = \"graph\"")
    text = path.read_text().replace('tenant_id = ""', 'tenant_id = "t"').replace('client_id = ""', 'client_id = "c"')
    assert load_config(write(tmp_path, text)).outbox.transport == "graph"


# -- issue 11, 19: transport security is checked when the file is loaded ------

INSECURE = [
    ('host = "127.0.0.1"\nport = 993\nsecurity = "tls"', 'host = "mail.kommune.example"\nport = 993\nsecurity = "none"',
     "intake.imap.security", "plaintext"),
    ('host = "127.0.0.1"\nport = 587\nsecurity = "starttls"', 'host = "10.0.0.7"\nport = 587\nsecurity = "none"',
     "outbox.smtp.security", "plaintext"),
    ('[calendar.caldav]\nurl = ""', '[calendar.caldav]\nurl = "http://caldav.kommune.example/dav/"',
     "calendar.caldav.url", "plain http"),
    ('service_endpoint = ""', 'service_endpoint = "http://mail.kommune.example/EWS/Exchange.asmx"',
     "exchange.service_endpoint", "plain http"),
    ("verify_tls = true", "verify_tls = false", "exchange.verify_tls", "certificate"),
    ('[storage]\nurl = ""', '[storage]\nurl = "postgresql://u:secret@db.kommune.example/db?sslmode=require"',
     "storage.url", "verify-full"),
    ('[storage]\nurl = ""', '[storage]\nurl = "postgresql://u:secret@/db?hostaddr=10.0.0.5"', "storage.url",
     "verify-full"),
    ('[storage]\nurl = ""', '[storage]\nurl = "postgresql://u:secret@/db?service=sparring"', "storage.url",
     "verify-full"),
]


@pytest.mark.parametrize(("old", "new", "key", "words"), INSECURE, ids=[case[2] for case in INSECURE])
def test_an_insecure_transport_is_refused_at_load_naming_file_line_and_key(tmp_path, old, new, key, words):
    path = shipped_with(old, new, tmp_path)
    message = str(pytest.raises(ConfigError, load_config, path).value)
    changed = next(line for line in new.splitlines() if line.startswith(key.rpartition(".")[2] + " ="))
    line = next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if text.startswith(changed))
    assert message.startswith(f"{path}: line {line}: {key}: ") and words in message
    assert message.endswith(".") and "\n" not in message and "secret" not in message


def test_check_config_refuses_what_run_refuses_one_sentence_per_mistake(tmp_path):
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new, _, _ in INSECURE[:6]:
        text = text.replace(old, new, 1)
    path = write(tmp_path, text)
    for command in ("check-config", "run"):
        result = subprocess.run([sys.executable, "-m", "scheduler.cli", "--config", str(path),
                                 "--data-dir", str(tmp_path / "var"), "--demo", command],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and "OK" not in result.stdout and "Traceback" not in result.stderr
        lines = result.stderr.removeprefix("sparring: ").splitlines()
        assert all(line.startswith(f"{path}: line ") for line in lines)
        assert [line.split(": ")[2] for line in lines] == [case[2] for case in INSECURE[:6]]


def test_loopback_plaintext_and_verified_tls_are_accepted(tmp_path):
    path = shipped_with('security = "tls"', 'security = "none"', tmp_path)  # to 127.0.0.1
    text = path.read_text(encoding="utf-8").replace(
        '[storage]\nurl = ""', '[storage]\nurl = "postgresql://u@db.kommune.example/db?sslmode=verify-full"')
    assert load_config(write(tmp_path, text)).intake.imap.security == "none"
