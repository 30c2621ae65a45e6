"""Bearer-token authentication and role checks for the ops and tenant APIs."""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.db import Database
from gateway.http import appkeys
from gateway.http.problems import Problem, unauthorized
from provisioning.tokens import Principal, Role, authenticate

log = structlog.get_logger("vpngw.auth")

# Successful token lookups are remembered for TOKEN_CACHE_SECONDS, so a client sending
# many requests costs one database read per second instead of one per request (a read
# connection, a query and a hash: about a third of a small request's server time).
# The price: a token revoked by another process (the CLI, another gateway instance)
# keeps working for at most TOKEN_CACHE_SECONDS after the revocation commits (that
# bound holds for every revocation). A state-changing ops request in this process
# (how tokens get revoked and tenants terminated over the API) also empties the cache,
# so such a revocation normally takes effect on the very next request. Only successes
# are cached; keys are SHA-256 digests, never the bearer tokens themselves.
TOKEN_CACHE_SECONDS = 1.0
_TOKEN_CACHE_MAX = 10_000
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _TokenCache:
    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        # Reads under way: the requests that miss together (all of a client's requests
        # in flight when its entry expires) wait for one read instead of each doing one.
        self._reading: dict[bytes, asyncio.Future[Principal | None]] = {}

    async def look_up(
        self, digest: bytes, read: Callable[[], Awaitable[Principal | None]]
    ) -> Principal | None:
        """The token's principal from one database read shared by concurrent misses (a
        task of its own: a caller that goes away does not cancel it for the others)."""
        pending = self._reading.get(digest)
        if pending is None:
            pending = self._reading[digest] = asyncio.ensure_future(
                self._read_and_remember(digest, read))
        return await asyncio.shield(pending)

    async def _read_and_remember(
        self, digest: bytes, read: Callable[[], Awaitable[Principal | None]]
    ) -> Principal | None:
        this = asyncio.current_task()
        try:
            principal = await read()
        finally:
            current = self._reading.get(digest) is this
            if current:
                del self._reading[digest]
        # Not remembered if the cache was cleared meanwhile (a revocation may have raced it).
        if principal is not None and current:
            self.put(digest, principal, time.monotonic())
        return principal

    def get(self, digest: bytes, now: float) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[digest]
            return None
        return entry[1]

    def put(self, digest: bytes, principal: Principal, now: float) -> None:
        if len(self._entries) >= _TOKEN_CACHE_MAX:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= _TOKEN_CACHE_MAX:
                self._entries.clear()
        self._entries[digest] = (now + TOKEN_CACHE_SECONDS, principal)

    def clear(self) -> None:
        self._entries.clear()
        # A read under way may have started before the revocation: nobody joins it now.
        self._reading.clear()


# One cache per database, so apps on different databases (tests) never share entries.
_caches: weakref.WeakKeyDictionary[Database, _TokenCache] = weakref.WeakKeyDictionary()


def _cache_for(db: Database) -> _TokenCache:
    cache = _caches.get(db)
    if cache is None:
        cache = _caches[db] = _TokenCache()
    return cache


def forget_cached_tokens(db: Database) -> None:
    """After a revocation made outside the ops API (the web console and portal)."""
    _cache_for(db).clear()


async def _read_token(db: Database, token: str) -> Principal | None:
    async with db.read() as conn:
        return await authenticate(conn, token)


_PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


async def require(request: web.Request, role: Role) -> Principal:
    """The caller, who must hold a valid token of this role (checked once per request)."""
    principal = request.get(_PRINCIPAL)
    if principal is None:
        principal = await _authenticate(request)
        request[_PRINCIPAL] = principal
    if principal.role is not role:
        # An agent token probing other routes, say: worth a line in the process log.
        log.warning("refused: wrong token role", token_id=principal.token_id,
                    role=principal.role.value, needed=role.value, path=request.path)
        raise Problem(
            403,
            "wrong-role",
            "Wrong token role",
            f"this endpoint needs a {role.value} token, not a {principal.role.value} token",
        )
    return principal


async def _authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthorized("send Authorization: Bearer <token>", code="missing-token")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authorization must be 'Bearer <token>'", code="missing-token")
    token = token.strip()
    db = request.app[appkeys.DATABASE]
    cache = _cache_for(db)
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
    now = time.monotonic()
    principal = cache.get(digest, now)
    if principal is None:
        principal = await cache.look_up(digest, lambda: _read_token(db, token))
    if principal is None:
        raise unauthorized(
            "the token is unknown or revoked; ask for a new one", code="invalid-token"
        )
    if principal.role is Role.OPS and request.method not in _SAFE_METHODS:
        cache.clear()  # this request may revoke tokens: see TOKEN_CACHE_SECONDS
    structlog.contextvars.bind_contextvars(
        token_id=principal.token_id, tenant_id=principal.tenant_id
    )
    return principal
