"""People using the portal and the console in Debian's chromium, against a real server."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import insert

from gateway.app import create_app
from gateway.http import appkeys
from gateway.web import appkeys as web_keys
from gateway.wireguard.off import NullBackend
from provisioning import peers
from provisioning.accounts import totp
from provisioning.accounts.passwords import Passwords
from provisioning.accounts.users import UserRole
from provisioning.schema import peer_status
from provisioning.tenants import NewTenant
from tests.conftest import FakeClock

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
PLACEHOLDER = "# PrivateKey = <this device's private key>"
CHEAP = Passwords(time_cost=1, memory_kib=8192, parallelism=1)
Shot = Callable[[Any, str], Awaitable[None]]


def decode_qr(png: bytes) -> str:
    import zxingcpp
    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, f"expected one QR code in the screenshot, found {len(found)}"
    return str(found[0].text)


def public_key_of(private_b64: str) -> str:
    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


def watch(page: Any) -> list[str]:
    """Console errors (a CSP violation shows up here) and uncaught page errors."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    return problems


async def start(aiohttp_server: Any, app: Any) -> str:
    server = await aiohttp_server(app)
    return str(server.make_url("/")).rstrip("/")


async def new_tenant(app: Any, *, verified: bool, name: str = "Acme Bank Ltd") -> str:
    commands = app[appkeys.COMMANDS]
    tenant = await commands.create_tenant(
        NewTenant(name, "RC-123", "NTN-42", "PK", "it@acme.example", 50), actor="test"
    )
    if verified:
        await commands.verify_tenant(tenant.id, evidence_reference="KYC-1", actor="test")
    return str(tenant.id)


async def sign_in(page: Any, base: str, email: str, code: str = "") -> None:
    await page.goto(f"{base}/signin")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    if code:
        await page.fill("input[name=code]", code)
    await page.click("#signin-form button[type=submit]")


async def test_a_tenant_admin_adds_a_device_with_a_key_made_in_the_browser(
    aiohttp_server: Any, browser: Any, screenshot: Shot, make_settings: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"),
                     passwords=CHEAP)
    base = await start(aiohttp_server, app)
    tenant_id = await new_tenant(app, verified=True)
    invitation = await app[web_keys.ACCOUNTS].invite(
        email="it@acme.example", role=UserRole.TENANT, tenant_id=tenant_id, actor="test"
    )
    page = await (await browser.new_context()).new_page()
    problems = watch(page)

    await page.goto(f"{base}/invitations/{invitation.token}")
    await expect(page.locator("#invited-email")).to_have_text("it@acme.example")
    await screenshot(page, "invitation")
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=password_again]", PASSWORD)
    await page.click("#activate-form button[type=submit]")
    await page.wait_for_url(f"{base}/signin?activated=1")
    await sign_in(page, base, "it@acme.example")
    await page.wait_for_url(f"{base}/portal")

    # WebCrypto X25519 is there, so the browser makes the key pair.
    await page.fill("#add-device input[name=name]", "alice-phone")
    assert await page.is_checked("#add-device [data-browser-key]")
    await page.click("#add-device-submit")
    await page.wait_for_selector("#browser-config[data-ready=true]")
    peer_id = page.url.rsplit("/", 1)[1]
    await screenshot(page, "portal-device-new")

    shown = decode_qr(await page.locator("#browser-qr svg").screenshot())
    private_key = re.search(r"^PrivateKey = (\S+)$", shown, re.MULTILINE)
    assert private_key, shown
    served = await (await page.request.get(f"{base}/portal/devices/{peer_id}/config")).text()
    assert PLACEHOLDER in served and "PrivateKey = " not in served.replace(PLACEHOLDER, "")
    assert shown == served.replace(PLACEHOLDER, f"PrivateKey = {private_key.group(1)}")
    assert await page.input_value("#browser-config-text") == shown
    async with app[appkeys.DATABASE].read() as conn:
        stored = await peers.get_peer(conn, tenant_id, peer_id)
    # The server holds the public half of the key the browser made, never the private one.
    assert stored.public_key == public_key_of(private_key.group(1))
    assert await page.text_content("#device-public-key") == stored.public_key

    async with page.expect_download() as info:
        await page.click("#config-download")
    download = await info.value
    saved = await download.path()
    assert (await asyncio.to_thread(Path(saved).read_text)) == shown

    # Live status: the collector's observation appears without a reload.
    await page.goto(f"{base}/portal")
    connected = page.locator(f"tr[data-peer-id='{peer_id}'] [data-field=connected]")
    await expect(connected).to_have_text("no")
    now = datetime.now(UTC)
    async with app[appkeys.DATABASE].write() as conn:
        await conn.execute(insert(peer_status).values(
            peer_id=peer_id, latest_handshake=now, endpoint="198.51.100.20:51820",
            rx_bytes=2048, tx_bytes=8192, connected=1, observed_at=now))
    await expect(connected).to_have_text("yes", timeout=20_000)
    endpoint = page.locator(f"tr[data-peer-id='{peer_id}'] [data-field=endpoint]")
    await expect(endpoint).to_have_text("198.51.100.20:51820")
    await screenshot(page, "portal-devices")
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await screenshot(page, "portal-devices-phone")
    await page.set_viewport_size({"width": 1280, "height": 800})

    await page.goto(f"{base}/portal/devices/{peer_id}")
    await page.click("#revoke")
    await page.wait_for_url(f"{base}/portal")
    await expect(page.locator(f"tr[data-peer-id='{peer_id}']")).to_have_count(0)
    async with app[appkeys.DATABASE].read() as conn:
        assert (await peers.get_peer(conn, tenant_id, peer_id)).status == "revoked"
    assert problems == []


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


async def test_ops_verify_and_suspend_a_tenant_whose_admin_sees_it(
    aiohttp_server: Any, browser: Any, screenshot: Shot, make_settings: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    backend = NullBackend()
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"),
                     clock=clock, backend=backend, passwords=CHEAP)
    base = await start(aiohttp_server, app)
    accounts = app[web_keys.ACCOUNTS]
    tenant_id = await new_tenant(app, verified=False)
    admin = await accounts.invite(email="it@acme.example", role=UserRole.TENANT,
                                  tenant_id=tenant_id, actor="test")
    await accounts.accept_invitation(admin.token, password=PASSWORD, totp_secret=None,
                                     totp_code="")
    ops_invitation = await accounts.invite(email="ops@provider.example", role=UserRole.OPS,
                                           tenant_id=None, actor="cli:root")
    ops = await (await browser.new_context()).new_page()
    problems = watch(ops)

    # The ops user sets a password and a second factor, then signs in with both.
    await ops.goto(f"{base}/invitations/{ops_invitation.token}")
    secret = (await ops.text_content("#totp-secret") or "").strip()
    key = totp.decode_secret(secret)
    await ops.fill("input[name=password]", PASSWORD)
    await ops.fill("input[name=password_again]", PASSWORD)
    await ops.fill("input[name=totp_code]", totp.totp(key, int(clock.now().timestamp())))
    await ops.click("#activate-form button[type=submit]")
    await ops.wait_for_url(f"{base}/signin?activated=1")
    clock.advance(seconds=30)
    await sign_in(ops, base, "ops@provider.example", totp.totp(key, int(clock.now().timestamp())))
    await ops.wait_for_url(f"{base}/console")
    await screenshot(ops, "console-tenants")

    await ops.click(f"tr[data-tenant-id='{tenant_id}'] a")
    await ops.fill("#verify-form input[name=evidence_reference]", "KYC-2026-0042")
    await ops.click("#verify")
    await expect(ops.locator("#tenant-status")).to_have_text("verified")

    # The tenant admin adds a phone: the server makes the key and shows it once as a QR.
    tenant = await (await browser.new_context()).new_page()
    problems += watch(tenant)
    await sign_in(tenant, base, "it@acme.example")
    await tenant.wait_for_url(f"{base}/portal")
    await tenant.fill("#add-device input[name=name]", "kiosk-3")
    await tenant.check("#add-device input[value=server]")
    await tenant.click("#add-device-submit")
    await tenant.wait_for_selector("#once")
    shown = decode_qr(await tenant.locator("#config-qr svg").screenshot())
    assert shown == await tenant.input_value("#config-text")
    private_key = re.search(r"^PrivateKey = (\S+)$", shown, re.MULTILINE)
    assert private_key
    on_interface = base64.b64decode(public_key_of(private_key.group(1)))

    async def present() -> bool:
        return any(p.public_key == on_interface for p in (await backend.dump()).peers)

    await _until(present, "the new device is on the interface")

    await ops.fill("#suspend-form input[name=reason]", "unpaid invoice")
    await ops.click("#suspend")
    await expect(ops.locator("#tenant-status")).to_have_text("suspended")
    await screenshot(ops, "console-tenant")

    async def gone() -> bool:
        return not await present()

    await _until(gone, "the suspended tenant's device leaves the interface")
    # Suspension ended the admin's session; signing in again shows why.
    await tenant.goto(f"{base}/portal")
    await tenant.wait_for_url(re.compile(r".*/signin\?next=.*"))
    clock.advance(seconds=1)
    await sign_in(tenant, base, "it@acme.example")
    await tenant.wait_for_url(f"{base}/portal")
    await expect(tenant.locator("#suspension-reason")).to_have_text("unpaid invoice")
    await expect(tenant.locator("#add-device")).to_have_count(0)
    await screenshot(tenant, "portal-suspended")

    # The audit log names the ops user, and each entry proves its inclusion.
    await app[appkeys.SEQUENCER].drain()
    (ops_user,) = [u for u in await accounts.list_users() if u.role is UserRole.OPS]
    await ops.goto(f"{base}/console/audit?type=tenant.suspended")
    await expect(ops.locator("#audit tbody tr").first).to_contain_text(f"user:{ops_user.id}")
    await screenshot(ops, "console-audit")
    await ops.click("#audit tbody tr a")
    await expect(ops.locator("#inclusion-verdict")).to_contain_text("included in the signed")
    await ops.goto(f"{base}/console/users")
    await screenshot(ops, "console-users")
    assert problems == []

