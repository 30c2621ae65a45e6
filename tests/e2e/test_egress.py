"""End to end: full-tunnel clients of two tenants reach an "internet" namespace through the
gateway, under its public address in their own port blocks; tenants never reach each other,
blocked ranges and the gateway's API stay closed, and the regulator attributes what the
internet saw to the right peer with answers it verifies offline."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.canonical import format_time
from gateway.cli import write_config
from gateway.egress.mapping import EgressMap
from gateway.regulator import httpsig
from gateway.regulator.answer import Exchange, Pins, verify_exchange
from gateway.regulator.client import public_key_b64
from tests.e2e.test_tunnel import ROOT, Gateway, onboard, wait_for
from tests.integration.netns import Namespace, require_userspace_wireguard, run, unique, veth_pair

pytestmark = pytest.mark.root

PUBLIC = "198.51.100.1"  # the gateway's egress address
SERVER = "198.51.100.2"  # a host on the internet
PUBLIC6, SERVER6 = "2001:db8:1::1", "2001:db8:1::2"
PRIVATE_SERVER = "10.203.0.2"  # reachable from the gateway host, in a blocked range

# Records (source address, source port) of every UDP datagram and TCP connection.
RECORDER = r"""
import json, socket, sys, threading
out = open(sys.argv[1], "a", buffering=1)
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7001))
    while True:
        data, (ip, port) = s.recvfrom(2048)
        out.write(json.dumps({"proto": "udp", "ip": ip, "port": port, "tag": data.decode()}) + "\n")
        s.sendto(b"ok", (ip, port))
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 7002)); s.listen(16)
    while True:
        c, (ip, port) = s.accept()
        tag = c.recv(256).decode()
        out.write(json.dumps({"proto": "tcp", "ip": ip, "port": port, "tag": tag}) + "\n")
        c.sendall(b"ok"); c.close()
def udp6():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::", 7003))
    while True:
        data, addr = s.recvfrom(2048)
        out.write(json.dumps({"proto": "udp6", "ip": addr[0], "port": addr[1],
                              "tag": data.decode()}) + "\n")
        s.sendto(b"ok", addr)
threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=udp6, daemon=True).start()
tcp()
"""

SENDER = r"""
import socket, sys
proto, host, port, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if proto in ("udp", "udp6"):
    family = socket.AF_INET6 if proto == "udp6" else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(tag.encode(), (host, port)); s.recvfrom(16)
else:
    s = socket.create_connection((host, port), timeout=2); s.sendall(tag.encode()); s.recv(16)
"""


class Service(Protocol):
    """An API this test talks to: a single-node gateway, or a control plane of agents."""

    api: str
    ops_token: str

    def http(self, method: str, path: str, token: str | None = None,
             body: dict[str, Any] | None = None) -> tuple[int, Any]: ...


def start_recorder(ns: Namespace, log: Path) -> subprocess.Popen[bytes]:
    """The "internet" host: records the source address and port of what reaches it."""
    return subprocess.Popen(ns.cmd(sys.executable, "-c", RECORDER, str(log)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def seen_with(recorder_log: Path, tag: str) -> dict[str, Any]:
    """The one arrival the recorder logged with this tag."""
    seen = ([json.loads(line) for line in recorder_log.read_text().splitlines()]
            if recorder_log.exists() else [])
    found = [s for s in seen if s["tag"] == tag]
    assert len(found) == 1, (tag, seen)
    return found[0]


@dataclass
class Device:
    tenant_id: str
    token: str
    ns: Namespace
    peer: dict[str, Any]
    daemon: subprocess.Popen[bytes] | None

    @property
    def tunnel_ip(self) -> str:
        return str(self.peer["tunnel_ips"][0])

    def send(self, proto: str, host: str, port: int, tag: str) -> bool:
        done = subprocess.run(self.ns.cmd(sys.executable, "-c", SENDER, proto, host, str(port),
                                          tag), capture_output=True, check=False, timeout=10)
        return done.returncode == 0

    def ping(self, address: str) -> bool:
        done = subprocess.run(self.ns.cmd("ping", "-c", "1", "-W", "1", address),
                              capture_output=True, check=False)
        return done.returncode == 0


@dataclass
class World:
    gateway: Gateway
    internet: Namespace
    recorder_log: Path
    devices: list[Device] = field(default_factory=list)

    def seen_with(self, tag: str) -> dict[str, Any]:
        return seen_with(self.recorder_log, tag)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_userspace_wireguard()
    gw_ns, inet_ns, priv_ns = (Namespace.create(p) for p in ("vegw", "vein", "vepv"))
    cl_a, cl_b = Namespace.create("vecA"), Namespace.create("vecB")
    net = secrets.randbelow(200) + 20
    tmp = tmp_path_factory.mktemp("egress")
    procs: list[subprocess.Popen[bytes]] = []
    api_root = unique("va")
    try:
        api_gw = unique("vb")
        run("ip", "link", "add", api_root, "type", "veth", "peer", "name", api_gw,
            "netns", gw_ns.name)  # fmt: skip
        run("ip", "addr", "add", f"10.211.{net}.1/30", "dev", api_root)
        run("ip", "link", "set", api_root, "up")
        run("ip", "-n", gw_ns.name, "addr", "add", f"10.211.{net}.2/30", "dev", api_gw)
        run("ip", "-n", gw_ns.name, "link", "set", api_gw, "up")
        uplink, inet_link = unique("vup"), unique("vnet")
        veth_pair(gw_ns, uplink, f"{PUBLIC}/24", inet_ns, inet_link, f"{SERVER}/24")
        run("ip", "-n", gw_ns.name, "route", "add", "default", "via", SERVER)
        for ns, link, address in ((gw_ns, uplink, PUBLIC6), (inet_ns, inet_link, SERVER6)):
            run("ip", "-n", ns.name, "addr", "add", f"{address}/64", "dev", link, "nodad")
        run("ip", "-n", gw_ns.name, "-6", "route", "add", "default", "via", SERVER6)
        veth_pair(gw_ns, unique("vpg"), "10.203.0.1/24", priv_ns, unique("vpp"),
                  f"{PRIVATE_SERVER}/24")
        for i, cl in enumerate((cl_a, cl_b)):
            veth_pair(gw_ns, unique("vw"), f"10.212.{i}.1/24", cl, unique("vc"), f"10.212.{i}.2/24")

        recorder_log = tmp / "seen.jsonl"
        for ns, log in ((inet_ns, recorder_log), (priv_ns, tmp / "private.jsonl")):
            procs.append(start_recorder(ns, log))

        data = tmp / "data"
        interface = unique("vgw")
        listen = f"10.211.{net}.2:8080"
        # Run in the gateway namespace: the egress defaults come from its default route.
        init = subprocess.run(
            gw_ns.cmd(sys.executable, "-m", "gateway.cli", "init", "--data-dir", str(data),
                      "--json", "--endpoint", "10.212.0.1:51820", "--wireguard", "userspace",
                      "--interface", interface, "--listen", listen, "--allow-plain-http"),
            capture_output=True, text=True, check=True, cwd=ROOT,
        )
        ops_token = json.loads(init.stdout)["ops_token"]
        # A documentation prefix is not "global", so nat66 gets its address by hand.
        config = tomllib.loads((data / "gateway.toml").read_text())
        config.setdefault("egress", {})["addresses6"] = [PUBLIC6]
        write_config(data / "gateway.toml", config)
        env = {**os.environ, "VPNGW_WIREGUARD_RECONCILE_INTERVAL_SECONDS": "1",
               "VPNGW_WIREGUARD_COLLECT_INTERVAL_SECONDS": "0.5",
               "VPNGW_SERVER_LOG_FORMAT": "json"}
        log_path = tmp / "serve.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                gw_ns.cmd(sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data)),
                cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        gateway = Gateway(gw_ns, cl_a, interface, f"http://{listen}", "10.212.0.1:51820",
                          ops_token, proc, log_path)
        try:
            wait_for(lambda: _ready(gateway), within=30, step=0.2)
        except AssertionError:
            raise AssertionError("gateway not ready:\n" + log_path.read_text()[-4000:]) from None
        world = World(gateway, inet_ns, recorder_log)
        for i, (cl, name) in enumerate(((cl_a, "Alpha Bank"), (cl_b, "Beta Mission"))):
            world.devices.append(_connect(gateway, cl, name, f"10.212.{i}.1:51820", tmp / name))
        yield world
    finally:
        if "proc" in locals():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for p in procs:
            p.kill()
            p.wait()
        if "world" in locals():
            for device in world.devices:
                stop_daemon(device)
        for ns in (cl_a, cl_b, gw_ns, inet_ns, priv_ns):
            ns.delete()
        subprocess.run(["ip", "link", "del", api_root], check=False, capture_output=True)


def _ready(gateway: Gateway) -> bool:
    try:
        status, _ = gateway.http("GET", "/readyz")
    except OSError:
        return False
    return status == 200


def _connect(gw: Gateway, ns: Namespace, name: str, endpoint: str, tmp: Path) -> Device:
    """A tenant's device: own key, the served full-tunnel config, wg-quick strip, wg setconf."""
    tmp.mkdir(parents=True, exist_ok=True)
    tenant_id, token = onboard(gw, name)
    private = run("wg", "genkey").strip()
    public = run("wg", "pubkey", stdin=private).strip()
    status, peer = gw.http("POST", "/v1/peers", token, {"name": "laptop", "public_key": public})
    assert status == 201, peer
    status, conf = gw.http("GET", f"/v1/peers/{peer['id']}/config", token)
    assert status == 200
    # Each client reaches the gateway over its own underlay link.
    conf = conf.replace(f"Endpoint = {gw.endpoint}", f"Endpoint = {endpoint}")
    return full_tunnel_device(ns, conf, private, Device(tenant_id, token, ns, peer, None),
                              gateway_ip="10.100.0.1", tmp=tmp)


def full_tunnel_device(ns: Namespace, conf: str, private: str, device: Device, *,
                       gateway_ip: str, tmp: Path) -> Device:
    """Bring up the served full-tunnel config in `ns`, as wg-quick would; wait for a ping."""
    peer = device.peer
    assert "AllowedIPs = 0.0.0.0/0, ::/0" in conf
    tmp.mkdir(parents=True, exist_ok=True)
    conf = conf.replace("# PrivateKey = <this device's private key>", f"PrivateKey = {private}")
    (tmp / "wg0.conf").write_text(conf)
    (tmp / "stripped.conf").write_text(run("wg-quick", "strip", str(tmp / "wg0.conf")))
    ifname = unique("vcl")
    daemon = subprocess.Popen(ns.cmd("wireguard-go", "-f", ifname),
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LOG_LEVEL": "error"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: Path(f"/var/run/wireguard/{ifname}.sock").exists(), within=5)
    run(*ns.cmd("wg", "setconf", ifname, str(tmp / "stripped.conf")))
    run("ip", "-n", ns.name, "addr", "add", f"{peer['tunnel_ips'][0]}/32", "dev", ifname)
    run("ip", "-n", ns.name, "addr", "add", f"{peer['tunnel_ips'][1]}/128", "dev", ifname,
        "nodad")
    run("ip", "-n", ns.name, "link", "set", ifname, "up")
    # Full tunnel, as wg-quick would set it up: everything but the underlay goes in.
    run("ip", "-n", ns.name, "route", "add", "default", "dev", ifname)
    run("ip", "-n", ns.name, "-6", "route", "add", "default", "dev", ifname)
    device.daemon = daemon
    # The first handshake, on a loaded machine, can outlast one datagram's timeout.
    wait_for(lambda: device.ping(gateway_ip), within=15, step=0.2)
    return device


def stop_daemon(device: Device) -> None:
    if device.daemon is not None:
        device.daemon.kill()
        device.daemon.wait()


def mapping(world: World) -> EgressMap:
    # The mapping as logged: read it back the way a regulator would, from the log.
    status, audit = world.gateway.http("GET", "/ops/v1/audit?type=egress.configured",
                                       world.gateway.ops_token)
    assert status == 200, audit
    (entry,) = audit["items"]
    return EgressMap.from_event(entry["event"])


def regulator(service: Service) -> tuple[Ed25519PrivateKey, str, Pins]:
    """A regulator key registered by ops, and the service's keys pinned."""
    key, keyid = Ed25519PrivateKey.generate(), f"pta-{secrets.token_hex(3)}"
    status, _ = service.http("POST", "/ops/v1/regulator-keys", service.ops_token,
                             {"keyid": keyid, "public_key": public_key_b64(key), "label": "PTA"})
    assert status == 201
    status, keys_doc = service.http("GET", "/regulator/v1/keys")
    assert status == 200
    return key, keyid, Pins.from_keys_document(keys_doc)


def signed_query(api: str, key: Ed25519PrivateKey, keyid: str, query: dict[str, Any],
                 pins: Pins) -> Any:
    body = json.dumps({
        "request_id": {"country": "PK", "authority": "PTA", "number": secrets.token_hex(4)},
        "authorisation": {"reference": "PTA/LI/2026/0042", "legal_basis": "PECA 2016 s.32",
                          "valid_from": "2026-01-01T00:00:00Z",
                          "valid_until": "2027-12-31T00:00:00Z"},
        "query": query}, separators=(",", ":")).encode()
    authority = api.removeprefix("http://")
    headers = httpsig.sign_request(private_key=key, keyid=keyid, authority=authority, body=body,
                                   created=int(time.time()), nonce=secrets.token_urlsafe(16),
                                   scheme="http").headers()
    req = urllib.request.Request(api + httpsig.REQUEST_PATH, data=body,  # noqa: S310
                                 headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - test-host URL
        raw, status, resp_headers = resp.read(), resp.status, tuple(resp.headers.items())
    exchange = Exchange(url=api + httpsig.REQUEST_PATH,
                        request_headers=tuple(headers.items()), request_body=body,
                        status=status, response_headers=resp_headers, response_body=raw)
    return verify_exchange(exchange, pins, now=time.time())


def test_clients_reach_the_internet_in_their_own_blocks_and_are_attributed(world: World) -> None:
    m = mapping(world)
    key, keyid, pins = regulator(world.gateway)
    for device in world.devices:
        block = m.block_of(ipaddress.IPv4Address(device.tunnel_ip))
        assert block is not None
        status, view = world.gateway.http("GET", f"/v1/peers/{device.peer['id']}", device.token)
        assert status == 200 and view["egress"] == block.as_dict(), view
        for proto, port in (("udp", 7001), ("tcp", 7002)):
            tag = f"{proto}-{device.peer['id']}"
            assert device.send(proto, SERVER, port, tag), f"{proto} from {device.tunnel_ip}"
            seen = world.seen_with(tag)
            # The internet sees the provider's address and a port of this peer's block only.
            assert seen["ip"] == PUBLIC
            assert block.first_port <= seen["port"] <= block.last_port, (seen, block)
            result = signed_query(world.gateway.api, key, keyid, {
                "kind": "attribution.egress", "ip": seen["ip"], "port": seen["port"],
                "at": format_time(datetime.now(UTC))}, pins)
            assert result.ok, result.reason()
            grants = [r["event"] for r in result.records
                      if r["event"]["type"] == "peer.provisioned"]
            assert [g["peer_id"] for g in grants] == [device.peer["id"]]
            assert result.answer["derivation"]["tunnel_ip"] == device.tunnel_ip


def test_ipv6_leaves_translated_in_the_block_of_the_ipv4_offset(world: World) -> None:
    m = mapping(world)
    for device in world.devices:
        block = m.block6_of(ipaddress.IPv4Address(device.tunnel_ip))
        assert block is not None and str(block.address) == PUBLIC6
        tag = f"udp6-{device.peer['id']}"
        assert device.send("udp6", SERVER6, 7003, tag)
        seen = world.seen_with(tag)
        assert seen["ip"] == PUBLIC6
        assert block.first_port <= seen["port"] <= block.last_port, (seen, block)
    a, b = world.devices
    assert not a.send("udp6", b.peer["tunnel_ips"][1], 7003, "a-to-b-6")


def test_tenants_blocked_ranges_and_the_gateway_stay_closed(world: World) -> None:
    a, b = world.devices
    assert a.ping("10.100.0.1")  # the gateway's tunnel address answers ping
    assert a.ping(SERVER)  # ICMP echo leaves too
    assert not a.ping(b.tunnel_ip) and not b.ping(a.tunnel_ip)
    assert not a.send("udp", b.tunnel_ip, 7001, "a-to-b")
    assert not a.ping(PRIVATE_SERVER)
    assert not a.send("udp", PRIVATE_SERVER, 7001, "a-to-private")
    assert not a.send("tcp", PRIVATE_SERVER, 7002, "a-to-private-tcp")
    api_host = world.gateway.api.removeprefix("http://").split(":")[0]
    for host in ("10.100.0.1", PUBLIC, api_host):
        assert not a.send("tcp", host, 8080, "a-to-api"), host


def test_a_map_element_deleted_by_hand_comes_back(world: World) -> None:
    a = world.devices[0]
    gw = world.gateway
    run(*gw.ns.cmd("nft", "delete", "element", "inet", "vpngw", "snat4", f"{{ {a.tunnel_ip} }}"))
    wait_for(lambda: a.tunnel_ip in run(*gw.ns.cmd("nft", "list", "map", "inet", "vpngw",
                                                   "snat4")), within=5, step=0.2)
    tag = f"after-heal-{secrets.token_hex(3)}"
    assert a.send("udp", SERVER, 7001, tag)


def test_revocation_and_suspension_stop_traffic(world: World) -> None:
    a, b = world.devices
    gw = world.gateway
    status, _ = gw.http("DELETE", f"/v1/peers/{a.peer['id']}", a.token)
    assert status == 204
    took = wait_for(lambda: a.tunnel_ip not in run(*gw.ns.cmd(
        "nft", "list", "map", "inet", "vpngw", "snat4")), within=2, step=0.05)
    assert not a.send("udp", SERVER, 7001, "revoked"), "revoked peer still carried"
    status, _ = gw.http("POST", f"/ops/v1/tenants/{b.tenant_id}/suspension", gw.ops_token,
                        {"reason": "licence review"})
    assert status == 200
    wait_for(lambda: b.tunnel_ip not in run(*gw.ns.cmd(
        "nft", "list", "map", "inet", "vpngw", "snat4")), within=2, step=0.05)
    assert not b.send("udp", SERVER, 7001, "suspended")
    assert took < 2


