"""The approval state machine, pure: who may decide, and when it is too late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.approvals.errors import ApprovalDecided, ApprovalExpired, SamePrincipal
from gateway.approvals.policy import Approval, Principal, Status, check_decision, expiry, is_due

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def pending(**fields: object) -> Approval:
    base: dict[str, object] = dict(
        id="a-1", kind="regulator_key.revoke", status=Status.PENDING, payload={"keyid": "k"},
        requested_by="token:aaaaaaaaaaaa", requested_person="user:alice", requested_at=T0,
        expires_at=expiry(T0, 24),
    )
    return Approval(**{**base, **fields})  # type: ignore[arg-type]


BOB = Principal("token:bbbbbbbbbbbb", "token:bbbbbbbbbbbb")


def test_another_principal_may_grant_until_it_expires() -> None:
    check_decision(pending(), BOB, T0 + timedelta(hours=23, minutes=59), grant=True)
    assert not is_due(pending(), T0 + timedelta(hours=23, minutes=59))
    assert is_due(pending(), T0 + timedelta(hours=24))
    with pytest.raises(ApprovalExpired, match="did nothing"):
        check_decision(pending(), BOB, T0 + timedelta(hours=24), grant=True)


@pytest.mark.parametrize("decider", [
    Principal("token:aaaaaaaaaaaa", "token:aaaaaaaaaaaa"),  # the same token
    Principal("user:alice", "user:alice"),  # the person whose token asked
    Principal("token:cccccccccccc", "user:alice"),  # another token of that person
])
def test_the_requester_cannot_grant_but_may_withdraw(decider: Principal) -> None:
    with pytest.raises(SamePrincipal, match="different ops principal"):
        check_decision(pending(), decider, T0, grant=True)
    check_decision(pending(), decider, T0, grant=False)


@pytest.mark.parametrize("status", [Status.GRANTED, Status.REJECTED, Status.EXPIRED])
def test_a_decided_approval_is_final(status: Status) -> None:
    decided = pending(status=status, decided_by="token:bbbbbbbbbbbb", decided_at=T0)
    assert not is_due(decided, T0 + timedelta(days=2))
    for grant in (True, False):
        with pytest.raises(ApprovalDecided, match=status.value):
            check_decision(decided, BOB, T0, grant=grant)
