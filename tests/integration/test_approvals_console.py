"""Two-person control in the ops console: requests wait, another person approves there."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from gateway.http import appkeys
from provisioning.accounts.passwords import Passwords
from provisioning.accounts.users import UserRole
from tests.conftest import FakeClock
from tests.helpers import bearer, ops_token
from tests.integration.test_web_pages import _ops
from tests.integration.test_web_security import Client, activate, invite


@pytest.fixture
async def web(aiohttp_client: Any, make_settings: Any, database_url: str,
              clock: FakeClock) -> AsyncIterator[Client]:
    settings = make_settings(database_url, approvals={"required": True})
    app = create_app(settings, clock=clock,
                     passwords=Passwords(time_cost=1, memory_kib=8192, parallelism=1))
    yield await aiohttp_client(app)


def public_key() -> str:
    return base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()


async def test_console_requests_wait_and_another_person_approves(
    web: Client, clock: FakeClock
) -> None:
    api = await ops_token(web)
    csrf = await _ops(web, clock)
    # The console user asks: the key waits.
    asked = await web.post("/console/regulator-keys", data={
        "csrf": csrf, "keyid": "pta-web", "public_key": public_key(), "label": "PTA"})
    assert asked.status == 202 and "waits for a second person" in await asked.text()
    keys = await (await web.get("/ops/v1/regulator-keys", headers=bearer(api))).json()
    assert keys["items"] == []
    page = await (await web.get("/console/approvals")).text()
    approval_id = re.search(r'data-approval-id="([0-9a-f-]{36})"', page)
    assert approval_id and "Withdraw" in page and ">Approve<" not in page  # not their own
    forced = await web.post(f"/console/approvals/{approval_id.group(1)}/approve",
                            data={"csrf": csrf})
    assert forced.status == 409 and "different ops principal" in await forced.text()
    # An ops token (another person) approves over the API.
    granted = await web.post(f"/ops/v1/approvals/{approval_id.group(1)}/approval",
                             headers=bearer(api))
    assert granted.status == 200, await granted.text()
    keys = await (await web.get("/ops/v1/regulator-keys", headers=bearer(api))).json()
    assert [(k["keyid"], k["created_by"]) for k in keys["items"]] == [
        ("pta-web", (await granted.json())["approval"]["requested_by"])]
    assert (await granted.json())["approval"]["requested_by"].startswith("user:")

    # The other way round: the API asks, the console user approves.
    asked_api = await web.delete("/ops/v1/regulator-keys/pta-web", headers=bearer(api))
    other = (await asked_api.json())["approval"]["id"]
    page = await (await web.get("/console/approvals")).text()
    assert f'data-approval-id="{other}"' in page and ">Approve<" in page
    done = await web.post(f"/console/approvals/{other}/approve", data={"csrf": csrf},
                          allow_redirects=False)
    assert done.status == 303
    keys = await (await web.get("/ops/v1/regulator-keys", headers=bearer(api))).json()
    assert keys["items"][0]["revoked_at"] is not None
    decided = await (await web.get("/console/approvals")).text()
    assert "status-granted" in decided and "Nothing waits for approval" in decided

    # Disabling an ops user waits too; the console user can reject a request.
    await activate(web, await invite(web, "ops2@example.com", UserRole.OPS, None),
                   with_totp=True)
    users = await (await web.get("/console/users")).text()
    user_id = re.search(r'data-user-id="([0-9a-f-]{36})"><td>ops2@example.com', users)
    assert user_id
    held = await web.post(f"/console/users/{user_id.group(1)}/disable", data={"csrf": csrf})
    assert held.status == 202
    pending = await web.app[appkeys.APPROVALS].list()
    assert pending[0].kind == "ops_user.disable"
    rejected = await web.post(f"/console/approvals/{pending[0].id}/reject",
                              data={"csrf": csrf, "reason": "changed my mind"},
                              allow_redirects=False)
    assert rejected.status == 303
    assert "changed my mind" in await (await web.get("/console/approvals")).text()
    users = await (await web.get("/console/users")).text()
    assert "disabled" not in users
