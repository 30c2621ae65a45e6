"""The approval state machine, pure: pending → granted | rejected | expired, and who may decide.

No I/O: the store reads and writes rows, the service runs this under the row's lock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.approvals.errors import ApprovalDecided, ApprovalExpired, SamePrincipal


class Status(enum.StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Principal:
    """Who acts: `actor` as audit events name it (token:…, user:…, cli:…), and the person
    behind it when the model knows one (a token issued by a signed-in user is that user's)."""

    actor: str
    person: str

    @property
    def identities(self) -> frozenset[str]:
        return frozenset({self.actor, self.person})


@dataclass(frozen=True)
class Approval:
    id: str
    kind: str
    status: Status
    payload: dict[str, object] = field(compare=False)
    requested_by: str
    requested_person: str
    requested_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None

    @property
    def requester(self) -> Principal:
        return Principal(self.requested_by, self.requested_person)


def expiry(requested_at: datetime, hours: float) -> datetime:
    return requested_at + timedelta(hours=hours)


def is_due(approval: Approval, now: datetime) -> bool:
    """A pending approval whose time is up: it can only expire now."""
    return approval.status is Status.PENDING and now >= approval.expires_at


def check_decision(approval: Approval, decider: Principal, now: datetime, *, grant: bool) -> None:
    """Raise unless `decider` may grant (or reject) `approval` now.

    Order matters: an approval that is no longer pending says so first, then an expired
    one (the caller records the expiry), then the same-person rule, which binds only a
    grant: whoever asked may still withdraw the request by rejecting it.
    """
    if approval.status is not Status.PENDING:
        raise ApprovalDecided(
            f"approval {approval.id} is already {approval.status.value}"
            + (f" (by {approval.decided_by})" if approval.decided_by else "")
            + "; request the operation again if it is still wanted",
            approval_status=approval.status.value,
        )
    if is_due(approval, now):
        raise ApprovalExpired(
            f"approval {approval.id} expired at {approval.expires_at.isoformat()} and did "
            "nothing; request the operation again",
        )
    if grant and approval.requester.identities & decider.identities:
        raise SamePrincipal(
            f"approval {approval.id} was requested by {approval.requested_by}; a different "
            "ops principal (another person's token or console account) must decide it",
        )
