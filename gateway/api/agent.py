"""Agent API (/agent/v1): a gateway's desired state by long-poll, its observations in batches.

An agent token names one gateway: every path carries that gateway's id, and any other id
is refused (403) and logged, as are events about peers of other gateways.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from gateway.agent import protocol
from gateway.api.schemas import BOOLEAN as BOOL
from gateway.api.schemas import INTEGER as INT
from gateway.api.schemas import STRING as STR
from gateway.egress.mapping import EgressMap
from gateway.egress.store import logged_maps
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import read_json
from gateway.http.params import Identifier, WholeNumber
from gateway.http.problems import Problem
from gateway.http.routes import Reply, Route, json_reply, obj
from gateway.wireguard.keys import from_base64
from provisioning import gateways
from provisioning.errors import InvalidInput
from provisioning.tokens import Principal, Role
from provisioning.validation import IdFormat

log = structlog.get_logger("vpngw.agent_api")

MAX_WAIT_SECONDS = 55
GATEWAY_ID_FORMAT = IdFormat("gateway id", r"^[A-Za-z0-9._-]{1,64}$", 64, "gw1")
GATEWAY_ID = Identifier("gateway_id", GATEWAY_ID_FORMAT, location="path",
                        description="This agent's gateway (the one its token is bound to)")
REVISION = WholeNumber("revision", minimum=0, maximum=2**62, default=0,
                       description="The last revision this agent applied (0: send everything)")
WAIT = WholeNumber("wait", minimum=0, maximum=MAX_WAIT_SECONDS, default=0,
                   description=f"Hold the answer up to this many seconds (at most "
                   f"{MAX_WAIT_SECONDS}) until the state changes")
ANY_JSON = {"type": "object"}


async def _agent(request: web.Request) -> tuple[Principal, str]:
    who = await require(request, Role.AGENT)
    gateway_id = GATEWAY_ID.value(request)
    if who.gateway_id != gateway_id:
        log.warning("refused: agent token used for another gateway", token_id=who.token_id,
                    own_gateway=who.gateway_id, asked=gateway_id, path=request.path)
        raise Problem(403, "other-gateway", "Not this agent's gateway",
                      "an agent token reads and reports only its own gateway "
                      f"({who.gateway_id}); use that id in the path")
    return who, gateway_id


async def whoami(request: web.Request) -> web.Response:
    who = await require(request, Role.AGENT)
    return web.json_response({"gateway_id": who.gateway_id, "token_id": who.token_id})


async def get_state(request: web.Request) -> web.Response:
    _who, gateway_id = await _agent(request)
    since = REVISION.value(request)
    wait = WAIT.value(request)
    db, watch = request.app[appkeys.DATABASE], request.app[appkeys.STATE_WATCH]
    clock = request.app[appkeys.CLOCK]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    # The gateway's own document and egress, read beside the peers (a second connection):
    # after a wake, the answer waits for two short chains of reads instead of one long one.
    described = asyncio.create_task(_gateway_and_egress(request.app, gateway_id))
    try:
        while True:
            # Taken before the read, so a commit between the read and the wait still wakes us.
            changed = watch.event(gateway_id)
            async with db.read() as conn:
                revision = await gateways.gateway_revision(conn, gateway_id)
                remaining = deadline - loop.time()
                if revision != since or remaining <= 0:
                    state = await gateways.desired_state(conn, gateway_id, since=since,
                                                         now=clock.now(), revision=revision)
                    break
            await watch.wait(changed, remaining)
            # Read afresh beside the coming answer: it may have changed while we waited.
            _discard(described)
            described = asyncio.create_task(_gateway_and_egress(request.app, gateway_id))
        gateway, egress = await described
    finally:
        _discard(described)
    egress_doc = None
    if egress is not None:
        egress_doc = {**egress.event_fields(),
                      "interface": (gateway.egress or {}).get("interface", "")}
    doc = protocol.StateDoc(
        gateway=protocol.GatewayDoc(gateway.id, gateway.name, gateway.endpoint,
                                    tuple(str(p) for p in gateway.pools), egress_doc),
        revision=state.revision,
        full=state.full,
        peers=tuple(protocol.DesiredPeerDoc(p.peer_id, p.public_key, p.preshared_key,
                                            p.tunnel_ips) for p in state.peers),
        removed=state.removed,
    )
    # Holds preshared keys: never cached anywhere on the way.
    return web.json_response(protocol.state_to_wire(doc), headers={"Cache-Control": "no-store"})


def _discard(task: asyncio.Task[object]) -> None:
    """Cancel a read no longer wanted; one that already failed has its error consumed."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


async def _gateway_and_egress(
    app: web.Application, gateway_id: str
) -> tuple[gateways.Gateway, EgressMap | None]:
    async with app[appkeys.DATABASE].read() as conn:
        gateway = await gateways.get_gateway(conn, gateway_id)
        egress = (await logged_maps(conn, [gateway_id])).get(gateway_id)
    return gateway, egress


async def post_observations(request: web.Request) -> web.Response:
    who, gateway_id = await _agent(request)
    body = await read_json(request, allowed={"batch_id", "events"})
    try:
        batch_id, events = protocol.batch_from_wire(body)
        written = await request.app[appkeys.COMMANDS].record_observations(
            gateway_id, batch_id, events
        )
    except protocol.EventNotAllowed as exc:
        log.warning("refused: agent batch", token_id=who.token_id, gateway_id=gateway_id,
                    reason=exc.detail)
        raise
    return web.json_response(
        {"batch_id": batch_id, "accepted": len(events) if written else 0,
         "duplicate": not written}
    )


INTERFACE_FIELDS = {"public_key": STR, "listen_port": INT, "ok": BOOL, "detail": STR}


async def post_status(request: web.Request) -> web.Response:
    who, gateway_id = await _agent(request)
    body = await read_json(request, allowed={"interface", "peers"})
    interface = body.get("interface") or {}
    if not isinstance(interface, dict) or set(interface) - set(INTERFACE_FIELDS):
        raise InvalidInput("interface", f"must be an object with {sorted(INTERFACE_FIELDS)}")
    public_key = interface.get("public_key")
    if public_key is not None:
        try:
            from_base64(public_key)
        except (ValueError, TypeError):
            raise InvalidInput("interface.public_key", "must be a WireGuard public key") from None
    port = interface.get("listen_port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise InvalidInput("interface.listen_port", "must be a port number 1-65535")
    ok, detail = interface.get("ok"), interface.get("detail")
    if ok is not None and not isinstance(ok, bool):
        raise InvalidInput("interface.ok", "must be true or false")
    if detail is not None and not isinstance(detail, str):
        raise InvalidInput("interface.detail", "must be a string")
    statuses = protocol.statuses_from_wire(body.get("peers", []))
    try:
        await request.app[appkeys.COMMANDS].record_status(
            gateway_id, public_key=public_key, listen_port=port, ok=ok, detail=detail,
            statuses=statuses,
        )
    except protocol.EventNotAllowed as exc:
        log.warning("refused: agent status", token_id=who.token_id, gateway_id=gateway_id,
                    reason=exc.detail)
        raise
    return web.Response(status=204)


EVENT_SCHEMA = {
    "type": "object",
    "required": ["type", "public_key", "at", "endpoint"],
    "properties": {
        "type": {"enum": list(protocol.SESSION_TYPES)},
        "public_key": STR, "at": STR, "endpoint": STR, "old_endpoint": STR,
        "first_handshake": STR, "last_handshake": STR, "rx_bytes": INT, "tx_bytes": INT,
    },
}
STATUS_SCHEMA = obj({"public_key": STR, "endpoint": STR, "latest_handshake": STR,
                     "rx_bytes": INT, "tx_bytes": INT, "connected": BOOL})

ROUTES = [
    Route("GET", "/agent/v1/whoami", whoami, "The gateway this agent token is bound to",
          "agent", replies=(json_reply(200, "The token's gateway", obj(
              {"gateway_id": STR, "token_id": STR})),)),
    Route(
        "GET",
        "/agent/v1/gateways/{gateway_id}/state",
        get_state,
        "Desired state by revision: full on first contact (revision=0) or after a gap, else "
        "the peers changed since; with wait=N, held up to N s until something changes",
        "agent",
        params=(GATEWAY_ID, REVISION, WAIT),
        replies=(json_reply(200, "The desired state, full or as changes since `revision`",
                            ANY_JSON),),
        errors={403: ("other-gateway",)},
    ),
    Route(
        "POST",
        "/agent/v1/gateways/{gateway_id}/observations",
        post_observations,
        "Upload session events in a batch keyed by an agent-chosen batch_id; a retried "
        "batch is acknowledged and written nowhere twice",
        "agent",
        body=obj({"batch_id": STR,
                  "events": {"type": "array", "items": EVENT_SCHEMA,
                             "maxItems": protocol.MAX_BATCH_EVENTS}}, "batch_id", "events"),
        params=(GATEWAY_ID,),
        replies=(json_reply(200, "Accepted (or already accepted under this batch_id)", obj(
            {"batch_id": STR, "accepted": INT, "duplicate": BOOL})),),
        errors={403: ("other-gateway", "event-not-allowed")},
    ),
    Route(
        "POST",
        "/agent/v1/gateways/{gateway_id}/status",
        post_status,
        "Interface key and health, and the latest per-peer status (latest report wins)",
        "agent",
        body=obj({"interface": obj(INTERFACE_FIELDS),
                  "peers": {"type": "array", "items": STATUS_SCHEMA,
                            "maxItems": protocol.MAX_STATUS_PEERS}}),
        params=(GATEWAY_ID,),
        replies=(Reply(204, "Recorded"),),
        errors={403: ("other-gateway", "event-not-allowed")},
    ),
]
