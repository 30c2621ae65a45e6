"""End to end on the kernel backend: `vpngw serve` drives an in-kernel WireGuard interface, a
client set up from the served config tunnels to it, the session is recorded, revocation cuts it.

Runs for real inside the kernel test VM (tests/vm/kernel_vm.py); skips on a host without the
wireguard module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import components
from tests.e2e.test_tunnel import (
    Gateway,
    connect_client,
    disconnect,
    onboard,
    running_gateway,
    wait_for,
)
from tests.integration.netns import (
    Namespace,
    kernel_wireguard_available,
    require_userspace_wireguard,
    run,
)

pytestmark = pytest.mark.root


@pytest.fixture
def kernel_gateway(tmp_path: Path) -> Iterator[Gateway]:
    # The client side is wireguard-go, so the userspace requirements hold too.
    require_userspace_wireguard()
    probe = Namespace.create("vkp")
    try:
        components.require_kernel_wireguard_or_skip(kernel_wireguard_available(probe))
    finally:
        probe.delete()
    # Under software emulation the service takes a while to import and migrate.
    with running_gateway(tmp_path / "data", backend="kernel", ready_within=240) as gateway:
        yield gateway


def link_kind(gw: Gateway) -> str:
    (link,) = json.loads(run(*gw.ns.cmd("ip", "-j", "-d", "link", "show", "dev", gw.interface)))
    return str(link["linkinfo"]["info_kind"])


def test_kernel_gateway_serves_a_client_records_the_session_and_revokes_it(
    kernel_gateway: Gateway, tmp_path: Path
) -> None:
    gw = kernel_gateway
    # The interface is the kernel's own, not a wireguard-go TUN device.
    assert link_kind(gw) == "wireguard"
    tenant_id, token = onboard(gw, "Kernel Bank")
    client = connect_client(gw, token, tmp_path)
    try:
        key = client.peer["public_key"]
        wait_for(lambda: key in gw.gateway_peers(), within=10)
        wait_for(gw.ping, within=20, step=0.3)

        def connected() -> bool:
            _, doc = gw.http("GET", f"/v1/peers/{client.peer['id']}", token)
            return bool(doc["connection"]["connected"])

        wait_for(connected, within=20, step=0.3)
        _, doc = gw.http("GET", f"/v1/peers/{client.peer['id']}", token)
        conn = doc["connection"]
        client_ip = gw.endpoint.replace(".1:51820", ".2")
        assert conn["endpoint"].startswith(client_ip + ":")
        assert conn["rx_bytes"] > 0 and conn["tx_bytes"] > 0 and conn["latest_handshake"]

        def started_events() -> list[dict[str, object]]:
            _, audit = gw.http(
                "GET", f"/ops/v1/audit?tenant={tenant_id}&type=session.started", gw.ops_token
            )
            return [item["event"] for item in audit["items"]]

        wait_for(lambda: bool(started_events()), within=20, step=0.3)
        (event,) = started_events()
        assert event["peer_id"] == client.peer["id"] and event["endpoint"] == conn["endpoint"]

        # A peer removed by hand is put back by the reconciler.
        run(*gw.ns.cmd("wg", "set", gw.interface, "peer", key, "remove"))
        wait_for(lambda: key in gw.gateway_peers(), within=20, step=0.2)

        status, _ = gw.http("DELETE", f"/v1/peers/{client.peer['id']}", token)
        assert status == 204
        wait_for(lambda: key not in gw.gateway_peers(), within=10, step=0.1)
        assert not gw.ping()
    finally:
        disconnect(client)
