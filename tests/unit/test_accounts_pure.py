"""Pure parts of accounts and pages: password rules, redirects, secrets kept out of reprs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.web.render import CONTENT_SECURITY_POLICY
from gateway.web.signin import _safe_next
from provisioning.accounts.passwords import Passwords, check_new_password
from provisioning.accounts.sessions import NewSession
from provisioning.accounts.users import Activation, UserRole
from provisioning.errors import InvalidInput

CHEAP = Passwords(time_cost=1, memory_kib=8192, parallelism=1)


def test_argon2id_hashes_verify_only_the_right_password() -> None:
    stored = CHEAP.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert CHEAP.verify(stored, "correct horse battery")
    assert not CHEAP.verify(stored, "correct horse batterY")
    assert not CHEAP.verify(None, "correct horse battery")  # no account: the decoy never passes
    assert not CHEAP.verify("not a hash", "x")


@pytest.mark.parametrize("value", ["short", " " * 20, 12345678901234, "x" * 257])
def test_weak_or_odd_passwords_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_new_password("password", value)
    assert refused.value.field == "password"


@pytest.mark.parametrize(
    ("wanted", "role", "expected"),
    [
        ("/portal/devices/abc", UserRole.TENANT, "/portal/devices/abc"),
        ("/console/audit?type=x", UserRole.OPS, "/console/audit?type=x"),
        ("/console", UserRole.TENANT, "/portal"),
        ("//evil.example/portal", UserRole.TENANT, "/portal"),
        ("https://evil.example/portal", UserRole.TENANT, "/portal"),
        ("/portal\\@evil.example", UserRole.TENANT, "/portal"),
        ("", UserRole.OPS, "/console"),
    ],
)
def test_after_sign_in_only_a_local_page_of_the_users_area_is_followed(
    wanted: str, role: UserRole, expected: str
) -> None:
    assert _safe_next(wanted, role) == expected


def test_secrets_stay_out_of_reprs() -> None:
    assert "JBSWY3DPEHPK3PXP" not in repr(Activation("$argon2id$x", "JBSWY3DPEHPK3PXP", 1))
    session = NewSession("session-secret-token", "csrf-secret", datetime(2026, 1, 1, tzinfo=UTC))
    assert "session-secret-token" not in repr(session) and "csrf-secret" not in repr(session)


def test_the_content_security_policy_allows_no_inline_code() -> None:
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
