"""Bearer-token authentication and role checks for the ops and tenant APIs."""

from __future__ import annotations

import structlog
from aiohttp import web

from gateway.http import appkeys
from gateway.http.problems import Problem, unauthorized
from provisioning.tokens import Principal, Role, authenticate


async def require(request: web.Request, role: Role) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthorized("send Authorization: Bearer <token>", code="missing-token")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authorization must be 'Bearer <token>'", code="missing-token")
    async with request.app[appkeys.DATABASE].read() as conn:
        principal = await authenticate(conn, token.strip())
    if principal is None:
        raise unauthorized("the token is unknown or revoked; ask for a new one",
                           code="invalid-token")
    if principal.role is not role:
        raise Problem(403, "wrong-role", "Wrong token role",
                      f"this endpoint needs a {role.value} token, not a {principal.role.value} token")
    structlog.contextvars.bind_contextvars(token_id=principal.token_id,
                                           tenant_id=principal.tenant_id)
    return principal
