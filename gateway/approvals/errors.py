"""Why an approval, or a decision on one, was refused; each says what to do instead."""

from __future__ import annotations

from provisioning.errors import DomainError


class SamePrincipal(DomainError):
    code = "approval-same-principal"
    title = "A second person must decide"


class ApprovalExpired(DomainError):
    code = "approval-expired"
    title = "Approval expired"


class ApprovalDecided(DomainError):
    code = "approval-decided"
    title = "Approval already decided"


class PreconditionChanged(DomainError):
    code = "approval-precondition-changed"
    title = "Changed since it was requested"


class ApprovalsOff(DomainError):
    code = "approvals-off"
    title = "Two-person control is off"


# HTTP status of each (registered in gateway.http.middlewares).
STATUS: dict[type[DomainError], int] = {
    SamePrincipal: 403,
    ApprovalExpired: 409,
    ApprovalDecided: 409,
    PreconditionChanged: 409,
    ApprovalsOff: 409,
}
