"""Request id, one summary log line, metrics, and the single exit for errors (problem+json)."""

from __future__ import annotations

import secrets
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.agent.protocol import EventNotAllowed
from gateway.http import appkeys
from gateway.http.problems import Problem, problem_response
from gateway.regulator.registry import DuplicateKeyId
from provisioning.errors import (
    CommitFailed,
    ConcurrentChange,
    DomainError,
    DuplicatePublicKey,
    DuplicateTenant,
    GatewayPublicKey,
    GatewayUnavailable,
    IllegalTransition,
    InvalidInput,
    LinkUnavailable,
    NotFound,
    PeerNotActive,
    PoolExhausted,
    PoolOverlap,
    QuotaExceeded,
    TenantNotVerified,
    TenantSuspended,
    UnknownPeer,
)

log = structlog.get_logger("vpngw.http")

_DOMAIN_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    IllegalTransition: 409,
    DuplicateTenant: 409,
    DuplicatePublicKey: 409,
    GatewayPublicKey: 409,
    TenantSuspended: 403,
    TenantNotVerified: 403,
    QuotaExceeded: 409,
    PoolExhausted: 507,
    PeerNotActive: 409,
    LinkUnavailable: 410,
    DuplicateKeyId: 409,
    GatewayUnavailable: 409,
    PoolOverlap: 409,
    UnknownPeer: 422,
    EventNotAllowed: 403,
    ConcurrentChange: 409,
    CommitFailed: 503,
}


def problem_from_domain(error: DomainError) -> Problem:
    status = next((s for cls, s in _DOMAIN_STATUS.items() if isinstance(error, cls)), 400)
    return Problem(status, error.code, error.title, error.detail, **error.extra)


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """On every response (an on_response_prepare hook, so error pages too)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Most responses carry tenant data or secrets (tokens, keys, configs, links);
    # a handler that wants caching says so itself, so a new one cannot forget no-store.
    response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")
    if not (0 < len(request_id) <= 64 and request_id.isascii() and request_id.isprintable()):
        request_id = secrets.token_hex(8)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await _render_errors(request, handler, request_id)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = (
            request.match_info.route.resource.canonical
            if request.match_info.route.resource
            else "unmatched"
        )
        request.app[appkeys.METRICS].observe_request(request.method, route, status, elapsed)
        log.info(
            "request",
            method=request.method,
            route=route,
            status=status,
            ms=round(elapsed * 1000, 2),
        )
        structlog.contextvars.clear_contextvars()


async def _render_errors(
    request: web.Request, handler: Handler, request_id: str
) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request_id=request_id)
    except DomainError as error:
        return problem_response(problem_from_domain(error), request_id=request_id)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[appkeys.SETTINGS].server.max_body_bytes
        return problem_response(
            Problem(
                413,
                "body-too-large",
                "Request body too large",
                f"request bodies are limited to {limit} bytes; send a smaller JSON object",
            ),
            request_id=request_id,
        )
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        refused = Problem(
            405,
            "method-not-allowed",
            "Method not allowed",
            f"{request.method} is not allowed here; use {allowed}",
        )
        refused.headers["Allow"] = allowed
        return problem_response(refused, request_id=request_id)
    except web.HTTPNotFound:
        return problem_response(
            Problem(
                404,
                "not-found",
                "Not found",
                f"no route for {request.method} {request.path}; see /openapi.json",
            ),
            request_id=request_id,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(
            Problem(exc.status, f"http-{exc.status}", exc.reason, exc.text or exc.reason),
            request_id=request_id,
        )
    except Exception:
        log.exception("unhandled error")
        return problem_response(
            Problem(
                500,
                "internal-error",
                "Internal error",
                f"the server failed; quote request id {request_id} to support",
            ),
            request_id=request_id,
        )
