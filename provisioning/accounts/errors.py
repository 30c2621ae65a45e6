"""Errors of the account use-cases; each says what the person can do next."""

from __future__ import annotations

from provisioning.errors import DomainError


class DuplicateUser(DomainError):
    code = "duplicate-user"
    title = "User already exists"


class InvitationUnavailable(DomainError):
    code = "invitation-unavailable"
    title = "Invitation used or expired"


class SigninFailed(DomainError):
    code = "signin-failed"
    title = "Sign-in failed"


class SigninThrottled(DomainError):
    code = "signin-throttled"
    title = "Too many failed sign-ins"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


# HTTP status of each, for the pages and any API that surfaces them.
STATUS: dict[type[DomainError], int] = {
    DuplicateUser: 409,
    InvitationUnavailable: 410,
    SigninFailed: 401,
    SigninThrottled: 429,
}
