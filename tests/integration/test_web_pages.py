"""What people do on the pages, over real HTTP: devices, links, tokens, tenants, keys, audit."""

from __future__ import annotations

import base64
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from provisioning.accounts import totp
from provisioning.accounts.users import UserRole
from tests.conftest import FakeClock
from tests.helpers import bearer, ops_token, verified_tenant
from tests.integration.test_web_security import (  # noqa: F401  (fixture reused)
    Client,
    activate,
    invite,
    page_csrf,
    sign_in,
    tenant_admin,
    web,
)

PRIVATE = re.compile(r"PrivateKey = (\S+)")


async def test_devices_rotate_link_and_tokens_from_the_portal(web: Client) -> None:  # noqa: F811
    await tenant_admin(web)
    csrf = await page_csrf(web)
    created = await web.post("/portal/devices", data={"csrf": csrf, "name": "kiosk-3",
                                                      "key_source": "server"})
    assert created.status == 201
    html = await created.text()
    first = PRIVATE.search(html)
    assert first
    peer_id = re.search(r'/portal/devices/([0-9a-f-]{36})/rotate', html)
    assert peer_id
    device = f"/portal/devices/{peer_id.group(1)}"

    rotated = await web.post(f"{device}/rotate", data={"csrf": csrf, "key_source": "server"})
    assert rotated.status == 200
    second = PRIVATE.search(await rotated.text())
    assert second and second.group(1) != first.group(1)

    # A key made elsewhere (the browser's path) is accepted as a public key only.
    own = base64.b64encode(X25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    mine = await web.post(f"{device}/rotate", data={"csrf": csrf, "key_source": "browser",
                                                    "public_key": own}, allow_redirects=False)
    assert mine.status == 303
    page = await (await web.get(device)).text()
    assert own in page and "PrivateKey = " not in page
    bad = await web.post(f"{device}/rotate", data={"csrf": csrf, "key_source": "browser",
                                                   "public_key": "not a key"})
    assert bad.status == 400 and "public_key" in await bad.text()

    linked = await web.post(f"{device}/link", data={"csrf": csrf})
    assert linked.status == 201
    url = re.search(r'id="link-url">([^<]+)<', await linked.text())
    assert url
    path = "/links/" + url.group(1).rsplit("/links/", 1)[1]
    assert (await web.get(path)).status == 200
    assert (await web.get(path)).status == 410

    issued = await web.post("/portal/tokens", data={"csrf": csrf, "label": "deploy"})
    assert issued.status == 201
    token = re.search(r"(vgw_t_[0-9a-f]{12}_[A-Za-z0-9_-]{43})", await issued.text())
    assert token
    assert (await web.get("/v1/peers", headers=bearer(token.group(1)))).status == 200
    token_id = token.group(1).split("_")[2]
    gone = await web.post(f"/portal/tokens/{token_id}/revoke", data={"csrf": csrf},
                          allow_redirects=False)
    assert gone.status == 303
    assert (await web.get("/v1/peers", headers=bearer(token.group(1)))).status == 401

    revoked = await web.post(f"{device}/revoke", data={"csrf": csrf}, allow_redirects=False)
    assert revoked.status == 303
    assert "kiosk-3" not in await (await web.get("/portal")).text()

    named = await web.post("/portal/devices", data={"csrf": csrf, "name": " ",
                                                    "key_source": "server"})
    assert named.status == 400 and "name" in await named.text()


async def _ops(client: Client, clock: FakeClock) -> str:
    secret = await activate(
        client, await invite(client, "ops@example.com", UserRole.OPS, None), with_totp=True
    )
    assert secret
    clock.advance(seconds=30)
    code = totp.totp(totp.decode_secret(secret), int(clock.now().timestamp()))
    await sign_in(client, "ops@example.com", code=code)
    return await page_csrf(client, "/console/tenants")


async def test_the_console_runs_the_ops_use_cases(web: Client, clock: FakeClock) -> None:  # noqa: F811
    csrf = await _ops(web, clock)
    bad = await web.post("/console/tenants", data={
        "csrf": csrf, "legal_name": "Beta Ltd", "registration_number": "RC-9", "tax_id": "T-9",
        "country": "pakistan", "contact_email": "it@beta.example"})
    assert bad.status == 400
    body = await bad.text()
    assert "country" in body and 'value="Beta Ltd"' in body  # the form keeps what was typed
    made = await web.post("/console/tenants", allow_redirects=False, data={
        "csrf": csrf, "legal_name": "Beta Ltd", "registration_number": "RC-9", "tax_id": "T-9",
        "country": "PK", "contact_email": "it@beta.example", "max_peers": "5"})
    assert made.status == 303
    tenant = made.headers["Location"]
    no_evidence = await web.post(f"{tenant}/verify", data={"csrf": csrf})
    assert no_evidence.status == 400 and "evidence_reference" in await no_evidence.text()
    assert (await web.post(f"{tenant}/suspend", data={"csrf": csrf, "reason": "x"})).status == 400
    assert (await web.post(f"{tenant}/verify", data={
        "csrf": csrf, "evidence_reference": "KYC-7"}, allow_redirects=False)).status == 303
    page = await (await web.get(tenant)).text()
    assert 'id="tenant-status" class="status-verified">verified' in page and "KYC-7" in page

    invited = await web.post(f"{tenant}/invitations", data={"csrf": csrf,
                                                            "email": "it@beta.example"})
    assert invited.status == 201 and "/invitations/" in await invited.text()
    issued = await web.post(f"{tenant}/tokens", data={"csrf": csrf})
    assert issued.status == 201 and "vgw_t_" in await issued.text()

    listing = await (await web.get("/console/tenants?status=verified&q=beta")).text()
    assert "Beta Ltd" in listing
    assert "Beta Ltd" not in await (await web.get("/console/tenants?status=pending")).text()

    public = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    added = await web.post("/console/regulator-keys", allow_redirects=False, data={
        "csrf": csrf, "keyid": "pta-2026", "public_key": public.decode(), "label": "PTA"})
    assert added.status == 303
    assert "pta-2026" in await (await web.get("/console/regulator-keys")).text()
    wrong = await web.post("/console/regulator-keys", data={
        "csrf": csrf, "keyid": "k2", "public_key": "abc", "label": "x"})
    assert wrong.status == 400 and "public_key" in await wrong.text()
    revoked = await web.post("/console/regulator-keys/pta-2026/revoke", data={"csrf": csrf},
                             allow_redirects=False)
    assert revoked.status == 303

    audit = await (await web.get("/console/audit?type=tenant.verified")).text()
    assert "tenant.verified" in audit
    bad_filter = await web.get("/console/audit?tenant=not-an-id")
    assert bad_filter.status == 400


async def test_ops_manage_users(web: Client, clock: FakeClock) -> None:  # noqa: F811
    ops = await ops_token(web)
    tenant, _ = await verified_tenant(web, ops)
    csrf = await _ops(web, clock)
    invited = await web.post("/console/users", data={"csrf": csrf, "email": "it@acme.example",
                                                     "tenant_id": tenant["id"]})
    assert invited.status == 201
    assert "/invitations/" in await invited.text()
    duplicate = await web.post("/console/users", data={"csrf": csrf, "email": "it@acme.example",
                                                       "tenant_id": ""})
    assert duplicate.status == 400 or duplicate.status == 409
    users = await (await web.get("/console/users")).text()
    user_id = re.search(r'data-user-id="([0-9a-f-]{36})"><td>it@acme.example', users)
    assert user_id
    disabled = await web.post(f"/console/users/{user_id.group(1)}/disable", data={"csrf": csrf},
                              allow_redirects=False)
    assert disabled.status == 303
    assert "disabled" in await (await web.get("/console/users")).text()
