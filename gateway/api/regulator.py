"""Regulator API (/regulator/v1): signed, scoped, logged queries; public log endpoints."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.api.approvals import PENDING_REPLY, gate_key_registration, gate_key_revocation
from gateway.audit.log import AuditLogError
from gateway.audit.note import Ed25519NoteSigner
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import parse_json_object, read_json
from gateway.http.params import Identifier, WholeNumber
from gateway.http.problems import Problem, bad_request
from gateway.http.routes import Reply, Route, json_reply, ref
from gateway.keyfiles import GatewayKeys
from gateway.regulator import httpsig, registry
from gateway.regulator.request import parse_request
from gateway.regulator.service import RegulatorService
from provisioning import validation
from provisioning.errors import DomainError
from provisioning.tokens import Role

log = structlog.get_logger("vpngw.regulator")

# Each refused signature is a 401 `signature-<check>` naming the check that failed.
SIGNATURE_CHECKS = tuple(sorted({error.check for error in httpsig.SignatureError.__subclasses__()}))


def response_keyid(keys: GatewayKeys, gateway_id: str) -> str:
    raw = keys.response.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"{gateway_id}-response-{hashlib.sha256(raw).hexdigest()[:8]}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


async def _verify_signature(
    request: web.Request, body: bytes, service: RegulatorService
) -> httpsig.VerifiedRequest:
    """Every profile check but the nonce's, which the service makes as it logs the query."""
    settings = request.app[appkeys.SETTINGS]
    keyid = httpsig.read_keyid(request.headers)
    key = await service.active_key(keyid)
    verified = httpsig.verify_request(
        headers=request.headers,
        method=request.method,
        authority=request.host,
        path=request.rel_url.raw_path,
        query=request.rel_url.raw_query_string,
        body=body,
        now=request.app[appkeys.CLOCK].now().timestamp(),
        resolve_key=lambda k: key.ed25519() if key is not None and k == key.keyid else None,
        scheme=request.scheme,
        max_skew=settings.regulator.clock_skew_seconds,
        max_validity=settings.regulator.max_signature_lifetime_seconds,
    )
    structlog.contextvars.bind_contextvars(regulator_keyid=verified.keyid)
    return verified


def _claimed_keyid(request: web.Request) -> str | None:
    """The key id a request names, if it names a well-formed one (signed or not)."""
    try:
        return registry.parse_keyid(httpsig.read_keyid(request.headers))
    except (httpsig.SignatureError, DomainError):
        return None


async def query(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        return await _answer(request, body)
    except DomainError as refusal:
        if refusal.status < 500:  # a refusal, not a failure of ours
            await request.app[appkeys.REFUSALS].refused(
                keyid=_claimed_keyid(request), reason=refusal.code, body=body
            )
        raise


async def _answer(request: web.Request, body: bytes) -> web.Response:
    """Parse, verify the signature, let the service answer, sign the answer."""
    settings = request.app[appkeys.SETTINGS]
    if request.content_type != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "send Content-Type: application/json",
        )
    service = request.app[appkeys.REGULATOR]
    verified = await _verify_signature(request, body, service)
    doc = parse_json_object(body, allowed={"request_id", "authorisation", "query", "max_hits"})
    req = parse_request(
        doc,
        default_max_hits=settings.regulator.default_max_hits,
        max_hits_limit=settings.regulator.max_hits_limit,
    )
    # Signature, scope and logging refusals render themselves (status, type, headers).
    answer = await service.answer(req, doc, verified=verified, body=body)
    payload = json.dumps(answer, separators=(",", ":")).encode()
    keys = request.app[appkeys.KEYS]
    signed = httpsig.sign_response(
        private_key=keys.response,
        keyid=response_keyid(keys, settings.network.gateway_id),
        status=200,
        body=payload,
        created=int(request.app[appkeys.CLOCK].now().timestamp()),
        request_signature=verified.signature,
    )
    log.info("regulator query answered", kind=req.query.kind, records=len(answer["records"]),
             truncated=answer["truncated"])
    return web.Response(status=200, body=payload, headers=signed.headers())


async def checkpoint(request: web.Request) -> web.Response:
    note = await request.app[appkeys.REGULATOR].checkpoint()
    return web.Response(
        text=note, content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


TREE_SIZE_MAX = 2**62
FROM = WholeNumber(
    "from", minimum=1, maximum=TREE_SIZE_MAX, required=True, description="The older tree size"
)
TO = WholeNumber(
    "to", minimum=1, maximum=TREE_SIZE_MAX, required=True, description="The newer tree size"
)
KEY_ID = Identifier(
    "keyid", registry.KEYID, location="path", description="The regulator key's id"
)


async def consistency(request: web.Request) -> web.Response:
    old, new = FROM.value(request), TO.value(request)
    try:
        proof = await request.app[appkeys.AUDIT_LOG].consistency_proof(old, new)
    except AuditLogError as error:
        raise bad_request(str(error), field="from" if old > new else "to") from error
    return web.json_response([_b64(h) for h in proof])


async def keys(request: web.Request) -> web.Response:
    settings = request.app[appkeys.SETTINGS]
    gw_keys = request.app[appkeys.KEYS]
    signer = Ed25519NoteSigner(settings.audit.origin, gw_keys.log)
    raw = gw_keys.response.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return web.json_response(
        {
            "log": {"origin": settings.audit.origin, "vkey": signer.vkey()},
            "response": {
                "keyid": response_keyid(gw_keys, settings.network.gateway_id),
                "public_key": _b64(raw),
            },
        }
    )


def _key_view(key: registry.RegulatorKey) -> dict[str, Any]:
    return {
        "keyid": key.keyid,
        "public_key": key.public_key,
        "label": key.label,
        "created_at": validation.rfc3339(key.created_at),
        "created_by": key.created_by,
        "revoked_at": validation.rfc3339(key.revoked_at) if key.revoked_at else None,
    }


async def add_regulator_key(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"keyid", "public_key", "label"})
    keyid = registry.parse_keyid(body.get("keyid"))
    public_key = registry.parse_public_key(body.get("public_key"))
    label = validation.text("label", body.get("label"), max_len=200)
    held = await gate_key_registration(
        request, actor=who.actor, keyid=keyid, public_key=public_key, label=label
    )
    if held is not None:
        return held  # 202: waits for a second ops principal (two-person control)
    key = await request.app[appkeys.COMMANDS].add_regulator_key(
        keyid=keyid, public_key=public_key, label=label, actor=who.actor
    )
    return web.json_response(_key_view(key), status=201)


async def list_regulator_keys(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    found = await request.app[appkeys.REGULATOR].list_keys()
    return web.json_response({"items": [_key_view(k) for k in found]})


async def revoke_regulator_key(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    held = await gate_key_revocation(request, actor=who.actor, keyid=KEY_ID.value(request))
    if held is not None:
        return held  # 202: waits for a second ops principal (two-person control)
    key = await request.app[appkeys.COMMANDS].revoke_regulator_key(
        KEY_ID.value(request), actor=who.actor
    )
    return web.json_response(_key_view(key))


ROUTES = [
    Route(
        "POST",
        "/regulator/v1/queries",
        query,
        "Signed, authorisation-scoped query; signed answer with inclusion proofs",
        "regulator",
        description="The request is signed per RFC 9421 (see the regulatorSignature scheme); "
        "the answer carries the gateway's signature (label `gw`) bound to the request's. "
        "The query is committed to the audit log before it is answered.",
        body=ref("RegulatorRequest"),
        body_example={
            "request_id": {"country": "PK", "authority": "PTA", "number": "2026-000123"},
            "authorisation": {
                "reference": "PTA/LI/2026/0042",
                "legal_basis": "PECA 2016 s.32",
                "valid_from": "2026-11-01T00:00:00Z",
                "valid_until": "2026-12-31T00:00:00Z",
            },
            "query": {"kind": "attribution.tunnel_ip", "ip": "10.100.0.7",
                      "at": "2026-11-30T03:00:00Z"},
            "max_hits": 100,
        },
        replies=(
            json_reply(
                200,
                "Signed answer (RFC 9421 label gw)",
                ref("RegulatorAnswer"),
                headers={
                    name: {"description": f"RFC 9421 {name} of the answer",
                           "schema": {"type": "string"}}
                    for name in ("Signature", "Signature-Input", "Content-Digest")
                },
            ),
        ),
        errors={403: ("out-of-scope",), 503: ("not-logged",)},
    ),
    Route(
        "GET",
        "/regulator/v1/checkpoint",
        checkpoint,
        "Latest signed checkpoint (C2SP note) with the witnesses' cosignatures",
        "public",
        replies=(Reply(200, "C2SP signed note", {"text/plain": {"type": "string"}}),),
    ),
    Route(
        "GET",
        "/regulator/v1/proofs/consistency",
        consistency,
        "Consistency proof between two tree sizes",
        "public",
        params=(FROM, TO),
        replies=(json_reply(200, "RFC 9162 consistency proof", ref("ConsistencyProof")),),
    ),
    Route(
        "GET",
        "/regulator/v1/keys",
        keys,
        "The log's vkey and the response-signing key",
        "public",
        replies=(json_reply(200, "Keys to pin", ref("GatewayKeys")),),
    ),
    Route(
        "POST",
        "/ops/v1/regulator-keys",
        add_regulator_key,
        "Register a regulator key",
        "ops",
        body=ref("NewRegulatorKey"),
        replies=(json_reply(201, "Registered (approvals off)", ref("RegulatorKey")),
                 PENDING_REPLY),
        errors={409: ("duplicate-keyid",)},
    ),
    Route(
        "GET",
        "/ops/v1/regulator-keys",
        list_regulator_keys,
        "List regulator keys",
        "ops",
        replies=(json_reply(200, "All registered keys", ref("RegulatorKeyList")),),
    ),
    Route(
        "DELETE",
        "/ops/v1/regulator-keys/{keyid}",
        revoke_regulator_key,
        "Revoke a regulator key",
        "ops",
        params=(KEY_ID,),
        replies=(json_reply(200, "Revoked (or already revoked; approvals off)",
                            ref("RegulatorKey")), PENDING_REPLY),
        errors={409: ("illegal-transition",)},  # already revoked, with approvals on
    ),
]
