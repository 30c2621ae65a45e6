"""A regulator query as one use-case: scope, lookup, replay check, logging, proofs, answer.

The HTTP handler parses the request and checks its signature; this module decides what
the answer is. Its order is the accountability rule of DESIGN section 6: the query is
committed to the log (and the log has sequenced it) before an answer exists, and a
query that cannot be logged is not answered. The work takes two reads and one write:

1. one read: whether the outbox still holds events, and if not the lookup itself in
   the same snapshot (so the answer holds everything committed before the query);
   with events waiting, the lookup waits for the sequencer's next pass first;
2. one write: the nonce (a replay is refused here, so it is never answered; the
   nonce's uniqueness decides between two copies of one request racing) and the
   ``regulator.query`` event, together;
3. the sequencer's next pass (shared with its background loop), waited for with a
   bound: past it the query is refused with 503 and Retry-After, and stays logged;
4. one read: the newest checkpoint, its cosignatures and the inclusion proofs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.log import AuditLog, AuditLogError, LogEntry
from gateway.audit.outbox import append_events, has_pending
from gateway.audit.sequencer import Sequencer
from gateway.audit.witnessing import Witnessing
from gateway.clock import Clock
from gateway.db import Database
from gateway.regulator import registry
from gateway.regulator.httpsig import NonceError, VerifiedRequest
from gateway.regulator.queries import Findings, find_entries
from gateway.regulator.registry import RegulatorKey
from gateway.regulator.request import RegulatorRequest, check_scope
from gateway.settings import RegulatorSettings
from provisioning.errors import DomainError
from provisioning.events import Event

log = structlog.get_logger("vpngw.regulator")

QUERY_EVENT = "regulator.query"


class NotLogged(DomainError):
    """The query could not be recorded in the log in time, so it is not answered."""

    status = 503
    code = "not-logged"
    title = "Query not answered"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)


@dataclass(frozen=True)
class _Found:
    findings: Findings
    entries: list[LogEntry]  # readable, oldest first, at most max_hits + 1


def query_event(req: RegulatorRequest, *, keyid: str, body: bytes, result_count: int) -> Event:
    """What the log keeps of a query: who asked, under what, and a hash instead of the
    query itself (staff reading the log learn that a query was made, not about whom)."""
    return Event(QUERY_EVENT, {
        "request_country": req.request_id["country"],
        "request_authority": req.request_id["authority"],
        "request_number": req.request_id["number"],
        "key_id": keyid,
        "authorisation_reference": req.authorisation.reference,
        # For the public transparency report's counts by legal basis.
        "legal_basis": req.authorisation.legal_basis,
        "query_kind": req.query.kind,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "result_count": result_count,
    })


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class RegulatorService:
    """Answers verified regulator queries; one per process."""

    def __init__(
        self,
        *,
        db: Database,
        audit_log: AuditLog,
        sequencer: Sequencer,
        witnessing: Witnessing,
        clock: Clock,
        settings: RegulatorSettings,
    ) -> None:
        self.db = db
        self.audit_log = audit_log
        self.sequencer = sequencer
        self.witnessing = witnessing
        self.clock = clock
        self.settings = settings

    async def active_key(self, keyid: str) -> RegulatorKey | None:
        async with self.db.read() as conn:
            return await registry.active_key(conn, keyid)

    async def list_keys(self) -> list[RegulatorKey]:
        async with self.db.read() as conn:
            return await registry.list_keys(conn)

    async def checkpoint(self) -> str:
        """The newest signed checkpoint with its cosignatures, as served publicly."""
        await self.witnessing.cosign_newest()
        async with self.db.read() as conn:
            size, note = await self.audit_log.latest_checkpoint(conn)
            return await self.witnessing.with_cosignatures(size, note, conn)

    async def answer(
        self, req: RegulatorRequest, document: Mapping[str, Any], *,
        verified: VerifiedRequest, body: bytes,
    ) -> dict[str, Any]:
        """The answer value for a verified request (DESIGN section 6), once it is logged.

        Raises ScopeError (outside the authorisation), NonceError (a replay: nothing is
        logged) or NotLogged (503: retry later).
        """
        check_scope(req, now=self.clock.now())
        found = await self._look_up(req)
        truncated = len(found.entries) > req.max_hits
        entries = found.entries[: req.max_hits]
        await self._log(query_event(req, keyid=verified.keyid, body=body,
                                    result_count=len(entries)), verified)
        checkpoint, proofs = await self._proofs([e.index for e in entries])
        records = [
            {
                "index": e.index,
                "leaf": _b64(e.leaf or b""),
                "event": e.event(),
                "inclusion_proof": [_b64(h) for h in proofs[e.index]],
            }
            for e in entries
        ]
        answer: dict[str, Any] = {
            "request_id": document["request_id"],
            "query": document["query"],
            "truncated": truncated,
            "checkpoint": checkpoint,
            "records": records,
        }
        derivation = found.findings.derivation_fields()
        if derivation is not None and records:
            answer["derivation"] = derivation
        return answer

    async def _look_up(self, req: RegulatorRequest) -> _Found:
        async with self.db.read() as conn:
            if not await has_pending(conn):
                return await self._find(conn, req)
        # Events committed before the query are still in the outbox: the answer must
        # include them, so the lookup waits until the sequencer has moved them.
        await self._wait_for_log("events committed before the query are not in the log yet")
        async with self.db.read() as conn:
            return await self._find(conn, req)

    async def _find(self, conn: AsyncConnection, req: RegulatorRequest) -> _Found:
        findings = await find_entries(conn, req.query, limit=req.max_hits + 1)
        # The entries are read now, in the lookup's snapshot, so the logged result_count
        # is exactly what the answer carries even if retention erases one meanwhile.
        entries = await self.audit_log.entries(findings.indexes, conn)
        readable = [e for e in entries if e.leaf is not None]
        return _Found(findings, readable[: req.max_hits + 1])

    async def _log(self, event: Event, verified: VerifiedRequest) -> None:
        now = self.clock.now()
        try:
            async with self.db.write() as conn:
                # Nonces matter only until their signature expires (an expired signature
                # is refused anyway); the skew margin covers replicas whose clocks differ.
                await registry.forget_expired_nonces(
                    conn, now=now - timedelta(seconds=self.settings.clock_skew_seconds))
                fresh = await registry.remember_nonce(
                    conn, keyid=verified.keyid, nonce=verified.nonce,
                    expires_at=datetime.fromtimestamp(verified.expires, UTC),
                    is_postgres=not self.db.is_sqlite)
                if not fresh:  # raised inside: the event is rolled back with it
                    raise NonceError(
                        f"nonce {verified.nonce!r} was already used with key "
                        f"{verified.keyid!r}; sign every request with a fresh random nonce")
                await append_events(conn, [event], now=now)
        except (SQLAlchemyError, OSError) as exc:
            raise NotLogged(
                "the query could not be recorded in the audit log, so it is not answered; "
                "retry later", retry_after=1) from exc
        await self._wait_for_log("the query is recorded but not in the log yet")

    async def _wait_for_log(self, what: str) -> None:
        """Until the sequencer's next pass is done; NotLogged past the bound or on failure."""
        wait = self.settings.log_wait_seconds
        retry = max(1, math.ceil(wait))
        try:
            async with asyncio.timeout(wait):
                await self.sequencer.drain()
        except TimeoutError as exc:
            log.warning("regulator query waited too long for the log", seconds=wait)
            raise NotLogged(f"{what} after {wait:g} s, so the query is not answered; retry "
                            "later with a freshly signed request", retry_after=retry) from exc
        except Exception as exc:  # whatever stops the sequencer, the query is not answered
            log.exception("the log could not take in a regulator query")
            raise NotLogged(f"{what}: the audit log is failing to take in entries, so the "
                            "query is not answered; retry later with a freshly signed request",
                            retry_after=retry) from exc

    async def _proofs(self, indexes: list[int]) -> tuple[str, dict[int, list[bytes]]]:
        await self.witnessing.cosign_newest()
        try:
            # One read: the checkpoint and the proofs agree.
            async with self.db.read() as conn:
                size, checkpoint = await self.audit_log.latest_checkpoint(conn)
                checkpoint = await self.witnessing.with_cosignatures(size, checkpoint, conn)
                proofs = await self.audit_log.inclusion_proofs(indexes, size, conn)
        except (SQLAlchemyError, AuditLogError, OSError) as exc:
            raise NotLogged("the log's proofs could not be read; retry later",
                            retry_after=1) from exc
        return checkpoint, proofs
