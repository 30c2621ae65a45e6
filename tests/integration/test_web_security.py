"""The pages over real HTTP without a browser: CSRF, isolation, sessions, escaping, headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.schema import log_entries, outbox
from gateway.http import appkeys
from gateway.settings import Settings
from gateway.web import appkeys as web_keys
from provisioning.accounts import totp
from provisioning.accounts.passwords import Passwords
from provisioning.accounts.users import UserRole
from tests.conftest import FakeClock
from tests.helpers import bearer, create_peer, opened, ops_token, verified_tenant

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
Client = TestClient[Any, Any]


@pytest.fixture
async def web(
    aiohttp_client: Any, settings: Settings, clock: FakeClock
) -> AsyncIterator[Client]:
    app = create_app(
        settings, clock=clock, passwords=Passwords(time_cost=1, memory_kib=8192, parallelism=1)
    )
    yield await aiohttp_client(app)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


async def invite(client: Client, email: str, role: UserRole, tenant_id: str | None) -> str:
    accounts = client.app[web_keys.ACCOUNTS]
    invitation = await accounts.invite(email=email, role=role, tenant_id=tenant_id, actor="test")
    return invitation.token


async def activate(client: Client, token: str, *, with_totp: bool = False) -> str | None:
    page = await client.get(f"/invitations/{token}")
    assert page.status == 200, await page.text()
    html = await page.text()
    secret = re.search(r'name="totp_secret" value="([A-Z2-7]+)"', html)
    assert secret
    fields = {"csrf": csrf_of(html), "password": PASSWORD, "password_again": PASSWORD,
              "totp_secret": secret.group(1), "totp_code": ""}
    if with_totp:
        clock = client.app[appkeys.CLOCK]
        fields["totp_code"] = totp.totp(totp.decode_secret(secret.group(1)),
                                        int(clock.now().timestamp()))
    done = await client.post(f"/invitations/{token}", data=fields, allow_redirects=False)
    assert done.status == 303, await done.text()
    return secret.group(1) if with_totp else None


async def sign_in(client: Client, email: str, *, code: str = "", status: int = 303) -> Any:
    page = await client.get("/signin")
    fields = {"csrf": csrf_of(await page.text()), "email": email, "password": PASSWORD,
              "code": code}
    resp = await client.post("/signin", data=fields, allow_redirects=False)
    assert resp.status == status, await resp.text()
    return resp


async def tenant_admin(client: Client, email: str = "it@acme.example", **fields: Any) -> str:
    ops = await ops_token(client)
    tenant, _token = await verified_tenant(client, ops, **fields)
    await activate(client, await invite(client, email, UserRole.TENANT, tenant["id"]))
    await sign_in(client, email)
    return str(tenant["id"])


async def page_csrf(client: Client, path: str = "/portal") -> str:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return csrf_of(await resp.text())


async def test_forms_without_the_right_csrf_token_are_refused(web: Client) -> None:
    await tenant_admin(web)
    token = await page_csrf(web)
    for fields in ({"name": "laptop"}, {"name": "laptop", "csrf": "x" * 43}):
        resp = await web.post("/portal/devices", data={**fields, "key_source": "server"},
                              allow_redirects=False)
        assert resp.status == 403
        assert "security token" in await resp.text()
    ok = await web.post("/portal/devices", data={"name": "laptop", "key_source": "server",
                                                 "csrf": token}, allow_redirects=False)
    assert ok.status == 201, await ok.text()
    assert "PrivateKey = " in await ok.text()
    # A post from another site is refused even with a token.
    cross = await web.post("/portal/devices", data={"name": "x", "csrf": token},
                           headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert cross.status == 403


async def test_sign_in_form_needs_its_pre_session_token(web: Client) -> None:
    await web.get("/signin")
    resp = await web.post("/signin", data={"email": "a@b.example", "password": "x"},
                          allow_redirects=False)
    assert resp.status == 403
    wrong = await web.post("/signin", data={"email": "a@b.example", "password": "x",
                                            "csrf": "nope"}, allow_redirects=False)
    assert wrong.status == 403


async def test_a_tenant_admin_reaches_only_their_own_devices(web: Client) -> None:
    ops = await ops_token(web)
    _other, other_token = await verified_tenant(web, ops, registration_number="RC-OTHER")
    foreign = await create_peer(web, other_token, name="their-laptop")
    await tenant_admin(web)
    token = await page_csrf(web)
    for path in (f"/portal/devices/{foreign['id']}", f"/portal/devices/{foreign['id']}/config"):
        resp = await web.get(path, allow_redirects=False)
        assert resp.status == 404, path
    for action in ("revoke", "rotate", "link"):
        resp = await web.post(f"/portal/devices/{foreign['id']}/{action}",
                              data={"csrf": token, "key_source": "server"}, allow_redirects=False)
        assert resp.status == 404, action
    listing = await (await web.get("/portal")).text()
    assert "their-laptop" not in listing
    for path in ("/console", "/console/users", "/console/audit", "/console/regulator-keys"):
        resp = await web.get(path, allow_redirects=False)
        assert resp.status == 403, path
    resp = await web.post("/console/tenants", data={"csrf": token}, allow_redirects=False)
    assert resp.status == 403
    still = await web.get(f"/v1/peers/{foreign['id']}", headers=bearer(other_token))
    assert (await still.json())["status"] == "active"


async def test_a_disabled_users_session_stops_at_once(web: Client) -> None:
    await tenant_admin(web)
    assert (await web.get("/portal", allow_redirects=False)).status == 200
    accounts = web.app[web_keys.ACCOUNTS]
    (user,) = await accounts.list_users()
    await accounts.disable(user.id, actor="test")
    resp = await web.get("/portal", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/signin")
    status = await web.get("/portal/devices/status", allow_redirects=False)
    assert status.status == 303


async def test_signing_out_ends_the_session(web: Client) -> None:
    await tenant_admin(web)
    session = web.session.cookie_jar.filter_cookies(web.make_url("/"))["vpngw_session"].value
    token = await page_csrf(web)
    out = await web.post("/signout", data={"csrf": token}, allow_redirects=False)
    assert out.status == 303
    # The old cookie itself is dead on the server, not only dropped by the browser.
    web.session.cookie_jar.update_cookies({"vpngw_session": session})
    assert (await web.get("/portal", allow_redirects=False)).status == 303


async def test_markup_in_a_tenant_name_renders_as_text(web: Client) -> None:
    await tenant_admin(web, legal_name="<script>alert(1)</script> Ltd")
    html = await (await web.get("/portal")).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Ltd" in html
    assert "<script>alert" not in html


async def test_sign_in_throttling_engages_after_repeated_failures(web: Client) -> None:
    await tenant_admin(web)
    web.session.cookie_jar.clear()
    page = await web.get("/signin")
    token = csrf_of(await page.text())
    statuses = []
    for _ in range(6):
        resp = await web.post("/signin", data={"csrf": token, "email": "it@acme.example",
                                               "password": "wrong password"},
                              allow_redirects=False)
        statuses.append(resp.status)
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    assert int(resp.headers["Retry-After"]) > 0
    right = await web.post("/signin", data={"csrf": token, "email": "it@acme.example",
                                            "password": PASSWORD}, allow_redirects=False)
    assert right.status == 429


async def test_cookies_and_security_headers(web: Client) -> None:
    ops = await ops_token(web)
    tenant, _ = await verified_tenant(web, ops)
    await activate(web, await invite(web, "it@acme.example", UserRole.TENANT, tenant["id"]))
    page = await web.get("/signin")
    resp = await sign_in(web, "it@acme.example")
    cookie = next(v for v in resp.headers.getall("Set-Cookie") if v.startswith("vpngw_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test below
    for path in ("/signin", "/portal", "/portal/devices/nope", "/static/app.js"):
        r = await web.get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in (await page.text()).replace('<script src="/static/app.js" defer>', "")


async def test_session_cookie_is_secure_behind_tls(aiohttp_client: Any, make_settings: Any,
                                                   database_url: str) -> None:
    settings = make_settings(database_url, server={"public_url": "https://vpn.example"})
    client = await aiohttp_client(create_app(
        settings, passwords=Passwords(time_cost=1, memory_kib=8192, parallelism=1)))
    page = await client.get("/signin")
    assert "Secure" in page.headers["Set-Cookie"]


async def test_invitation_links_work_once(web: Client) -> None:
    token = await invite(web, "ops2@example.com", UserRole.OPS, None)
    await activate(web, token, with_totp=True)
    again = await web.get(f"/invitations/{token}")
    assert again.status == 410
    assert "already used or expired" in await again.text()


async def test_ops_need_their_second_factor_and_web_actions_name_the_user(
    web: Client, clock: FakeClock
) -> None:
    secret = await activate(web, await invite(web, "ops@example.com", UserRole.OPS, None),
                            with_totp=True)
    assert secret
    await sign_in(web, "ops@example.com", status=401)  # no code
    key = totp.decode_secret(secret)
    enrolment_code = totp.totp(key, int(clock.now().timestamp()))
    await sign_in(web, "ops@example.com", code=enrolment_code, status=401)  # used already
    clock.advance(seconds=30)
    await sign_in(web, "ops@example.com", code=totp.totp(key, int(clock.now().timestamp())))
    token = await page_csrf(web, "/console/tenants")
    created = await web.post("/console/tenants", allow_redirects=False, data={
        "csrf": token, "legal_name": "Beta Ltd", "registration_number": "RC-9", "tax_id": "T-9",
        "country": "PK", "contact_email": "it@beta.example"})
    assert created.status == 303, await created.text()
    async with web.app[appkeys.DATABASE].read() as conn:
        # Wherever the sequencer has got to: still in the outbox, or in the log.
        rows = (await conn.execute(select(outbox.c.leaf, outbox.c.leaf_hash))).all()
        rows += (await conn.execute(select(log_entries.c.leaf, log_entries.c.leaf_hash))).all()
    leaves = [opened(web.app[appkeys.DATABASE], r) for r in rows]
    (event,) = [e for e in leaves if e["type"] == "tenant.created"]
    (user,) = await web.app[web_keys.ACCOUNTS].list_users()
    assert event["actor"] == f"user:{user.id}"


async def test_posts_from_the_public_origin_behind_a_tls_proxy_are_accepted(
    aiohttp_client: Any, make_settings: Any, database_url: str
) -> None:
    settings = make_settings(database_url, server={"public_url": "https://vpn.example"})
    client = await aiohttp_client(create_app(
        settings, passwords=Passwords(time_cost=1, memory_kib=8192, parallelism=1)))
    page = await client.get("/signin")
    fields = {"csrf": csrf_of(await page.text()), "email": "nobody@example.com",
              "password": "wrong password"}
    # The cookie is Secure, so this plain-HTTP client sends it only by hand (as the proxy would).
    cookie = {"Cookie": f"vpngw_csrf={fields['csrf']}"}
    proxied = await client.post("/signin", data=fields, allow_redirects=False,
                                headers={"Origin": "https://vpn.example", **cookie})
    assert proxied.status == 401  # reached the password check: the origin was accepted
    elsewhere = await client.post("/signin", data=fields, allow_redirects=False,
                                  headers={"Origin": "https://vpn.example.evil", **cookie})
    assert elsewhere.status == 403
