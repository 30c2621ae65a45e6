"""Malformed ids in page URLs get a clear 404 page before any lookup, never a 500."""

from __future__ import annotations

from tests.conftest import FakeClock
from tests.integration.test_web_pages import _ops
from tests.integration.test_web_security import (  # noqa: F401  (fixture reused)
    Client,
    page_csrf,
    tenant_admin,
    web,
)

# A NUL byte (PostgreSQL refuses it in text), a well-formed id of another kind, and
# one longer than any id.  %00 stays percent-encoded in the request line.
BAD_UUIDS = ("%00", "01936a5e-8f3c-7d2a-9b1e-4c5d6e7f8a9b%00", "vgw_t_3f9a0c1b2d4e", "a" * 300)
BAD_TOKEN_IDS = ("%00", "3f9a0c1b2d4%00", "01936a5e-8f3c-7d2a-9b1e-4c5d6e7f8a9b", "f" * 300)
BAD_KEY_IDS = ("%00", "pta%002026", "k" * 300)
BAD_INDEXES = ("%00", "1%00", "-1", "9" * 300)


def _assert_refused(status: int, html: str, name: str) -> None:
    assert status == 404, html
    assert name in html and "nothing has this id" in html, html


async def test_console_refuses_malformed_ids(web: Client, clock: FakeClock) -> None:  # noqa: F811
    csrf = await _ops(web, clock)
    for bad in BAD_UUIDS:
        resp = await web.get(f"/console/tenants/{bad}")
        _assert_refused(resp.status, await resp.text(), "tenant_id")
        for action in ("tokens", "invitations", "verify", "suspend", "terminate"):
            resp = await web.post(f"/console/tenants/{bad}/{action}", data={"csrf": csrf})
            _assert_refused(resp.status, await resp.text(), "tenant_id")
        resp = await web.post(f"/console/users/{bad}/disable", data={"csrf": csrf})
        _assert_refused(resp.status, await resp.text(), "user_id")
    for bad in BAD_TOKEN_IDS:
        resp = await web.post(f"/console/tokens/{bad}/revoke", data={"csrf": csrf})
        _assert_refused(resp.status, await resp.text(), "token_id")
    for bad in BAD_KEY_IDS:
        resp = await web.post(f"/console/regulator-keys/{bad}/revoke", data={"csrf": csrf})
        _assert_refused(resp.status, await resp.text(), "keyid")
    for bad in BAD_INDEXES:
        resp = await web.get(f"/console/audit/{bad}")
        assert resp.status == 404, await resp.text()
        assert "index" in await resp.text()
    # Well-formed ids that name nothing are still a plain 404, and the console still works.
    missing = await web.get("/console/tenants/01936a5e-8f3c-7d2a-9b1e-4c5d6e7f8a9b")
    assert missing.status == 404
    assert (await web.get("/console/tenants")).status == 200


async def test_portal_refuses_malformed_ids(web: Client) -> None:  # noqa: F811
    await tenant_admin(web)
    csrf = await page_csrf(web)
    for bad in BAD_UUIDS:
        for path in (f"/portal/devices/{bad}", f"/portal/devices/{bad}/config"):
            resp = await web.get(path)
            _assert_refused(resp.status, await resp.text(), "peer_id")
        for action in ("rotate", "revoke", "link"):
            resp = await web.post(f"/portal/devices/{bad}/{action}", data={"csrf": csrf})
            _assert_refused(resp.status, await resp.text(), "peer_id")
    for bad in BAD_TOKEN_IDS:
        resp = await web.post(f"/portal/tokens/{bad}/revoke", data={"csrf": csrf})
        _assert_refused(resp.status, await resp.text(), "token_id")
    assert (await web.get("/portal")).status == 200


async def test_a_signed_out_visitor_is_sent_to_sign_in_first(web: Client) -> None:  # noqa: F811
    resp = await web.get("/portal/devices/%00", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/signin")


async def test_console_audit_filters_refuse_bad_text(web: Client, clock: FakeClock) -> None:  # noqa: F811
    await _ops(web, clock)
    # %C2%B2 is a superscript two: str.isdigit() says yes, int() refuses it.
    refused = (
        ("type=%00", "type"), ("type=peer.%00", "type"), ("type=" + "a." * 40, "type"),
        ("tenant=%00", "tenant"), ("before=%C2%B2", "before"), ("before=%00", "before"),
        ("before=" + "9" * 5000, "before"),
    )
    for query, field in refused:
        resp = await web.get(f"/console/audit?{query}")
        assert resp.status == 400, (query, await resp.text())
        assert field in await resp.text()
    assert (await web.get("/console/audit?type=&tenant=&before=")).status == 200
