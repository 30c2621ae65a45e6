"""End to end: the gateway in a namespace with real wireguard-go, a real client set up from
the served config in another namespace, real pings through the tunnel."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.netns import (
    Namespace,
    require_userspace_wireguard,
    run,
    unique,
    veth_pair,
)

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], bool], *, within: float, step: float = 0.05) -> float:
    """Poll until `check()` holds; return the seconds it took, or fail after `within`."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        time.sleep(step)


@dataclass
class Gateway:
    """The vpngw service running inside its own namespace, reached over a veth pair."""

    ns: Namespace
    client_ns: Namespace
    interface: str
    api: str
    endpoint: str
    ops_token: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    ready_within: float = 30
    clients: list[str] = field(default_factory=list)

    def start_service(self) -> None:
        """Run `vpngw serve` (again) and wait until it is ready."""
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            try:
                return self.http("GET", "/readyz")[0] == 200
            except OSError:
                return False

        try:
            wait_for(ready, within=self.ready_within, step=0.2)
        except AssertionError:
            tail = self.log_path.read_text()[-4000:]
            raise AssertionError("gateway not ready:\n" + tail) from None

    def http(
        self, method: str, path: str, token: str | None = None, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)  # noqa: S310
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - test-host URL
                raw = resp.read()
                status = resp.status
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            raw, status, ctype = err.read(), err.code, err.headers.get("Content-Type", "")
        return status, (json.loads(raw) if "json" in ctype and raw else raw.decode())

    def gateway_peers(self) -> set[str]:
        out = run(*self.ns.cmd("wg", "show", self.interface, "peers"))
        return set(out.split())

    def ping(self, address: str = "10.100.0.1", count: int = 1) -> bool:
        done = subprocess.run(
            self.client_ns.cmd("ping", "-c", str(count), "-W", "1", address),
            capture_output=True,
            check=False,
        )
        return done.returncode == 0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    require_userspace_wireguard()
    with running_gateway(tmp_path_factory.mktemp("gw") / "data", backend="userspace") as gateway:
        yield gateway


@contextlib.contextmanager
def running_gateway(data: Path, *, backend: str, ready_within: float = 30) -> Iterator[Gateway]:
    """`vpngw serve` on the given WireGuard backend in its own namespace, a client namespace
    beside it (tests/vm runs this on the kernel backend, in an emulated VM: slower to start)."""
    gw_ns, cl_ns = Namespace.create("vgwg"), Namespace.create("vgwc")
    net = secrets.randbelow(200) + 20
    try:
        # root ↔ gateway: the API; gateway ↔ client: the "internet" WireGuard runs over.
        api_root, api_gw = unique("va"), unique("vb")
        run("ip", "link", "add", api_root, "type", "veth", "peer", "name", api_gw,
            "netns", gw_ns.name)  # fmt: skip
        run("ip", "addr", "add", f"10.201.{net}.1/30", "dev", api_root)
        run("ip", "link", "set", api_root, "up")
        run("ip", "-n", gw_ns.name, "addr", "add", f"10.201.{net}.2/30", "dev", api_gw)
        run("ip", "-n", gw_ns.name, "link", "set", api_gw, "up")
        veth_pair(
            gw_ns, unique("vw"), f"10.202.{net}.1/24", cl_ns, unique("vc"), f"10.202.{net}.2/24"
        )

        interface = unique("vgw")
        endpoint = f"10.202.{net}.1:51820"
        api = f"http://10.201.{net}.2:8080"
        init = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "init",
                "--data-dir",
                str(data),
                "--json",
                "--endpoint",
                endpoint,
                "--pool",
                "10.100.0.0/24",
                "--pool",
                "fd00:100::/64",
                "--wireguard",
                backend,
                "--interface",
                interface,
                "--listen",
                f"10.201.{net}.2:8080",
                # A namespace link of the test only: plain HTTP is allowed explicitly.
                "--allow-plain-http",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        ops_token = json.loads(init.stdout)["ops_token"]
        # Faster loops than production so the healing tests stay short.
        env_overrides = {
            "VPNGW_WIREGUARD_RECONCILE_INTERVAL_SECONDS": "2",
            "VPNGW_WIREGUARD_COLLECT_INTERVAL_SECONDS": "0.5",
            "VPNGW_SERVER_LOG_FORMAT": "json",
            # These tests are about the tunnel; tests/e2e/test_egress.py carries traffic out.
            "VPNGW_EGRESS_ENABLED": "false",
        }
        log_path = data.parent / "serve.log"
        gateway = Gateway(
            gw_ns, cl_ns, interface, api, endpoint, ops_token,
            proc=subprocess.Popen(["true"]), log_path=log_path,
            command=gw_ns.cmd(sys.executable, "-m", "gateway.cli", "serve", "--data-dir",
                              str(data)),
            env={**os.environ, **env_overrides}, ready_within=ready_within,
        )  # fmt: skip
        gateway.proc.wait()
        gateway.start_service()
        yield gateway
    finally:
        if "gateway" in locals():
            gateway.proc.send_signal(signal.SIGTERM)
            try:
                gateway.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gateway.proc.kill()
        cl_ns.delete()
        gw_ns.delete()
        if "api_root" in locals():
            subprocess.run(["ip", "link", "del", api_root], check=False, capture_output=True)


@dataclass
class Client:
    ifname: str
    peer: dict[str, Any]
    token: str
    daemon: subprocess.Popen[bytes]


def onboard(gw: Gateway, name: str) -> tuple[str, str]:
    status, tenant = gw.http(
        "POST",
        "/ops/v1/tenants",
        gw.ops_token,
        {
            "legal_name": f"{name} Ltd",
            "registration_number": f"RC-{secrets.token_hex(4)}",
            "tax_id": "T-1",
            "country": "PK",
            "contact_email": "it@example.com",
        },
    )
    assert status == 201, tenant
    gw.http(
        "POST",
        f"/ops/v1/tenants/{tenant['id']}/verification",
        gw.ops_token,
        {"evidence_reference": "KYC-1"},
    )
    status, token = gw.http("POST", f"/ops/v1/tenants/{tenant['id']}/tokens", gw.ops_token)
    assert status == 201
    return tenant["id"], token["token"]


def connect_client(gw: Gateway, token: str, tmp_path: Path) -> Client:
    """What a tenant's device does: own key, served config, wg-quick strip, wg setconf."""
    private = run("wg", "genkey").strip()
    public = run("wg", "pubkey", stdin=private).strip()
    status, peer = gw.http("POST", "/v1/peers", token, {"name": "device", "public_key": public})
    assert status == 201, peer
    status, conf = gw.http("GET", f"/v1/peers/{peer['id']}/config", token)
    assert status == 200 and f"Endpoint = {gw.endpoint}" in conf
    conf = conf.replace("# PrivateKey = <this device's private key>", f"PrivateKey = {private}")
    conf_path = tmp_path / "wg0.conf"
    conf_path.write_text(conf)
    stripped = run("wg-quick", "strip", str(conf_path))
    (tmp_path / "stripped.conf").write_text(stripped)

    ifname = unique("vcl")
    daemon = subprocess.Popen(
        gw.client_ns.cmd("wireguard-go", "-f", ifname),
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LOG_LEVEL": "error"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: Path(f"/var/run/wireguard/{ifname}.sock").exists(), within=5)
    run(*gw.client_ns.cmd("wg", "setconf", ifname, str(tmp_path / "stripped.conf")))
    for ip in peer["tunnel_ips"]:
        prefix = 32 if "." in ip else 128
        run("ip", "-n", gw.client_ns.name, "addr", "add", f"{ip}/{prefix}", "dev", ifname)
    run("ip", "-n", gw.client_ns.name, "link", "set", ifname, "up")
    # Only the gateway's tunnel address goes through the tunnel in this test network.
    run("ip", "-n", gw.client_ns.name, "route", "replace", "10.100.0.1/32", "dev", ifname)
    client = Client(ifname, peer, token, daemon)
    gw.clients.append(ifname)
    return client


def disconnect(client: Client) -> None:
    client.daemon.terminate()
    client.daemon.wait(timeout=5)


def test_client_from_served_config_reaches_gateway_and_session_is_recorded(
    gateway: Gateway, tmp_path: Path
) -> None:
    tenant_id, token = onboard(gateway, "Ping Bank")
    client = connect_client(gateway, token, tmp_path)
    try:
        assert client.peer["public_key"] in gateway.gateway_peers()
        wait_for(gateway.ping, within=10, step=0.2)

        def connected() -> bool:
            _, doc = gateway.http("GET", f"/v1/peers/{client.peer['id']}", token)
            return bool(doc["connection"]["connected"])

        wait_for(connected, within=10, step=0.2)
        _, doc = gateway.http("GET", f"/v1/peers/{client.peer['id']}", token)
        conn = doc["connection"]
        client_ip = gateway.endpoint.replace(".1:51820", ".2")
        assert conn["endpoint"].startswith(client_ip + ":")
        assert conn["rx_bytes"] > 0 and conn["tx_bytes"] > 0 and conn["latest_handshake"]

        def session_logged() -> bool:
            _, audit = gateway.http(
                "GET", f"/ops/v1/audit?tenant={tenant_id}&type=session.started", gateway.ops_token
            )
            return bool(audit["items"])

        wait_for(session_logged, within=5, step=0.2)
        _, audit = gateway.http(
            "GET", f"/ops/v1/audit?tenant={tenant_id}&type=session.started", gateway.ops_token
        )
        event = audit["items"][0]["event"]
        assert event["peer_id"] == client.peer["id"] and event["gateway_id"] == "gw1"
        assert event["endpoint"] == conn["endpoint"]
        # Metadata only: nothing about destinations or contents is ever in an event.
        assert set(event) == {
            "v",
            "type",
            "ts",
            "salt",
            "peer_id",
            "tenant_id",
            "gateway_id",
            "endpoint",
            "first_handshake",
        }
    finally:
        disconnect(client)


def test_peer_removed_by_hand_comes_back(gateway: Gateway, tmp_path: Path) -> None:
    _, token = onboard(gateway, "Drift Co")
    client = connect_client(gateway, token, tmp_path)
    try:
        key = client.peer["public_key"]
        run(*gateway.ns.cmd("wg", "set", gateway.interface, "peer", key, "remove"))
        assert key not in gateway.gateway_peers()
        wait_for(lambda: key in gateway.gateway_peers(), within=5)
        wait_for(gateway.ping, within=15, step=0.3)
    finally:
        disconnect(client)


def test_unknown_peer_added_by_hand_is_removed(gateway: Gateway) -> None:
    stranger = run("wg", "pubkey", stdin=run("wg", "genkey")).strip()
    run(
        *gateway.ns.cmd(
            "wg", "set", gateway.interface, "peer", stranger, "allowed-ips", "10.100.0.250/32"
        )
    )
    wait_for(lambda: stranger not in gateway.gateway_peers(), within=5)


def test_revocation_cuts_the_tunnel_within_two_seconds(gateway: Gateway, tmp_path: Path) -> None:
    _, token = onboard(gateway, "Revoke Ltd")
    client = connect_client(gateway, token, tmp_path)
    try:
        wait_for(gateway.ping, within=10, step=0.2)
        status, _ = gateway.http("DELETE", f"/v1/peers/{client.peer['id']}", token)
        assert status == 204
        wait_for(lambda: client.peer["public_key"] not in gateway.gateway_peers(), within=2)
        assert not gateway.ping()
    finally:
        disconnect(client)


def test_suspension_cuts_every_tunnel_of_the_tenant_within_two_seconds(
    gateway: Gateway, tmp_path: Path
) -> None:
    tenant_id, token = onboard(gateway, "Suspend Ltd")
    first = connect_client(gateway, token, tmp_path)
    second_key = run("wg", "pubkey", stdin=run("wg", "genkey")).strip()
    status, _ = gateway.http(
        "POST", "/v1/peers", token, {"name": "phone", "public_key": second_key}
    )
    assert status == 201
    try:
        wait_for(
            lambda: {first.peer["public_key"], second_key} <= gateway.gateway_peers(), within=2
        )
        wait_for(gateway.ping, within=10, step=0.2)
        status, _ = gateway.http(
            "POST", f"/ops/v1/tenants/{tenant_id}/suspension", gateway.ops_token, {"reason": "e2e"}
        )
        assert status == 200
        wait_for(
            lambda: not ({first.peer["public_key"], second_key} & gateway.gateway_peers()), within=2
        )
        assert not gateway.ping()
        gateway.http(
            "POST",
            f"/ops/v1/tenants/{tenant_id}/reinstatement",
            gateway.ops_token,
            {"reason": "paid"},
        )
        wait_for(lambda: first.peer["public_key"] in gateway.gateway_peers(), within=2)
    finally:
        disconnect(first)


def test_restarted_wireguard_go_is_refilled(gateway: Gateway, tmp_path: Path) -> None:
    _, token = onboard(gateway, "Restart Ltd")
    client = connect_client(gateway, token, tmp_path)
    try:
        wait_for(gateway.ping, within=10, step=0.2)
        pids = run("pgrep", "-f", f"^wireguard-go {gateway.interface}$").split()
        assert pids
        for pid in pids:
            run("kill", "-9", pid)

        def refilled() -> bool:
            try:
                return client.peer["public_key"] in gateway.gateway_peers()
            except AssertionError:  # the interface is briefly gone
                return False

        wait_for(refilled, within=10, step=0.2)
        # The client re-handshakes on its own once its old session is refused.
        wait_for(gateway.ping, within=30, step=0.5)
        status, ready = gateway.http("GET", "/readyz")
        assert status == 200, ready
    finally:
        disconnect(client)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_tunnels_survive_a_restart_of_the_service(
    gateway: Gateway, tmp_path: Path, stop: signal.Signals
) -> None:
    _, token = onboard(gateway, f"Uptime {stop.name} Ltd")
    client = connect_client(gateway, token, tmp_path)
    try:
        wait_for(gateway.ping, within=10, step=0.2)
        peers_before = gateway.gateway_peers()
        daemon_cmd = f"^wireguard-go (-f )?{gateway.interface}$"  # -f: as older versions ran it
        (daemon,) = run("pgrep", "-f", daemon_cmd).split()
        # Ping all through the stop and the restart: not one packet may go unanswered.
        pinger = subprocess.Popen(
            gateway.client_ns.cmd("ping", "-n", "-i", "0.2", "-W", "1", "10.100.0.1"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            time.sleep(1)
            gateway.proc.send_signal(stop)
            gateway.proc.wait(timeout=15)
            time.sleep(2)  # the service is down; the tunnel must not notice
            assert gateway.ping()
            assert gateway.gateway_peers() == peers_before
            gateway.start_service()
            time.sleep(1)
        finally:
            pinger.send_signal(signal.SIGINT)
            out, _ = pinger.communicate(timeout=10)
        summary = next(line for line in out.splitlines() if "packets transmitted" in line)
        sent, received = (int(part.split()[0]) for part in summary.split(",")[:2])
        assert sent >= 10 and received == sent, out
        # The same daemon still serves the same peers; the new service adopted it.
        assert run("pgrep", "-f", daemon_cmd).split() == [daemon]
        assert gateway.gateway_peers() == peers_before
        assert '"wireguard_go.adopted"' in gateway.log_path.read_text()
        status, ready = gateway.http("GET", "/readyz")
        assert status == 200, ready
        # And the new service drives it: a revocation still cuts the tunnel.
        status, _ = gateway.http("DELETE", f"/v1/peers/{client.peer['id']}", token)
        assert status == 204
        wait_for(lambda: client.peer["public_key"] not in gateway.gateway_peers(), within=2)
    finally:
        disconnect(client)
