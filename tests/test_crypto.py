"""Field encryption, lookup hashes and the rules for finding the master key."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.errors import KeyMissingError
from scheduler.store.crypto import DecryptionError, FieldCipher
from scheduler.store.keys import ENV_VAR, load_key, new_key, parse_key

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
CIPHER = FieldCipher(KEY)

# -- FieldCipher --------------------------------------------------------------


def test_round_trip_and_layout():
    blob = CIPHER.encrypt("070761-4285", context="items.cpr")
    assert CIPHER.decrypt(blob, context="items.cpr") == "070761-4285"
    assert blob[0] == 1 and blob[1] == 1  # format version, key id
    assert len(blob) == 2 + 12 + len("070761-4285") + 16
    assert b"070761" not in blob


def test_fresh_nonce_per_value():
    first = CIPHER.encrypt("same", context="c")
    second = CIPHER.encrypt("same", context="c")
    assert first != second
    assert first[2:14] != second[2:14]


def test_wrong_key_fails_with_one_sentence():
    blob = CIPHER.encrypt("Angst og søvnproblemer", context="items.text")
    with pytest.raises(DecryptionError) as caught:
        FieldCipher(OTHER).decrypt(blob, context="items.text")
    assert "secret key is wrong" in str(caught.value)
    assert "Angst" not in str(caught.value)


def test_context_swap_fails():
    blob = CIPHER.encrypt("0707614285", context="items.cpr")
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(blob, context="items.text")


def test_tampering_fails():
    blob = bytearray(CIPHER.encrypt("hemmeligt", context="c"))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(bytes(blob), context="c")
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(b"\x01", context="c")


def test_memoryview_from_postgres_is_accepted():
    blob = CIPHER.encrypt("x", context="c")
    assert CIPHER.decrypt(memoryview(blob), context="c") == "x"


def test_json_round_trip_keeps_danish_letters():
    value = {"health": ["Søvnbesvær, angst"], "social": ["Mistet bolig på Østerbro"]}
    blob = CIPHER.encrypt_json(value, context="items.text")
    assert CIPHER.decrypt_json(blob, context="items.text") == value


def test_rotation_reads_old_key_ids_and_writes_the_new_one():
    old_blob = FieldCipher(KEY, key_id=1).encrypt("gammel", context="c")
    rotated = FieldCipher(OTHER, key_id=2, previous={1: KEY})
    assert rotated.decrypt(old_blob, context="c") == "gammel"
    new_blob = rotated.encrypt("ny", context="c")
    assert new_blob[1] == 2
    with pytest.raises(DecryptionError, match="key id 2"):
        FieldCipher(KEY, key_id=1).decrypt(new_blob, context="c")


def test_bad_master_key_is_refused():
    with pytest.raises(ValueError):
        FieldCipher(b"short")


def test_lookup_hash_is_stable_keyed_and_purpose_bound():
    digest = CIPHER.lookup_hash("0707614285", purpose="cpr")
    assert digest == FieldCipher(KEY).lookup_hash("0707614285", purpose="cpr")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest != FieldCipher(OTHER).lookup_hash("0707614285", purpose="cpr")
    assert digest != CIPHER.lookup_hash("0707614285", purpose="message-id")
    assert digest != CIPHER.lookup_hash("0707614286", purpose="cpr")
    assert "0707614285" not in digest


def test_lookup_and_encryption_keys_are_separate():
    # The HMAC key is not the AES key: a hash computed with the raw master key differs.
    import hashlib
    import hmac

    raw = hmac.new(KEY, b"cpr\x000707614285", hashlib.sha256).hexdigest()
    assert CIPHER.lookup_hash("0707614285", purpose="cpr") != raw


@given(st.text(), st.text(min_size=1, max_size=30))
def test_any_text_round_trips(text, context):
    assert CIPHER.decrypt(CIPHER.encrypt(text, context=context), context=context) == text


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=10))
def test_any_json_round_trips(value):
    assert CIPHER.decrypt_json(CIPHER.encrypt_json(value, context="j"), context="j") == value


# -- keys ---------------------------------------------------------------------


def _key_file(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_new_key_is_32_random_bytes_in_urlsafe_base64():
    key = new_key()
    assert len(key) == 44
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert parse_key(key, "x") == base64.urlsafe_b64decode(key)
    assert new_key() != key


def test_environment_comes_first(tmp_path):
    env_key = new_key()
    file = _key_file(tmp_path / "k", new_key())
    key, origin = load_key({ENV_VAR: env_key}, str(file), tmp_path, True)
    assert key == base64.urlsafe_b64decode(env_key)
    assert ENV_VAR in origin and env_key not in origin
    assert not (tmp_path / "secret.key").exists()


def test_key_file_is_second(tmp_path):
    text = new_key()
    file = _key_file(tmp_path / "k", text + "\n")
    key, origin = load_key({}, str(file), tmp_path, True)
    assert key == base64.urlsafe_b64decode(text)
    assert str(file) in origin


def test_demo_creates_a_private_key_once(tmp_path):
    data = tmp_path / "var"
    key, origin = load_key({}, None, data, True)
    path = data / "secret.key"
    assert "created" in origin and str(path) in origin
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, origin2 = load_key({}, None, data, True)
    assert again == key and "created" not in origin2
    assert [p.name for p in data.iterdir()] == ["secret.key"]


def test_no_key_refuses_with_instructions(tmp_path):
    with pytest.raises(KeyMissingError) as caught:
        load_key({}, None, tmp_path, False)
    message = str(caught.value)
    for hint in ("sparring keygen", ENV_VAR, "service.key_file", "--demo"):
        assert hint in message
    assert not (tmp_path / "secret.key").exists()


def test_missing_key_file_is_named(tmp_path):
    with pytest.raises(KeyMissingError, match="does not exist"):
        load_key({}, str(tmp_path / "nope"), tmp_path, False)


@pytest.mark.parametrize("bad", ["not-a-key", "QUJD", new_key()[:-4], new_key() + "AAAA", "æøå" * 15])
def test_malformed_key_names_origin_not_value(tmp_path, bad):
    with pytest.raises(KeyMissingError) as caught:
        load_key({ENV_VAR: bad}, None, tmp_path, False)
    assert ENV_VAR in str(caught.value) and bad not in str(caught.value)
    file = _key_file(tmp_path / "k", bad)
    with pytest.raises(KeyMissingError, match=str(file)):
        load_key({}, str(file), tmp_path, False)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path, mode):
    file = _key_file(tmp_path / "k", new_key(), mode)
    with pytest.raises(KeyMissingError, match="chmod 600"):
        load_key({}, str(file), tmp_path, False)


def test_demo_key_with_loose_permissions_is_refused(tmp_path):
    _key_file(tmp_path / "secret.key", new_key(), 0o644)
    with pytest.raises(KeyMissingError, match="accessible to other users"):
        load_key({}, None, tmp_path, True)


def test_blank_environment_variable_falls_through(tmp_path):
    with pytest.raises(KeyMissingError, match="No secret key"):
        load_key({ENV_VAR: "  "}, None, tmp_path, False)
    assert os.environ.get("UNRELATED_SENTINEL") is None
