"""Domain errors: each has a stable code, a title and a detail that says what to fix."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a provisioning use-case raises on purpose."""

    code = "domain-error"
    title = "Request refused"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(DomainError):
    code = "invalid-input"
    title = "Invalid input"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field)
        self.field = field


class NotFound(DomainError):
    code = "not-found"
    title = "Not found"


class IllegalTransition(DomainError):
    code = "illegal-transition"
    title = "Illegal state transition"


class DuplicateTenant(DomainError):
    code = "duplicate-tenant"
    title = "Tenant already exists"


class DuplicatePublicKey(DomainError):
    code = "duplicate-public-key"
    title = "Public key already in use"


class GatewayPublicKey(DomainError):
    code = "gateway-public-key"
    title = "Public key belongs to the gateway"


class TenantNotVerified(DomainError):
    code = "tenant-not-verified"
    title = "Tenant is not verified"


class TenantSuspended(TenantNotVerified):
    code = "tenant-suspended"
    title = "Tenant is suspended"


class QuotaExceeded(DomainError):
    code = "quota-exceeded"
    title = "Peer quota exceeded"


class PoolExhausted(DomainError):
    code = "pool-exhausted"
    title = "Address pool exhausted"


class PeerNotActive(DomainError):
    code = "peer-not-active"
    title = "Peer is not active"


class LinkUnavailable(DomainError):
    code = "link-unavailable"
    title = "Link used or expired"


class GatewayUnavailable(DomainError):
    code = "gateway-unavailable"
    title = "Gateway cannot take this"


class PoolOverlap(DomainError):
    code = "pool-overlap"
    title = "Address pools overlap"


class UnknownPeer(DomainError):
    code = "unknown-peer"
    title = "Unknown peer"


class ConcurrentChange(DomainError):
    code = "concurrent-change"
    title = "Changed by another request"


class CommitFailed(DomainError):
    """The transaction holding the request did not commit (group commit: every member)."""

    code = "commit-failed"
    title = "Not committed"
