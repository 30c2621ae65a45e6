"""The error tree: every error vpngw raises on purpose, and how HTTP renders each.

Each class states its HTTP status, its stable problem type (`code`, rendered as
`urn:vpngw:problem:<code>`) and its title; an instance adds a detail that says what
to fix. The error middleware and the pages render any DomainError by these
attributes alone, so a new error needs no table entry anywhere. This module imports
nothing of vpngw, so every layer (gateway and provisioning) can derive from it.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error vpngw raises on purpose (domain, signature, audit, backend)."""

    status: int = 400
    code: str = "domain-error"
    title: str = "Request refused"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        # Response headers the refusal needs (Retry-After, WWW-Authenticate, Allow).
        self.headers: dict[str, str] = {}


class InvalidInput(DomainError):
    status = 400
    code = "invalid-input"
    title = "Invalid input"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field)
        self.field = field


class NotFound(DomainError):
    status = 404
    code = "not-found"
    title = "Not found"


class IllegalTransition(DomainError):
    status = 409
    code = "illegal-transition"
    title = "Illegal state transition"


class DuplicateTenant(DomainError):
    status = 409
    code = "duplicate-tenant"
    title = "Tenant already exists"


class DuplicatePublicKey(DomainError):
    status = 409
    code = "duplicate-public-key"
    title = "Public key already in use"


class GatewayPublicKey(DomainError):
    status = 409
    code = "gateway-public-key"
    title = "Public key belongs to the gateway"


class TenantNotVerified(DomainError):
    status = 403
    code = "tenant-not-verified"
    title = "Tenant is not verified"


class TenantSuspended(TenantNotVerified):
    code = "tenant-suspended"
    title = "Tenant is suspended"


class QuotaExceeded(DomainError):
    status = 409
    code = "quota-exceeded"
    title = "Peer quota exceeded"


class PoolExhausted(DomainError):
    status = 507
    code = "pool-exhausted"
    title = "Address pool exhausted"


class PeerNotActive(DomainError):
    status = 409
    code = "peer-not-active"
    title = "Peer is not active"


class LinkUnavailable(DomainError):
    status = 410
    code = "link-unavailable"
    title = "Link used or expired"


class GatewayUnavailable(DomainError):
    status = 409
    code = "gateway-unavailable"
    title = "Gateway cannot take this"


class PoolOverlap(DomainError):
    status = 409
    code = "pool-overlap"
    title = "Address pools overlap"


class UnknownPeer(DomainError):
    status = 422
    code = "unknown-peer"
    title = "Unknown peer"


class ConcurrentChange(DomainError):
    status = 409
    code = "concurrent-change"
    title = "Changed by another request"


class CommitFailed(DomainError):
    """The transaction holding the request did not commit (group commit: every member)."""

    status = 503
    code = "commit-failed"
    title = "Not committed"
