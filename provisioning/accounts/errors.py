"""Errors of the account use-cases; each says what the person can do next."""

from __future__ import annotations

from provisioning.errors import DomainError


class DuplicateUser(DomainError):
    status = 409
    code = "duplicate-user"
    title = "User already exists"


class InvitationUnavailable(DomainError):
    status = 410
    code = "invitation-unavailable"
    title = "Invitation used or expired"


class SigninFailed(DomainError):
    status = 401
    code = "signin-failed"
    title = "Sign-in failed"


class SigninThrottled(DomainError):
    status = 429
    code = "signin-throttled"
    title = "Too many failed sign-ins"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)
