"""Why an approval, or a decision on one, was refused; each says what to do instead."""

from __future__ import annotations

from provisioning.errors import DomainError


class SamePrincipal(DomainError):
    status = 403
    code = "approval-same-principal"
    title = "A second person must decide"


class ApprovalExpired(DomainError):
    status = 409
    code = "approval-expired"
    title = "Approval expired"


class ApprovalDecided(DomainError):
    status = 409
    code = "approval-decided"
    title = "Approval already decided"


class PreconditionChanged(DomainError):
    status = 409
    code = "approval-precondition-changed"
    title = "Changed since it was requested"


class ApprovalsOff(DomainError):
    status = 409
    code = "approvals-off"
    title = "Two-person control is off"

