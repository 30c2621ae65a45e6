"""Getting the log's checkpoints cosigned by witnesses, and serving them with the cosignatures.

For each configured witness one worker at a time submits the newest checkpoint with a
consistency proof from the size the witness last cosigned (C2SP tlog-witness
add-checkpoint); a 409 tells the size the witness holds, and the submission is retried
from there. Cosignatures are verified before they are stored. A witness that is down or
refuses is reported (readiness detail, lag gauge) but never holds up the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import structlog
import yarl
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.cosignature import (
    CosignatureError,
    CosignerVerifier,
    parse_signature_lines,
    verify_cosignatures,
)
from gateway.audit.log import AuditLog, AuditLogError
from gateway.audit.note import MalformedNoteError, NoteError, open_note
from gateway.audit.schema import witness_cosignatures
from gateway.clock import Clock
from gateway.db import Database
from gateway.witness.protocol import SIZE_CONTENT_TYPE, render_add_checkpoint

log = structlog.get_logger("vpngw.witnessing")

__all__ = [
    "AiohttpTransport",
    "WitnessConfigError",
    "WitnessEndpoint",
    "WitnessTransport",
    "Witnessing",
    "parse_witness_entry",
]

_MAX_RETRIES = 3


class WitnessConfigError(ValueError):
    """A [witness] entry is not "<URL prefix> <witness vkey>"."""


@dataclass(frozen=True)
class WitnessEndpoint:
    url: str  # the submission prefix; add-checkpoint is appended
    verifier: CosignerVerifier

    @property
    def label(self) -> str:
        return self.verifier.label


def parse_witness_entry(entry: str) -> WitnessEndpoint:
    parts = entry.split()
    if len(parts) != 2:
        raise WitnessConfigError(
            f"{entry!r} must be \"<URL prefix> <witness vkey>\" separated by one space")
    url, vkey = parts
    parsed = yarl.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query_string:
        raise WitnessConfigError(f"{url!r} must be an http(s) URL prefix without a query")
    try:
        verifier = CosignerVerifier.from_vkey(vkey)
    except CosignatureError as exc:
        raise WitnessConfigError(f"{vkey!r}: {exc}") from exc
    return WitnessEndpoint(url.rstrip("/"), verifier)


class WitnessTransport(Protocol):
    async def post(self, url: str, body: bytes) -> tuple[int, str, bytes]:
        """POST ``body``; return (status, content type, body). Raises OSError when down."""


@dataclass
class WitnessStatus:
    """What this process knows of one witness."""

    endpoint: WitnessEndpoint
    cosigned_size: int | None = None  # of this log, as the witness last told us
    error: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def cosignature_lines(conn: AsyncConnection, size: int) -> list[str]:
    rows = await conn.execute(select(witness_cosignatures.c.line)
                              .where(witness_cosignatures.c.size == size)
                              .order_by(witness_cosignatures.c.witness))
    return [str(line) for (line,) in rows]


class Witnessing:
    """Keeps every witness up to date with the log; one per process."""

    def __init__(
        self, *, log: AuditLog, db: Database, witnesses: Sequence[WitnessEndpoint],
        transport: WitnessTransport, clock: Clock, answer_wait: float,
    ) -> None:
        self.log = log
        self.db = db
        self.transport = transport
        self.clock = clock
        self.answer_wait = answer_wait
        self.statuses = [WitnessStatus(w) for w in witnesses]
        self.log_size = 0

    # --- reading -----------------------------------------------------------------------

    async def with_cosignatures(self, size: int, note: str,
                                conn: AsyncConnection | None = None) -> str:
        """The signed checkpoint note with every stored cosignature line appended."""
        if not self.statuses:
            return note
        if conn is None:
            async with self.db.read() as c:
                lines = await cosignature_lines(c, size)
        else:
            lines = await cosignature_lines(conn, size)
        return note + "".join(lines)

    def lag(self, status: WitnessStatus) -> int:
        """Entries the witness is behind the newest checkpoint this process has seen."""
        return max(self.log_size - (status.cosigned_size or 0), 0)

    def lag_gauge(self, status: WitnessStatus) -> float:
        return float(self.lag(status))

    def report(self) -> dict[str, dict[str, object]]:
        return {s.endpoint.label: {"url": s.endpoint.url, "cosigned_size": s.cosigned_size,
                                   "lag_entries": self.lag(s), "error": s.error}
                for s in self.statuses}

    # --- submitting --------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Bring every witness to the newest checkpoint (each in parallel)."""
        await asyncio.gather(*(self._sync(s) for s in self.statuses))

    async def cosign_newest(self) -> None:
        """Before serving: give the witnesses that are up a bounded moment to cosign."""
        up = [s for s in self.statuses if s.error is None]
        if not up or self.answer_wait <= 0:
            return
        # return_exceptions: whatever goes wrong with a witness, the answer still goes out.
        work = asyncio.ensure_future(
            asyncio.gather(*(self._sync(s) for s in up), return_exceptions=True))
        # The work goes on after the wait ends; it is never cancelled half-way.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(work), timeout=self.answer_wait)

    async def _sync(self, status: WitnessStatus) -> None:
        async with status.lock:
            try:
                size, note = await self.log.latest_checkpoint()
                self.log_size = max(self.log_size, size)
                if size and status.cosigned_size != size:
                    await self._submit(status, size, note)
            except (OSError, TimeoutError, AuditLogError, NoteError, _Refused) as exc:
                status.error = str(exc) or exc.__class__.__name__
                log.warning("witness did not cosign", witness=status.endpoint.label,
                            url=status.endpoint.url, error=status.error)
            else:
                status.error = None

    async def _known_size(self, status: WitnessStatus) -> int:
        if status.cosigned_size is not None:
            return status.cosigned_size
        async with self.db.read() as conn:
            found = await conn.scalar(
                select(witness_cosignatures.c.size)
                .where(witness_cosignatures.c.witness == status.endpoint.label)
                .order_by(witness_cosignatures.c.size.desc()).limit(1))
        return int(found or 0)

    async def _submit(self, status: WitnessStatus, size: int, note: str) -> None:
        endpoint = status.endpoint
        old = await self._known_size(status)
        for _ in range(_MAX_RETRIES):
            if old > size:
                raise _Refused(f"the witness holds size {old}, larger than this log's {size}")
            proof = await self.log.consistency_proof(old, size) if 0 < old < size else []
            http_status, content_type, body = await self.transport.post(
                f"{endpoint.url}/add-checkpoint", render_add_checkpoint(old, proof, note))
            if http_status == 200:
                await self._store(status, size, note, body)
                return
            if http_status == 409 and content_type == SIZE_CONTENT_TYPE:
                text = body.decode("ascii", "replace").strip()
                if not text.isdigit():
                    raise _Refused(f"409 with a malformed size {text!r}")
                old = int(text)
                status.cosigned_size = old
                continue
            detail = body.decode("utf-8", "replace").strip()[:300]
            raise _Refused(f"refused with {http_status}: {detail}")
        raise _Refused(f"the witness kept changing its size ({_MAX_RETRIES} conflicts)")

    async def _store(self, status: WitnessStatus, size: int, note: str, body: bytes) -> None:
        opened = open_note(note, [self.log.signer.verifier])
        try:
            lines = parse_signature_lines(body.decode("utf-8"))
        except (UnicodeDecodeError, MalformedNoteError) as exc:
            raise _Refused(f"its answer is not signature lines: {exc}") from exc
        verified, problems = verify_cosignatures(opened.body, lines, [status.endpoint.verifier])
        if not verified:
            raise _Refused("its answer holds no valid cosignature by its key"
                           + (f" ({'; '.join(problems)})" if problems else ""))
        cosig = verified[0]
        with contextlib.suppress(IntegrityError):
            async with self.db.write() as conn:
                await conn.execute(insert(witness_cosignatures).values(
                    witness=status.endpoint.label, size=size, line=cosig.line,
                    cosigned_at=cosig.timestamp, received_at=self.clock.now()))
        status.cosigned_size = size
        log.info("checkpoint cosigned", witness=status.endpoint.label, size=size)


class AiohttpTransport:
    """The production transport: one keep-alive session for every witness."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(self, url: str, body: bytes) -> tuple[int, str, bytes]:
        try:
            async with self.session.post(url, data=body, allow_redirects=False) as resp:
                return resp.status, resp.content_type, await resp.content.read(64 * 1024)
        except aiohttp.ClientError as exc:
            raise OSError(f"cannot reach {url}: {exc}") from exc


class _Refused(Exception):
    """The witness answered, but not with a cosignature."""
