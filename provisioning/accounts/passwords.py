"""Argon2id password hashes (RFC 9106) and the rules a new password must meet."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from provisioning.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 256


def check_new_password(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not MIN_LENGTH <= len(value) <= MAX_LENGTH:
        raise InvalidInput(field, f"must be {MIN_LENGTH} to {MAX_LENGTH} characters long")
    if not value.strip():
        raise InvalidInput(field, "must not be only spaces")
    return value


class Passwords:
    """Hash and check passwords; slow on purpose, so callers run it off the event loop."""

    def __init__(
        self, *, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4
    ) -> None:
        # RFC 9106's second recommended option (64 MiB, 3 passes).
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Checked when the account does not exist, so such a sign-in costs the same time;
        # made on first use so creating the service stays cheap.
        self._decoy: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        if stored is None and self._decoy is None:
            self._decoy = self._hasher.hash("no such account: a decoy to keep timing even")
        try:
            return self._hasher.verify(stored or self._decoy or "", password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False
