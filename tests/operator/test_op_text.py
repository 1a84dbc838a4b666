"""Sanitising (URL userinfo/query stripped, secret values and their base64 masked) and
semver range resolution over tags."""

from __future__ import annotations

import base64

import pytest
from kubesoar_operator import semver
from kubesoar_operator.gitsource import Credentials
from kubesoar_operator.sanitize import clean_url, sanitize


def test_clean_url_drops_userinfo_query_and_fragment() -> None:
    assert clean_url("https://bob:pw@git.example.com:8443/a.git?token=x#f") == (
        "https://git.example.com:8443/a.git"
    )


def test_sanitize_masks_secrets_in_any_encoding() -> None:
    creds = Credentials(username="bob", password="hunter22-secret")
    header = base64.b64encode(b"bob:hunter22-secret").decode()
    text = (
        "fatal: unable to access 'https://bob:hunter22-secret@h/a.git?private_token=abc': "
        f"sent Authorization: Basic {header}; password hunter22-secret"
    )
    out = sanitize(text, creds.secret_values())
    assert "hunter22-secret" not in out and header not in out and "abc" not in out
    assert "https://h/a.git" in out


def test_credentials_repr_names_kinds_only() -> None:
    creds = Credentials(username="bob", password="hunter22", bearer_token="tok-123456")
    assert "hunter22" not in repr(creds) and "tok-123456" not in repr(creds)


def test_credentials_from_secret_data_requires_a_usable_kind() -> None:
    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    assert Credentials.from_secret_data({"bearerToken": b64("t0ken")}).bearer_token == "t0ken"
    with pytest.raises(Exception, match="none of"):
        Credentials.from_secret_data({"username": b64("bob")})
    with pytest.raises(Exception, match="known_hosts"):
        Credentials.from_secret_data({"identity": b64("KEY")})


TAGS = ["v0.9.0", "v1.0.0", "v1.2.0", "v1.2.7", "v1.3.0-rc.1", "v2.0.0", "2.1.0", "latest"]


@pytest.mark.parametrize(
    ("rng", "expected"),
    [
        (">=1.0.0 <2.0.0", "v1.2.7"),
        ("^1.0", "v1.2.7"),
        ("~1.2.0", "v1.2.7"),
        ("1.2.x", "v1.2.7"),
        ("*", "2.1.0"),
        (">=1.0.0, <1.2.5", "v1.2.0"),
        ("<1", "v0.9.0"),
        ("=1.0.0", "v1.0.0"),
        (">=1.3.0-rc.0 <1.4", "v1.3.0-rc.1"),
        (">=3 || ~1.0", "v1.0.0"),
        (">=5", None),
    ],
)
def test_semver_picks_the_highest_matching_tag(rng: str, expected: str | None) -> None:
    assert semver.highest_matching(rng, TAGS) == expected


@pytest.mark.parametrize("bad", ["", ">=banana", "1.2.3.4", "=> 1"])
def test_semver_rejects_malformed_ranges(bad: str) -> None:
    with pytest.raises(ValueError):
        semver.parse_range(bad)
