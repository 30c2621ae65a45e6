"""The witness's HTTP service: ``POST <prefix>/add-checkpoint`` (C2SP tlog-witness)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import structlog
from aiohttp import web

from gateway.audit.cosignature import Cosigner
from gateway.audit.note import Ed25519NoteVerifier
from gateway.witness.protocol import (
    SIZE_CONTENT_TYPE,
    Decision,
    Latest,
    ProtocolError,
    decide,
    parse_add_checkpoint,
)
from gateway.witness.store import WitnessStore

log = structlog.get_logger("vpngw.witness")

MAX_BODY_BYTES = 64 * 1024
WITNESS: web.AppKey[Witness] = web.AppKey("witness")


class Witness:
    """Cosigns checkpoints of the trusted logs that extend the last one it cosigned."""

    def __init__(
        self, *, cosigner: Cosigner, logs: Mapping[str, Ed25519NoteVerifier],
        store: WitnessStore, clock: Callable[[], float] = time.time,
    ) -> None:
        self.cosigner = cosigner
        self.logs = dict(logs)
        self.store = store
        self.clock = clock

    async def add_checkpoint(self, body: bytes) -> tuple[Decision, str]:
        """The decision and, when it is 200, the cosignature line."""
        try:
            request = parse_add_checkpoint(body)
        except ProtocolError as exc:
            return Decision(400, str(exc)), ""
        outcome: list[Decision] = []

        def apply(latest: dict[str, Latest]) -> tuple[str, Latest | None]:
            decision = decide(request, self.logs, latest)
            outcome.append(decision)
            origin = decision.checkpoint.origin if decision.checkpoint else ""
            return origin, decision.store

        await self.store.update(apply)
        decision = outcome[0]
        if decision.status != 200 or decision.checkpoint is None:
            return decision, ""
        line = self.cosigner.signature_line(decision.checkpoint.to_body(), int(self.clock()))
        return decision, line


async def add_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS]
    body = await request.read()
    decision, line = await witness.add_checkpoint(body)
    log.info("add-checkpoint", status=decision.status, detail=decision.detail,
             peer=request.remote)
    if decision.status == 200:
        return web.Response(text=line, content_type="text/plain", charset="utf-8")
    if decision.status == 409 and decision.current_size is not None:
        return web.Response(status=409, body=f"{decision.current_size}\n".encode(),
                            headers={"Content-Type": SIZE_CONTENT_TYPE})
    return web.Response(status=decision.status, text=decision.detail + "\n",
                        content_type="text/plain", charset="utf-8")


def create_witness_app(witness: Witness, *, prefix: str = "") -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[WITNESS] = witness
    app.router.add_post(prefix.rstrip("/") + "/add-checkpoint", add_checkpoint)
    return app
