from hypothesis import given
from hypothesis import strategies as st

from scheduler.services.allowlist import Allowlist

ALLOW = Allowlist(["kommune.example", "ekstern.konsulent@firma.example"])


def test_exact_domain_only():
    assert ALLOW.permits("anne@kommune.example")
    assert ALLOW.permits("Anne@Kommune.Example")
    assert not ALLOW.permits("x@kommune.example.evil.example")
    assert not ALLOW.permits("x@evilkommune.example")
    assert not ALLOW.permits("x@sub.kommune.example")


def test_full_addresses_and_garbage():
    assert ALLOW.permits("ekstern.konsulent@firma.example")
    assert not ALLOW.permits("andre@firma.example")
    for bad in ("", None, "kommune.example", "@kommune.example", "a@b@kommune.example"):
        assert not ALLOW.permits(bad)


@given(st.text(alphabet="abc.-", min_size=1, max_size=12))
def test_no_suffix_trick_passes(prefix):
    assert not ALLOW.permits(f"x@{prefix}kommune.example")
    assert not ALLOW.permits(f"x@kommune.example.{prefix}")
