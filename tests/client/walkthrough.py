"""The README walk-through, written against a client generated from the served /openapi.json.

It uses only what the generated package types: every result is narrowed with isinstance
to its model (a Problem otherwise), never decoded by hand. The test type-checks this file
with mypy --strict against the generated package, so an untyped result fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from vpngw_client import AuthenticatedClient, Client
from vpngw_client.api.ops import (
    create_tenant,
    get_tenant,
    issue_tenant_token,
    list_audit,
    suspend_tenant,
    verify_tenant,
)
from vpngw_client.api.public import redeem_link
from vpngw_client.api.tenant import (
    create_link,
    create_peer,
    get_config,
    get_peer,
    list_peers,
    revoke_peer,
    rotate_peer,
)
from vpngw_client.models import (
    AuditPage,
    Connection,
    GetConfigFormat,
    IssuedToken,
    Link,
    NewPeer,
    NewTenant,
    Peer,
    PeerPage,
    PeerStatus,
    Problem,
    RedeemLinkFormat,
    RotatePeerBody,
    SuspendTenantBody,
    Tenant,
    TenantDetail,
    TenantStatus,
    VerifyTenantBody,
)
from vpngw_client.types import UNSET


class Refused(AssertionError):
    """The server answered with a problem where the walk-through expected success."""


T = TypeVar("T")


def expect(result: T | Problem | None, model: type[T]) -> T:
    if isinstance(result, Problem):
        raise Refused(f"{result.status} {result.type_}: {result.detail}")
    if not isinstance(result, model):
        raise Refused(f"expected a {model.__name__}, got {result!r}")
    return result


@dataclass(frozen=True)
class Walked:
    tenant: Tenant
    device_peer: Peer
    server_peer: Peer
    rotated: Peer
    conf: str
    qr_svg: str
    qr_png: bytes
    link: Link
    linked_conf: str
    sealed_conf: str
    bad_key: Problem


async def walk(
    base_url: str, ops_token: str, device_public_key: str, new_public_key: str
) -> Walked:
    async with (
        AuthenticatedClient(base_url=base_url, token=ops_token) as ops,
        Client(base_url=base_url) as anyone,
    ):
        # ops: onboard a business (pending), check its papers, verify it, give it a token
        tenant = await _onboard(ops)
        issued = expect(await issue_tenant_token.asyncio(tenant.id, client=ops), IssuedToken)
        async with AuthenticatedClient(base_url=base_url, token=issued.token) as me:
            walked = await _provision(me, anyone, tenant, device_public_key, new_public_key)
        # ops: suspension, and the state history
        suspended = expect(
            await suspend_tenant.asyncio(
                tenant.id, client=ops, body=SuspendTenantBody(reason="unpaid invoice")
            ),
            Tenant,
        )
        assert suspended.status is TenantStatus.SUSPENDED
        detail = expect(await get_tenant.asyncio(tenant.id, client=ops), TenantDetail)
        assert [t.to for t in detail.history][-1] is TenantStatus.SUSPENDED
    return walked


async def _onboard(ops: AuthenticatedClient) -> Tenant:
    # ops: onboard a business (pending), check its papers, verify it, give it a token
    tenant = expect(
        await create_tenant.asyncio(
            client=ops,
            body=NewTenant(
                legal_name="Acme Bank Ltd",
                registration_number="RC-123",
                tax_id="NTN-42",
                country="PK",
                contact_email="it@acme.example",
                max_peers=50,
            ),
        ),
        Tenant,
    )
    assert tenant.status is TenantStatus.PENDING
    verified = expect(
        await verify_tenant.asyncio(
            tenant.id, client=ops, body=VerifyTenantBody(evidence_reference="KYC-2026-0042")
        ),
        Tenant,
    )
    assert verified.status is TenantStatus.VERIFIED
    return verified


async def _provision(
    me: AuthenticatedClient, anyone: Client, tenant: Tenant, device_key: str, new_key: str
) -> Walked:
    # tenant: a peer whose private key never leaves the device
    device = expect(
        await create_peer.asyncio(
            client=me, body=NewPeer(name="alice-laptop", public_key=device_key)
        ),
        Peer,
    )
    assert device.public_key == device_key and device.private_key is UNSET
    conf = expect(await get_config.asyncio(device.id, client=me), str)
    qr_svg = expect(
        await get_config.asyncio(device.id, client=me, format_=GetConfigFormat.QR_SVG), str
    )
    # The generated client types a response by its first media type (text/plain here),
    # so a PNG is read from the raw response bytes.
    png = await get_config.asyncio_detailed(device.id, client=me, format_=GetConfigFormat.QR_PNG)
    link = expect(await create_link.asyncio(device.id, client=me), Link)
    token = link.url.rsplit("/", 1)[1]
    linked_conf = expect(
        await redeem_link.asyncio(token, client=anyone, format_=RedeemLinkFormat.CONF), str
    )
    shown = expect(await get_peer.asyncio(device.id, client=me), Peer)
    assert isinstance(shown.connection, Connection) and not shown.connection.connected

    # or let the server generate the key pair: the private key is in this response only
    server = expect(
        await create_peer.asyncio(client=me, body=NewPeer(name="kiosk-3", preshared_key=True)),
        Peer,
    )
    assert isinstance(server.private_key, str) and isinstance(server.config, str)

    # or have its config travel only sealed inside a one-time link
    phone = expect(
        await create_peer.asyncio(client=me, body=NewPeer(name="phone-7", link=True)), Peer
    )
    assert phone.private_key is UNSET and isinstance(phone.link, Link)
    sealed_conf = expect(
        await redeem_link.asyncio(
            phone.link.url.rsplit("/", 1)[1], client=anyone, format_=RedeemLinkFormat.CONF
        ),
        str,
    )

    rotated = expect(
        await rotate_peer.asyncio(device.id, client=me, body=RotatePeerBody(public_key=new_key)),
        Peer,
    )
    revoked = await revoke_peer.asyncio_detailed(device.id, client=me)
    assert revoked.status_code == 204 and revoked.content == b""
    after = expect(await get_peer.asyncio(device.id, client=me), Peer)
    assert after.status is PeerStatus.REVOKED
    page = expect(await list_peers.asyncio(client=me, limit=1), PeerPage)
    assert len(page.items) == 1 and page.next_ == page.items[0].id

    # a refusal is a typed problem naming the field
    bad_key = await create_peer.asyncio(client=me, body=NewPeer(name="x", public_key="AAAA"))
    assert isinstance(bad_key, Problem)

    return Walked(
        tenant=tenant,
        device_peer=device,
        server_peer=server,
        rotated=rotated,
        conf=conf,
        qr_svg=qr_svg,
        qr_png=png.content,
        link=link,
        linked_conf=linked_conf,
        sealed_conf=sealed_conf,
        bad_key=bad_key,
    )


async def audit_of(base_url: str, ops_token: str, tenant_id: str) -> AuditPage:
    async with AuthenticatedClient(base_url=base_url, token=ops_token) as ops:
        return expect(await list_audit.asyncio(client=ops, tenant=tenant_id), AuditPage)
