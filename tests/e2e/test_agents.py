"""End to end with many gateways: a control plane (`vpngw serve --wireguard off` on
PostgreSQL), two gateway namespaces each running `vpngw agent` with wireguard-go, and one
client per gateway set up from its served config. Real pings through both tunnels.

The agents count a silent session as ended 2 s after its last handshake instead of
WireGuard's 180 s (`--session-silence`), and the served configs carry no keepalive, so a
client that goes away is logged as gone within the test's time."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.audit.canonical import format_time
from gateway.egress.mapping import EgressMap
from tests.e2e.test_egress import (
    PUBLIC,
    SERVER,
    Device,
    full_tunnel_device,
    regulator,
    seen_with,
    signed_query,
    start_recorder,
    stop_daemon,
)
from tests.e2e.test_tunnel import onboard, wait_for
from tests.integration.netns import Namespace, require_userspace_wireguard, run, unique, veth_pair

pytestmark = [pytest.mark.root, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
FAST = {"VPNGW_SERVER_LOG_FORMAT": "json", "VPNGW_EGRESS_ENABLED": "false",
        "VPNGW_NETWORK_PERSISTENT_KEEPALIVE": "0"}
SILENCE = 2  # seconds without a handshake before the agents end a session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vpngw(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Site:
    """One gateway host (namespace + agent) and one client namespace behind it."""

    name: str
    ns: Namespace
    client_ns: Namespace
    interface: str
    endpoint: str
    data_dir: Path
    log_path: Path
    gateway: dict[str, Any] = field(default_factory=dict)
    agent: subprocess.Popen[bytes] | None = None
    client_if: str = ""
    client_daemon: subprocess.Popen[bytes] | None = None
    peer: dict[str, Any] = field(default_factory=dict)

    @property
    def tunnel_gateway(self) -> str:
        pool4 = next(p for p in self.gateway["pools"] if "." in p)
        return pool4.split("/")[0].rsplit(".", 1)[0] + ".1"

    def start_agent(self, control: str) -> None:
        with self.log_path.open("ab") as log_file:
            self.agent = subprocess.Popen(
                self.ns.cmd(*vpngw(
                    "agent", "--control", control, "--data-dir", str(self.data_dir),
                    "--wireguard", "userspace", "--interface", self.interface, "--allow-http",
                    "--collect-interval", "0.5", "--session-silence", str(SILENCE),
                    "--session-grace", "0",
                )),
                cwd=ROOT, env={**os.environ, "VPNGW_AGENT_TOKEN": self.gateway["agent_token"]},
                stdout=log_file, stderr=subprocess.STDOUT,
            )

    def gateway_peers(self) -> set[str]:
        done = subprocess.run(self.ns.cmd("wg", "show", self.interface, "peers"),
                              capture_output=True, text=True, check=False)
        return set(done.stdout.split()) if done.returncode == 0 else set()

    def queued(self, kind: str) -> list[dict[str, Any]]:
        """Events of `kind` waiting in the agent's on-disk queue (not yet acknowledged)."""
        return [e for path in sorted((self.data_dir / "outbox").glob("*.json"))
                for e in json.loads(path.read_text())["events"] if e["type"] == kind]

    def ping(self) -> bool:
        done = subprocess.run(
            self.client_ns.cmd("ping", "-c", "1", "-W", "1", self.tunnel_gateway),
            capture_output=True, check=False,
        )
        return done.returncode == 0


@dataclass
class ControlPlane:
    api: str
    listen: str
    data_dir: Path
    log_path: Path
    ops_token: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                vpngw("serve", "--data-dir", str(self.data_dir), "--wireguard", "off",
                      "--listen", self.listen),
                cwd=ROOT, env={**os.environ, **FAST}, stdout=log_file, stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            try:
                return self.http("GET", "/readyz")[0] == 200
            except OSError:
                return False

        try:
            wait_for(ready, within=60, step=0.2)
        except AssertionError:
            tail = self.log_path.read_text()[-4000:]
            raise AssertionError("control plane not ready:\n" + tail) from None

    def http(self, method: str, path: str, token: str | None = None,
             body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)  # noqa: S310
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - test-host URL
                raw, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            raw, status, ctype = err.read(), err.code, err.headers.get("Content-Type", "")
        return status, (json.loads(raw) if "json" in ctype and raw else raw.decode())

    def logged(self, kind: str) -> list[dict[str, Any]]:
        status, doc = self.http("GET", f"/ops/v1/audit?type={kind}&limit=500", self.ops_token)
        assert status == 200, doc
        return [i["event"] for i in doc["items"]]


@dataclass
class Hosts:
    """What a deployment creates, so its teardown removes exactly that."""

    tmp_path: Path
    net: int = field(default_factory=lambda: secrets.randbelow(200) + 20)
    namespaces: list[Namespace] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    control: ControlPlane | None = None
    port: int = field(default_factory=free_port)

    @property
    def listen(self) -> str:
        # The control plane listens on the root end of site 1's link (reached by all).
        return f"10.211.{self.net}.1:{self.port}"

    def namespace(self, prefix: str) -> Namespace:
        ns = Namespace.create(prefix)
        self.namespaces.append(ns)
        return ns

    def add_site(self, n: int) -> Site:
        """Gateway namespace n (its agent reaches the control plane in the root namespace)
        and a client namespace behind it (the underlay WireGuard runs over)."""
        net, tmp_path = self.net, self.tmp_path
        gw_ns, cl_ns = self.namespace(f"vag{n}"), self.namespace(f"vac{n}")
        root_if, gw_if = unique("vr"), unique("vg")
        run("ip", "link", "add", root_if, "type", "veth", "peer", "name", gw_if,
            "netns", gw_ns.name)  # fmt: skip
        self.root_links.append(root_if)
        run("ip", "addr", "add", f"10.21{n}.{net}.1/30", "dev", root_if)
        run("ip", "link", "set", root_if, "up")
        run("ip", "-n", gw_ns.name, "addr", "add", f"10.21{n}.{net}.2/30", "dev", gw_if)
        run("ip", "-n", gw_ns.name, "link", "set", gw_if, "up")
        run("ip", "-n", gw_ns.name, "route", "add", f"10.211.{net}.1/32", "via",
            f"10.21{n}.{net}.1")
        veth_pair(gw_ns, unique("vw"), f"10.22{n}.{net}.1/24",
                  cl_ns, unique("vc"), f"10.22{n}.{net}.2/24")
        site = Site(
            name=f"site{n}-{secrets.token_hex(2)}", ns=gw_ns, client_ns=cl_ns,
            interface=unique("vag"), endpoint=f"10.22{n}.{net}.1:51820",
            data_dir=tmp_path / f"agent{n}", log_path=tmp_path / f"agent{n}.log",
        )
        self.sites.append(site)
        return site

    def start_control(self, postgres_url: str) -> ControlPlane:
        data = self.tmp_path / "control"
        init = subprocess.run(
            vpngw("init", "--data-dir", str(data), "--json", "--database-url", postgres_url,
                  "--wireguard", "off", "--endpoint", "unused.test:51820",
                  "--listen", self.listen, "--allow-plain-http"),
            capture_output=True, text=True, check=True, cwd=ROOT,
            env={**os.environ, **FAST},
        )
        self.control = ControlPlane(f"http://{self.listen}", self.listen, data,
                                    self.tmp_path / "control.log",
                                    json.loads(init.stdout)["ops_token"])
        self.control.start()
        return self.control

    def tear_down(self) -> None:
        for site in self.sites:
            stop(site.agent)
            stop(site.client_daemon)
        for proc in self.processes:
            stop(proc)
        if self.control is not None:
            stop(self.control.proc)
        for ns in self.namespaces:
            ns.delete()
        for link in self.root_links:
            subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str) -> Iterator[tuple[ControlPlane, list[Site]]]:
    require_userspace_wireguard()
    hosts = Hosts(tmp_path)
    try:
        for n in (1, 2):
            hosts.add_site(n)
        yield hosts.start_control(postgres_url), hosts.sites
    finally:
        hosts.tear_down()


@dataclass
class EgressSite:
    control: ControlPlane
    site: Site
    uplink: str  # the gateway's interface towards the internet, holding PUBLIC
    recorder_log: Path


@pytest.fixture
def egress_deployment(tmp_path: Path, postgres_url: str) -> Iterator[EgressSite]:
    """One agent-run gateway whose default route leads to an "internet" namespace."""
    require_userspace_wireguard()
    hosts = Hosts(tmp_path)
    try:
        site = hosts.add_site(1)
        internet = hosts.namespace("vain")
        uplink = unique("vup")
        veth_pair(site.ns, uplink, f"{PUBLIC}/24", internet, unique("vnet"), f"{SERVER}/24")
        run("ip", "-n", site.ns.name, "route", "add", "default", "via", SERVER)
        recorder_log = tmp_path / "seen.jsonl"
        hosts.processes.append(start_recorder(internet, recorder_log))
        yield EgressSite(hosts.start_control(postgres_url), site, uplink, recorder_log)
    finally:
        hosts.tear_down()


def connect(control: ControlPlane, site: Site, token: str, tmp_path: Path) -> None:
    private = run("wg", "genkey").strip()
    public = run("wg", "pubkey", stdin=private).strip()
    status, peer = control.http("POST", "/v1/peers", token, {
        "name": site.name, "public_key": public, "gateway_id": site.gateway["id"]})
    assert status == 201, peer
    site.peer = peer

    def config() -> str | None:
        status, conf = control.http("GET", f"/v1/peers/{peer['id']}/config", token)
        return conf if status == 200 else None

    wait_for(lambda: config() is not None, within=30, step=0.2)  # the agent reported its key
    conf = config() or ""
    assert f"Endpoint = {site.endpoint}" in conf
    assert "PersistentKeepalive" not in conf  # a client that stops sending goes silent
    conf = conf.replace("# PrivateKey = <this device's private key>", f"PrivateKey = {private}")
    path = tmp_path / f"{site.name}.conf"
    path.write_text(conf)
    (tmp_path / f"{site.name}.stripped").write_text(run("wg-quick", "strip", str(path)))
    start_client(site, tmp_path)


def start_client(site: Site, tmp_path: Path) -> None:
    """A fresh client interface from the served config: its first packet handshakes anew."""
    peer = site.peer
    site.client_if = unique("vcl")
    site.client_daemon = subprocess.Popen(
        site.client_ns.cmd("wireguard-go", "-f", site.client_if),
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LOG_LEVEL": "error"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: Path(f"/var/run/wireguard/{site.client_if}.sock").exists(), within=5)
    ns = site.client_ns.name
    run(*site.client_ns.cmd("wg", "setconf", site.client_if,
                            str(tmp_path / f"{site.name}.stripped")))
    for ip in peer["tunnel_ips"]:
        run("ip", "-n", ns, "addr", "add", f"{ip}/{32 if '.' in ip else 128}",
            "dev", site.client_if)
    run("ip", "-n", ns, "link", "set", site.client_if, "up")
    run("ip", "-n", ns, "route", "replace", f"{site.tunnel_gateway}/32", "dev", site.client_if)


def disconnect(site: Site) -> None:
    """The client goes away: its daemon and interface are gone, nothing more is sent."""
    stop(site.client_daemon)
    subprocess.run(site.client_ns.cmd("ip", "link", "del", site.client_if),
                   check=False, capture_output=True)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def outbox_rows(postgres_url: str) -> int:
    """Events committed but not yet sequenced into the log."""
    async def count() -> int:
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM outbox"))
        finally:
            await conn.close()

    return asyncio.run(count())


def test_two_gateways_run_by_agents_carry_their_own_clients(
    deployment: tuple[ControlPlane, list[Site]], tmp_path: Path, postgres_url: str
) -> None:
    control, sites = deployment
    for site in sites:
        status, site.gateway = control.http("POST", "/ops/v1/gateways", control.ops_token,
                                            {"name": site.name, "endpoint": site.endpoint})
        assert status == 201, site.gateway
        site.start_agent(f"http://{control.listen}")
    status, tenant = control.http("POST", "/ops/v1/tenants", control.ops_token, {
        "legal_name": "Two Sites Ltd", "registration_number": f"RC-{secrets.token_hex(4)}",
        "tax_id": "T-1", "country": "DE", "contact_email": "it@two.example"})
    assert status == 201
    control.http("POST", f"/ops/v1/tenants/{tenant['id']}/verification", control.ops_token,
                 {"evidence_reference": "KYC-1"})
    _, issued = control.http("POST", f"/ops/v1/tenants/{tenant['id']}/tokens", control.ops_token)
    token = issued["token"]
    for site in sites:
        connect(control, site, token, tmp_path)

    # Both tunnels work, each through its own gateway only.
    for site in sites:
        wait_for(site.ping, within=30, step=0.2)
    assert sites[0].peer["public_key"] in sites[0].gateway_peers()
    assert sites[0].peer["public_key"] not in sites[1].gateway_peers()

    # Each session is logged under the gateway that saw it.
    def both_logged() -> bool:
        return len(control.logged("session.started")) >= 2

    wait_for(both_logged, within=30, step=0.5)
    by_peer = {e["peer_id"]: e["gateway_id"] for e in control.logged("session.started")}
    for site in sites:
        assert by_peer[site.peer["id"]] == site.gateway["id"]

    # Suspending the tenant takes both peers off both interfaces within 2 s.
    status, _ = control.http("POST", f"/ops/v1/tenants/{tenant['id']}/suspension",
                             control.ops_token, {"reason": "audit"})
    assert status == 200
    wait_for(lambda: all(s.peer["public_key"] not in s.gateway_peers() for s in sites),
             within=2, step=0.05)
    status, _ = control.http("POST", f"/ops/v1/tenants/{tenant['id']}/reinstatement",
                             control.ops_token, {"reason": "cleared"})
    assert status == 200
    for site in sites:
        wait_for(site.ping, within=30, step=0.2)

    # The control plane stops: both tunnels stay up.
    stop(control.proc)
    for site in sites:
        assert wait_for(site.ping, within=10, step=0.2) >= 0
    # An agent restarted while the control plane is away brings its tunnel back from disk.
    first = sites[0]
    stop(first.agent)
    first.start_agent(f"http://{control.listen}")
    wait_for(lambda: first.peer["public_key"] in first.gateway_peers(), within=60, step=0.2)
    wait_for(first.ping, within=30, step=0.2)

    # A client connects afresh and disconnects while the control plane is away: the end of
    # its session waits in its agent's queue on disk.
    second = sites[1]
    disconnect(second)
    time.sleep(SILENCE + 1)  # whatever session this client had before has gone silent
    connected_at = datetime.now(UTC).replace(microsecond=0)
    start_client(second, tmp_path)
    wait_for(second.ping, within=30, step=0.2)  # a new handshake: a new session

    def queued_end() -> list[dict[str, Any]]:
        return [e for e in second.queued("session.ended")
                if when(e["first_handshake"]) >= connected_at]

    disconnect(second)
    wait_for(lambda: len(queued_end()) == 1, within=30, step=0.2)
    (observed,) = queued_end()

    # The control plane returns; the agents reconnect and report again.
    returned_at = datetime.now(UTC)
    control.start()
    status, shown = control.http("GET", f"/ops/v1/gateways/{first.gateway['id']}",
                                 control.ops_token)
    assert status == 200 and shown["public_key"] and shown["active_peers"] == 1
    started = [e for e in control.logged("session.started") if e["peer_id"] == first.peer["id"]]
    assert all(e["gateway_id"] == first.gateway["id"] for e in started)

    # The disconnected client's session.ended is in the log exactly once, under its own
    # gateway, with the time it was observed (before the control plane came back).
    wait_for(lambda: not list((second.data_dir / "outbox").glob("*.json")), within=30, step=0.2)
    wait_for(lambda: outbox_rows(postgres_url) == 0, within=30, step=0.2)
    ended = [e for e in control.logged("session.ended") if e["peer_id"] == second.peer["id"]]
    mine = [e for e in ended if when(e["first_handshake"]) >= connected_at]
    assert len(mine) == 1, mine
    (logged,) = mine
    assert logged["gateway_id"] == second.gateway["id"]
    assert logged["first_handshake"] == observed["first_handshake"]
    assert logged["last_handshake"] == observed["last_handshake"]
    assert connected_at <= when(logged["observed_at"]) < returned_at
    assert when(logged["observed_at"]) == when(observed["at"])
    assert when(logged["ts"]) >= returned_at  # written when the control plane was back
    # Nothing at all was logged twice: every session of this client ended once.
    firsts = [e["first_handshake"] for e in ended]
    assert len(firsts) == len(set(firsts)), ended


def test_an_agent_run_gateway_translates_into_the_peers_block_and_names_the_peer(
    egress_deployment: EgressSite, tmp_path: Path
) -> None:
    control, site = egress_deployment.control, egress_deployment.site
    status, site.gateway = control.http("POST", "/ops/v1/gateways", control.ops_token, {
        "name": site.name, "endpoint": site.endpoint,
        "egress": {"interface": egress_deployment.uplink, "addresses": [PUBLIC], "ipv6": "off"}})
    assert status == 201, site.gateway
    site.start_agent(f"http://{control.listen}")
    tenant_id, token = onboard(control, "Agent Egress")  # type: ignore[arg-type]
    private = run("wg", "genkey").strip()
    public = run("wg", "pubkey", stdin=private).strip()
    status, peer = control.http("POST", "/v1/peers", token, {
        "name": "laptop", "public_key": public, "gateway_id": site.gateway["id"]})
    assert status == 201, peer

    def config() -> str | None:
        status, conf = control.http("GET", f"/v1/peers/{peer['id']}/config", token)
        return conf if status == 200 else None

    wait_for(lambda: config() is not None, within=30, step=0.2)  # the agent reported its key
    device = full_tunnel_device(site.client_ns, config() or "", private,
                                Device(tenant_id, token, site.client_ns, peer, None),
                                gateway_ip=site.tunnel_gateway, tmp=tmp_path / "device")
    try:
        # The mapping as the log holds it: this gateway's own egress.configured.
        (configured,) = [e for e in control.logged("egress.configured")
                         if e["gateway_id"] == site.gateway["id"]]
        block = EgressMap.from_event(configured).block_of(
            ipaddress.IPv4Address(device.tunnel_ip))
        assert block is not None and str(block.address) == PUBLIC
        status, view = control.http("GET", f"/v1/peers/{peer['id']}", token)
        assert status == 200 and view["egress"] == block.as_dict(), view
        key, keyid, pins = regulator(control)
        for proto, port in (("udp", 7001), ("tcp", 7002)):
            tag = f"agent-{proto}-{peer['id']}"
            assert device.send(proto, SERVER, port, tag), f"{proto} from {device.tunnel_ip}"
            seen = seen_with(egress_deployment.recorder_log, tag)
            # The internet sees the gateway's public address and a port of this peer's block.
            assert seen["ip"] == PUBLIC
            assert block.first_port <= seen["port"] <= block.last_port, (seen, block)
            # The regulator asks the control plane and is told whose traffic it was.
            result = signed_query(control.api, key, keyid, {
                "kind": "attribution.egress", "ip": seen["ip"], "port": seen["port"],
                "at": format_time(datetime.now(UTC))}, pins)
            assert result.ok, result.reason()
            grants = [r["event"] for r in result.records
                      if r["event"]["type"] == "peer.provisioned"]
            assert [g["peer_id"] for g in grants] == [peer["id"]]
            assert grants[0]["gateway_id"] == site.gateway["id"]
            derivation = result.answer["derivation"]
            assert derivation["gateway_id"] == site.gateway["id"]
            assert derivation["tunnel_ip"] == device.tunnel_ip
    finally:
        stop_daemon(device)
