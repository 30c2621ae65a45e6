"""Two-person control use-cases: request, grant, reject, expire — each committed with its events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.approvals import policy, store
from gateway.approvals.errors import ApprovalExpired, PreconditionChanged
from gateway.approvals.operations import OPERATIONS, Operation, Payload, Result
from gateway.approvals.policy import Approval, Principal, Status
from gateway.commands import Commands
from provisioning import ids
from provisioning.accounts.schema import users
from provisioning.events import Event, Outcome
from provisioning.schema import tokens
from provisioning.validation import rfc3339


async def principal_of(conn: AsyncConnection, actor: str) -> Principal:
    """The actor and the person behind it: a token issued by a signed-in user is theirs."""
    if actor.startswith("token:"):
        issuer = await conn.scalar(
            select(tokens.c.created_by).where(tokens.c.id == actor.removeprefix("token:"))
        )
        if isinstance(issuer, str) and issuer.startswith("user:"):
            return Principal(actor, issuer)
    return Principal(actor, actor)


async def _still_entitled(conn: AsyncConnection, actor: str) -> bool:
    """Whether the requester could still ask: its token unrevoked, its account active."""
    if actor.startswith("token:"):
        row = (await conn.execute(select(tokens.c.revoked_at).where(
            tokens.c.id == actor.removeprefix("token:")))).first()
        return row is not None and row.revoked_at is None
    if actor.startswith("user:"):
        status = await conn.scalar(
            select(users.c.status).where(users.c.id == actor.removeprefix("user:")))
        return status == "active"
    return True  # cli:<login>: whoever can run the CLI on the data dir


def _event(kind: str, approval: Approval, operation: Operation, **extra: str) -> Event:
    attrs: dict[str, str | int] = {
        "approval_id": approval.id,
        "kind": approval.kind,
        "requested_by": approval.requested_by,
        **{f"subject_{k}": v for k, v in operation.summary(approval.payload).items()},
        **extra,
    }
    return Event(f"approval.{kind}", attrs)


class Approvals:
    """Sensitive operations wait here until a second, different ops principal decides."""

    def __init__(
        self,
        *,
        commands: Commands,
        required: bool,
        expiry_hours: float,
        operations: Mapping[str, Operation] = OPERATIONS,
    ) -> None:
        self.commands = commands
        self.required = required
        self.expiry_hours = expiry_hours
        self.operations = operations

    def _now(self) -> datetime:
        return self.commands.clock.now()

    def describe(self, approval: Approval) -> dict[str, str | int]:
        return self.operations[approval.kind].summary(approval.payload)

    async def request(self, kind: str, payload: Payload, *, actor: str) -> Approval:
        """File a pending approval (`approval.requested`); refuses what could never be granted."""
        operation = self.operations[kind]

        async def step(conn: AsyncConnection) -> Outcome[Approval]:
            await operation.check(conn, payload, actor)
            who = await principal_of(conn, actor)
            now = self._now()
            approval = Approval(
                id=ids.new_id(), kind=kind, status=Status.PENDING, payload=dict(payload),
                requested_by=who.actor, requested_person=who.person, requested_at=now,
                expires_at=policy.expiry(now, self.expiry_hours),
            )
            await store.insert_approval(conn, approval)
            event = _event("requested", approval, operation,
                           expires_at=rfc3339(approval.expires_at), actor=actor)
            return Outcome(approval, (event,))

        return await self.commands.run(step)

    async def grant(self, approval_id: str, *, actor: str) -> tuple[Approval, Result]:
        """Perform the operation as its requester, after re-checking its preconditions.

        `approval.granted` and the operation's own events commit together, in that order.
        """

        async def step(conn: AsyncConnection) -> Outcome[tuple[Approval, Result | None]]:
            approval = await store.get_approval(conn, approval_id, lock=True)
            now = self._now()
            if policy.is_due(approval, now):
                expired = await self._expire(conn, approval, now)
                return Outcome((expired.value, None), expired.events)
            policy.check_decision(approval, await principal_of(conn, actor), now, grant=True)
            if not await _still_entitled(conn, approval.requested_by):
                raise PreconditionChanged(
                    f"{approval.requested_by}, who requested this, has since been revoked or "
                    "disabled; reject this approval"
                )
            operation = self.operations[approval.kind]
            granted = await store.record_decision(conn, approval, Status.GRANTED, by=actor,
                                                  now=now)
            done = await operation.perform(conn, approval.payload, approval.requested_by, now)
            event = _event("granted", granted, operation, decided_by=actor, actor=actor)
            return Outcome((granted, done.value), (event, *done.events))

        approval, result = await self.commands.run(step)
        if result is None:
            raise _expired(approval)
        return approval, result

    async def reject(self, approval_id: str, *, actor: str, reason: str | None) -> Approval:
        """Refuse it (its requester may too, to withdraw it); nothing of it happens."""

        async def step(conn: AsyncConnection) -> Outcome[Approval]:
            approval = await store.get_approval(conn, approval_id, lock=True)
            now = self._now()
            if policy.is_due(approval, now):
                return await self._expire(conn, approval, now)
            policy.check_decision(approval, await principal_of(conn, actor), now, grant=False)
            rejected = await store.record_decision(conn, approval, Status.REJECTED, by=actor,
                                                   now=now, reason=reason)
            extra = {"reason": reason} if reason else {}
            event = _event("rejected", rejected, self.operations[approval.kind],
                           decided_by=actor, actor=actor, **extra)
            return Outcome(rejected, (event,))

        approval = await self.commands.run(step)
        if approval.status is Status.EXPIRED:
            raise _expired(approval)
        return approval

    async def _expire(
        self, conn: AsyncConnection, approval: Approval, now: datetime
    ) -> Outcome[Approval]:
        expired = await store.record_decision(conn, approval, Status.EXPIRED, by="system",
                                              now=now)
        event = _event("expired", expired, self.operations[approval.kind],
                       decided_by="system", actor="system")
        return Outcome(expired, (event,))

    async def expire_due(self) -> int:
        """Expire every pending approval whose time is up (`approval.expired` each)."""

        async def step(conn: AsyncConnection) -> Outcome[int]:
            now = self._now()
            events: list[Event] = []
            for approval_id in await store.due_ids(conn, now):
                approval = await store.get_approval(conn, approval_id, lock=True)
                if policy.is_due(approval, now):
                    events.extend((await self._expire(conn, approval, now)).events)
            return Outcome(len(events), tuple(events))

        return await self.commands.run(step)

    async def list(self, *, status: Status | None = None, limit: int = 100) -> list[Approval]:
        async with self.commands.db.read() as conn:
            return await store.list_approvals(conn, status=status, limit=limit)

    async def get(self, approval_id: str) -> Approval:
        async with self.commands.db.read() as conn:
            return await store.get_approval(conn, approval_id)

    def view(self, approval: Approval) -> dict[str, Any]:
        operation = self.operations[approval.kind]
        return {
            "id": approval.id,
            "kind": approval.kind,
            "description": operation.description,
            "status": approval.status.value,
            "subject": operation.summary(approval.payload),
            "requested_by": approval.requested_by,
            "requested_at": rfc3339(approval.requested_at),
            "expires_at": rfc3339(approval.expires_at),
            "decided_by": approval.decided_by,
            "decided_at": rfc3339(approval.decided_at) if approval.decided_at else None,
            "reason": approval.reason,
        }


def _expired(approval: Approval) -> ApprovalExpired:
    return ApprovalExpired(
        f"approval {approval.id} expired at {rfc3339(approval.expires_at)} and did "
        "nothing; request the operation again"
    )
