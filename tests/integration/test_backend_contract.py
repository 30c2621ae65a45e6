"""Backend contract: every WireGuard backend behaves the same on a real interface.

Root tests run each backend inside a fresh network namespace (the event-loop thread
enters it, so the backend's threads and wireguard-go children live there too).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.generic.wireguard import WGPEER_F_UPDATE_ONLY, wgmsg
from structlog.testing import capture_logs

from gateway.wireguard.backend import (
    BackendUnavailable,
    Endpoint,
    InterfaceSpec,
    PeerChanges,
    PeerSpec,
    WireGuardBackend,
)
from gateway.wireguard.collector import Collector
from gateway.wireguard.keys import preshared_key_digest, public_key_of, to_base64
from gateway.wireguard.netlink import (
    KernelBackend,
    change_entries,
    chunk_entries,
    parse_dump,
    set_peers_message,
)
from gateway.wireguard.off import NullBackend
from gateway.wireguard.plan import plan_changes
from gateway.wireguard.reconciler import Reconciler
from gateway.wireguard.sessions import SessionEvent, SessionRoamed, SessionStarted, SessionTracker
from gateway.wireguard.userspace import UserspaceBackend
from tests import components
from tests.integration.netns import (
    WIREGUARD_SOCKET_DIR,
    Namespace,
    WireGuardGoDaemon,
    arun,
    entered,
    kernel_wireguard_available,
    require_userspace_wireguard,
    unique,
    veth_pair,
)

GW_PRIVATE = bytes.fromhex("a8" * 31 + "40")
CLIENT_PRIVATE = bytes.fromhex("b0" * 31 + "41")
CLIENT_PUBLIC = public_key_of(CLIENT_PRIVATE)
K1, K2, K3 = (public_key_of(bytes([n]) * 32) for n in (1, 2, 3))
PSK1, PSK2 = bytes([0x51]) * 32, bytes([0x52]) * 32
PEERS = (
    PeerSpec(K1, ("10.77.0.2/32", "fd77::2/128"), PSK1, 25),
    PeerSpec(K2, ("10.77.0.3/32",)),
    PeerSpec(K3, ("10.77.0.4/32",), PSK2),
)


def interface_spec(ifname: str) -> InterfaceSpec:
    return InterfaceSpec(
        name=ifname,
        private_key=GW_PRIVATE,
        listen_port=51820,
        addresses=("10.77.0.1/24", "fd77::1/64"),
        mtu=1380,
    )


class Desired:
    def __init__(self, *specs: PeerSpec) -> None:
        self.specs = list(specs)

    async def __call__(self) -> Sequence[PeerSpec]:
        return self.specs


async def check_peer_lifecycle(backend: WireGuardBackend) -> None:
    """Add three in one go, update PSK / allowed IPs, remove: the dump follows each step."""
    desired = {p.public_key: p for p in PEERS}
    await backend.apply(PeerChanges(adds=PEERS))
    dump = await backend.dump()
    by_key = {p.public_key: p for p in dump.peers}
    assert set(by_key) == {K1, K2, K3}
    assert set(by_key[K1].allowed_ips) == {"10.77.0.2/32", "fd77::2/128"}
    assert by_key[K1].preshared_key_digest == preshared_key_digest(PSK1)
    assert by_key[K1].persistent_keepalive == 25
    assert not by_key[K2].has_preshared_key
    assert plan_changes(desired, dump.peers).empty

    changed = (
        PeerSpec(K1, ("10.77.0.2/32", "10.77.1.0/24"), PSK2, None),
        PeerSpec(K3, ("10.77.0.4/32",)),
    )
    desired |= {p.public_key: p for p in changed}
    await backend.apply(plan_changes(desired, (await backend.dump()).peers))
    by_key = {p.public_key: p for p in (await backend.dump()).peers}
    assert set(by_key[K1].allowed_ips) == {"10.77.0.2/32", "10.77.1.0/24"}
    assert by_key[K1].preshared_key_digest == preshared_key_digest(PSK2)
    assert by_key[K1].persistent_keepalive is None
    assert not by_key[K3].has_preshared_key
    assert plan_changes(desired, tuple(by_key.values())).empty

    await backend.apply(PeerChanges(removals=(K2,)))
    assert {p.public_key for p in (await backend.dump()).peers} == {K1, K3}


# --- no privileges needed -----------------------------------------------------------------


async def test_null_backend_honours_the_contract() -> None:
    backend = NullBackend()
    await backend.ensure_interface(interface_spec("wgnull0"))
    assert (await backend.dump()).public_key == public_key_of(GW_PRIVATE)
    await check_peer_lifecycle(backend)


def _roundtrip(msg: wgmsg) -> wgmsg:
    msg["header"]["type"] = 0x20
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    return decoded


def test_kernel_set_message_carries_every_peer_in_one_peers_attribute() -> None:
    entries = change_entries(PeerChanges(adds=PEERS[:2], removals=(K3,)), budget=16384)
    (chunk,) = chunk_entries(entries, budget=16384)
    decoded = _roundtrip(set_peers_message("wg0", chunk))
    assert [a[0] for a in decoded["attrs"]].count("WGDEVICE_A_PEERS") == 1
    peers = decoded.get_attr("WGDEVICE_A_PEERS")
    assert [p.get_attr("WGPEER_A_PUBLIC_KEY").decode() for p in peers] == [
        to_base64(K3),
        to_base64(K1),
        to_base64(K2),
    ]
    assert [ip["addr"] for ip in peers[1].get_attr("WGPEER_A_ALLOWEDIPS")] == [
        "10.77.0.2/32",
        "fd77::2/128",
    ]


def test_kernel_messages_are_chunked_and_long_allowed_ip_lists_continue() -> None:
    many = tuple(f"10.{i // 256}.{i % 256}.0/24" for i in range(1000))
    changes = PeerChanges(adds=(PeerSpec(K1, many), *PEERS[1:]))
    entries = change_entries(changes, budget=4096)
    chunks = list(chunk_entries(entries, budget=4096))
    assert len(chunks) > 5
    for chunk in chunks:
        data = _roundtrip(set_peers_message("wg0", chunk))
        assert data["header"]["length"] <= 4096
    k1_entries = [e for e in entries if e.attrs[0][1] == to_base64(K1)]
    assert all(dict(e.attrs)["WGPEER_A_FLAGS"] == WGPEER_F_UPDATE_ONLY for e in k1_entries[1:])
    assert sum(len(dict(e.attrs)["WGPEER_A_ALLOWEDIPS"]) for e in k1_entries) == 1000


def _dump_message(peers: list[dict[str, Any]], *, device: bool) -> wgmsg:
    msg = wgmsg()
    msg["cmd"] = 0
    msg["version"] = 1
    attrs: list[list[Any]] = [["WGDEVICE_A_IFNAME", "wg0"]]
    if device:
        attrs += [
            ["WGDEVICE_A_PUBLIC_KEY", to_base64(public_key_of(GW_PRIVATE))],
            ["WGDEVICE_A_LISTEN_PORT", 51820],
        ]
    msg["attrs"] = [*attrs, ["WGDEVICE_A_PEERS", peers]]
    return _roundtrip(msg)


def test_kernel_multipart_dump_merges_a_peer_split_across_messages() -> None:
    k1 = to_base64(K1)
    first = _dump_message(
        [
            {
                "attrs": [
                    ["WGPEER_A_PUBLIC_KEY", k1],
                    ["WGPEER_A_ENDPOINT", {"addr": "2001:db8::9", "port": 4242}],
                    ["WGPEER_A_LAST_HANDSHAKE_TIME", {"tv_sec": 1_800_000_000, "tv_nsec": 0}],
                    ["WGPEER_A_RX_BYTES", 10],
                    ["WGPEER_A_TX_BYTES", 20],
                    ["WGPEER_A_ALLOWEDIPS", [_ip(2, "10.77.0.2", 32)]],
                ]
            }
        ],
        device=True,
    )
    second = _dump_message(
        [
            {
                "attrs": [
                    ["WGPEER_A_PUBLIC_KEY", k1],
                    ["WGPEER_A_ALLOWEDIPS", [_ip(10, "fd77::2", 128)]],
                ]
            },
            {"attrs": [["WGPEER_A_PUBLIC_KEY", to_base64(K2)]]},
        ],
        device=False,
    )
    dump = parse_dump([first, second])
    assert dump.public_key == public_key_of(GW_PRIVATE) and dump.listen_port == 51820
    p1, p2 = dump.peers
    assert p1.allowed_ips == ("10.77.0.2/32", "fd77::2/128")
    assert p1.endpoint == Endpoint("2001:db8::9", 4242)
    assert p1.latest_handshake == datetime.fromtimestamp(1_800_000_000, UTC)
    assert (p1.rx_bytes, p1.tx_bytes) == (10, 20)
    assert p2.public_key == K2 and p2.latest_handshake is None


def _ip(family: int, address: str, mask: int) -> dict[str, Any]:
    import socket

    return {
        "attrs": [
            ["WGALLOWEDIP_A_FAMILY", family],
            ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(family, address)],
            ["WGALLOWEDIP_A_CIDR_MASK", mask],
        ]
    }


# --- real interfaces in network namespaces --------------------------------------------------


@dataclass
class Rig:
    kind: str
    ns: Namespace
    ifname: str
    spec: InterfaceSpec
    backend: WireGuardBackend


@pytest.fixture
def gateway_ns() -> Iterator[Namespace]:
    require_userspace_wireguard()
    ns = Namespace.create("vgw-")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
async def inside(gateway_ns: Namespace) -> AsyncIterator[Namespace]:
    with entered(gateway_ns):
        # Fresh worker threads, born inside the namespace, for the backend's blocking calls.
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="netns")
        asyncio.get_running_loop().set_default_executor(executor)
        try:
            yield gateway_ns
        finally:
            executor.shutdown(wait=True)


@pytest.fixture(params=["userspace", "kernel"])
async def rig(request: pytest.FixtureRequest, inside: Namespace) -> AsyncIterator[Rig]:
    ifname = unique("wgt")
    backend: WireGuardBackend
    if request.param == "kernel":
        # Not a missing test dependency on most hosts; the kernel test VM requires it.
        components.require_kernel_wireguard_or_skip(kernel_wireguard_available(inside))
        backend = KernelBackend(interface=ifname)
    else:
        backend = UserspaceBackend.managed(interface=ifname, restart_backoff=0.1)
    try:
        yield Rig(request.param, inside, ifname, interface_spec(ifname), backend)
    finally:
        await backend.close()
        (WIREGUARD_SOCKET_DIR / f"{ifname}.sock").unlink(missing_ok=True)


async def link_state(rig: Rig) -> dict[str, Any]:
    (link,) = json.loads(
        await arun("ip", "-n", rig.ns.name, "-j", "addr", "show", "dev", rig.ifname)
    )
    return dict(link)


def global_addresses(link: dict[str, Any]) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a.get("scope") != "link"}


@pytest.mark.root
async def test_ensure_interface_creates_link_with_addresses(rig: Rig) -> None:
    await rig.backend.ensure_interface(rig.spec)
    link = await link_state(rig)
    assert global_addresses(link) == {"10.77.0.1/24", "fd77::1/64"}
    assert link["mtu"] == 1380 and "UP" in link["flags"]
    dump = await rig.backend.dump()
    assert dump.public_key == public_key_of(GW_PRIVATE)
    assert dump.listen_port == 51820
    assert dump.peers == ()

    # Idempotent, and converges: a stray address added by hand is taken away.
    await arun("ip", "-n", rig.ns.name, "addr", "add", "10.88.0.1/24", "dev", rig.ifname)
    await rig.backend.ensure_interface(rig.spec)
    assert global_addresses(await link_state(rig)) == {"10.77.0.1/24", "fd77::1/64"}


@pytest.mark.root
async def test_interface_settings_follow_the_spec(rig: Rig) -> None:
    await rig.backend.ensure_interface(rig.spec)
    moved = replace(rig.spec, listen_port=51821, fwmark=0x5A, mtu=1400, addresses=("10.77.0.1/24",))
    await rig.backend.ensure_interface(moved)
    dump = await rig.backend.dump()
    assert (dump.listen_port, dump.fwmark) == (51821, 0x5A)
    link = await link_state(rig)
    assert link["mtu"] == 1400 and global_addresses(link) == {"10.77.0.1/24"}

    # No fwmark is 0 on the wire; a new private key gives the interface a new identity.
    rekeyed = replace(moved, fwmark=None, private_key=CLIENT_PRIVATE)
    await rig.backend.ensure_interface(rekeyed)
    dump = await rig.backend.dump()
    assert (dump.public_key, dump.listen_port, dump.fwmark) == (CLIENT_PUBLIC, 51821, None)


@pytest.mark.root
async def test_peer_add_update_remove(rig: Rig) -> None:
    await rig.backend.ensure_interface(rig.spec)
    await check_peer_lifecycle(rig.backend)


@pytest.mark.root
async def test_large_changes_and_dumps_span_several_messages(rig: Rig) -> None:
    """300 peers, one with 1000 allowed IPs: more than one request and one dump message each."""
    await rig.backend.ensure_interface(rig.spec)
    wide = PeerSpec(K1, tuple(f"10.{80 + i // 256}.{i % 256}.0/24" for i in range(1000)), PSK1)
    many = tuple(
        PeerSpec(
            public_key_of(bytes(1) + n.to_bytes(2, "big") + bytes(29)),
            (f"10.78.{n // 256}.{n % 256}/32",),
        )
        for n in range(1, 301)
    )
    desired = {p.public_key: p for p in (wide, *many)}
    await rig.backend.apply(PeerChanges(adds=(wide, *many)))
    dump = await rig.backend.dump()
    assert len(dump.peers) == 301
    assert plan_changes(desired, dump.peers).empty

    narrow = PeerSpec(K1, wide.allowed_ips[:3], PSK1)
    desired[K1] = narrow
    await rig.backend.apply(plan_changes(desired, (await rig.backend.dump()).peers))
    by_key = {p.public_key: p for p in (await rig.backend.dump()).peers}
    assert by_key[K1].allowed_ips == narrow.allowed_ips
    assert plan_changes(desired, tuple(by_key.values())).empty

    await rig.backend.apply(PeerChanges(removals=tuple(desired)))
    assert (await rig.backend.dump()).peers == ()


@pytest.mark.root
async def test_hand_edits_are_undone_by_the_reconciler(rig: Rig) -> None:
    rec = Reconciler(backend=rig.backend, interface=rig.spec, load_desired=Desired(*PEERS))
    with capture_logs():
        await rec.reconcile()
        wg = rig.ns.cmd("wg", "set", rig.ifname)
        await arun(*wg, "peer", to_base64(K2), "remove")
        await arun(*wg, "peer", to_base64(CLIENT_PUBLIC), "allowed-ips", "10.77.0.99/32")
        result = await rec.reconcile()
    assert result.applied == PeerChanges(adds=(PEERS[1],), removals=(CLIENT_PUBLIC,))
    assert {p.public_key for p in (await rig.backend.dump()).peers} == {K1, K2, K3}
    assert rec.status.ok


@pytest.mark.root
async def test_killed_wireguard_go_is_restarted_and_refilled(rig: Rig) -> None:
    if rig.kind != "userspace":
        pytest.skip("only the userspace backend runs a daemon")
    assert isinstance(rig.backend, UserspaceBackend) and rig.backend.process is not None
    process = rig.backend.process
    rec = Reconciler(
        backend=rig.backend, interface=rig.spec, load_desired=Desired(*PEERS), interval=3600
    )
    rig.backend.add_restart_listener(rec.wake_full)
    with capture_logs() as logs:
        task = asyncio.create_task(rec.run())
        try:
            await _until(lambda: rec.status.ok, "first reconcile")
            old_pid = await daemon_pid(rig.ifname)
            os.kill(old_pid, signal.SIGKILL)
            await _until(lambda: process.restarts == 1, "supervisor restart")
            assert await daemon_pid(rig.ifname) != old_pid
            await _until_async(lambda: _peer_count(rig.backend, 3), "peers refilled")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert global_addresses(await link_state(rig)) == {"10.77.0.1/24", "fd77::1/64"}
    assert (await rig.backend.dump()).public_key == public_key_of(GW_PRIVATE)
    events = [e["event"] for e in logs]
    assert "wireguard_go.exited" in events and "wireguard.interface.ensure" in events


@pytest.mark.root
async def test_deleted_link_is_recreated_and_refilled(rig: Rig) -> None:
    if rig.kind != "kernel":
        pytest.skip("a userspace link goes with its daemon: see the restart test")
    rec = Reconciler(backend=rig.backend, interface=rig.spec, load_desired=Desired(*PEERS))
    with capture_logs():
        await rec.reconcile()
        await arun("ip", "-n", rig.ns.name, "link", "del", rig.ifname)
        result = await rec.reconcile()
    assert set(result.applied.adds) == set(PEERS)
    dump = await rig.backend.dump()
    assert {p.public_key for p in dump.peers} == {K1, K2, K3}
    assert dump.public_key == public_key_of(GW_PRIVATE) and dump.listen_port == 51820
    assert global_addresses(await link_state(rig)) == {"10.77.0.1/24", "fd77::1/64"}


async def daemon_pids(ifname: str) -> list[int]:
    """wireguard-go daemons serving `ifname` (each runs as `wireguard-go <ifname>`)."""
    proc = await asyncio.create_subprocess_exec(
        "pgrep", "-f", f"^wireguard-go {ifname}$", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return [int(p) for p in out.split()]


async def daemon_pid(ifname: str) -> int:
    (pid,) = await daemon_pids(ifname)
    return pid


@pytest.mark.root
@pytest.mark.parametrize("rig", ["userspace"], indirect=True)  # only userspace runs a daemon
async def test_daemon_outlives_a_detached_backend_and_is_adopted(rig: Rig) -> None:
    """What a restart of the service does: detach, then a new backend adopts the daemon."""
    rec = Reconciler(backend=rig.backend, interface=rig.spec, load_desired=Desired(*PEERS))
    await rec.reconcile()
    pid = await daemon_pid(rig.ifname)
    assert isinstance(rig.backend, UserspaceBackend) and rig.backend.process is not None
    await rig.backend.process.detach()
    await asyncio.sleep(1.0)  # long enough for a wrongly tied daemon to die with its pipe
    assert await daemon_pid(rig.ifname) == pid
    assert len((await UserspaceBackend(interface=rig.ifname).dump()).peers) == 3

    successor = UserspaceBackend.managed(interface=rig.ifname, keep_daemon=True)
    with capture_logs() as logs:
        result = await Reconciler(
            backend=successor, interface=rig.spec, load_desired=Desired(*PEERS)
        ).reconcile()
    assert result.applied.empty  # nothing to redo: every peer is still there
    assert await daemon_pid(rig.ifname) == pid
    assert "wireguard_go.adopted" in [e["event"] for e in logs]
    await successor.close()  # keep_daemon: still running
    assert await daemon_pid(rig.ifname) == pid
    await rig.backend.close()  # the rig's backend stops it: interface and daemon are gone
    assert await daemon_pids(rig.ifname) == []


async def _peer_count(backend: WireGuardBackend, count: int) -> bool:
    try:
        return len((await backend.dump()).peers) == count
    except BackendUnavailable:
        return False


async def _until(check: Any, what: str, within: float = 10.0) -> None:
    async def poll() -> bool:
        return bool(check())

    await _until_async(poll, what, within)


async def _until_async(check: Any, what: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def client_ns() -> Iterator[Namespace]:
    ns = Namespace.create("vcl-")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.mark.root
async def test_tunnel_handshake_endpoint_and_bytes_are_seen(rig: Rig, client_ns: Namespace) -> None:
    veth_gw, veth_cl = unique("vg"), unique("vc")
    veth_pair(rig.ns, veth_gw, "10.201.0.1/24", client_ns, veth_cl, "10.201.0.2/24")
    await rig.backend.ensure_interface(rig.spec)
    client = PeerSpec(CLIENT_PUBLIC, ("10.77.0.2/32",), PSK1)
    await rig.backend.apply(PeerChanges(adds=(client,)))

    client_if = unique("wgc")
    daemon = WireGuardGoDaemon(client_ns, client_if)
    await daemon.start()
    try:
        await _configure_client(client_ns, client_if)
        ping = client_ns.cmd("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.1")
        await arun(*ping)

        events: list[SessionEvent] = []

        async def on_events(batch: Sequence[SessionEvent]) -> None:
            events.extend(batch)

        collector = Collector(backend=rig.backend, tracker=SessionTracker(), on_events=on_events)
        await collector.collect()
        (started,) = events
        assert isinstance(started, SessionStarted)
        assert started.public_key == CLIENT_PUBLIC
        assert started.endpoint == "10.201.0.2:51821"
        assert abs(datetime.now(UTC) - started.first_handshake) < timedelta(minutes=1)
        status = collector.peers[CLIENT_PUBLIC]
        assert status.connected and status.endpoint == Endpoint("10.201.0.2", 51821)
        assert status.rx_bytes > 0 and status.tx_bytes > 0

        # The client moves to another port: the gateway sees it roam.
        await arun(*client_ns.cmd("wg", "set", client_if, "listen-port", "51822"))
        await arun(*ping)
        await collector.collect()
        assert events[1:] == [
            SessionRoamed(CLIENT_PUBLIC, events[1].at, "10.201.0.2:51821", "10.201.0.2:51822")
        ]
    finally:
        await daemon.stop()


@pytest.mark.root
async def test_ipv6_endpoint_is_seen(rig: Rig, client_ns: Namespace) -> None:
    veth_gw, veth_cl = unique("vg"), unique("vc")
    await arun("ip", "link", "add", veth_gw, "netns", rig.ns.name, "type", "veth", "peer",
               "name", veth_cl, "netns", client_ns.name)  # fmt: skip
    for ns, name, address in ((rig.ns, veth_gw, "fd99::1/64"), (client_ns, veth_cl, "fd99::2/64")):
        # nodad: usable at once, no duplicate address detection to wait for.
        await arun("ip", "-n", ns.name, "addr", "add", address, "dev", name, "nodad")
        await arun("ip", "-n", ns.name, "link", "set", name, "up")
    await rig.backend.ensure_interface(rig.spec)
    await rig.backend.apply(PeerChanges(adds=(PeerSpec(CLIENT_PUBLIC, ("10.77.0.2/32",), PSK1),)))

    client_if = unique("wgc")
    daemon = WireGuardGoDaemon(client_ns, client_if)
    await daemon.start()
    try:
        await _configure_client(client_ns, client_if, endpoint="[fd99::1]:51820")
        await arun(*client_ns.cmd("ping", "-c", "2", "-i", "0.2", "-W", "2", "10.77.0.1"))
        (peer,) = (await rig.backend.dump()).peers
        assert peer.endpoint == Endpoint("fd99::2", 51821)
        assert str(peer.endpoint) == "[fd99::2]:51821"
        assert peer.latest_handshake is not None and peer.rx_bytes > 0
    finally:
        await daemon.stop()


async def _configure_client(ns: Namespace, ifname: str, endpoint: str = "10.201.0.1:51820") -> None:
    # The same path a tenant takes: a wg-quick file, stripped to what `wg setconf` accepts.
    conf = (
        "[Interface]\n"
        f"PrivateKey = {to_base64(CLIENT_PRIVATE)}\n"
        "Address = 10.77.0.2/32\n"
        "ListenPort = 51821\n"
        "\n[Peer]\n"
        f"PublicKey = {to_base64(public_key_of(GW_PRIVATE))}\n"
        f"PresharedKey = {to_base64(PSK1)}\n"
        f"Endpoint = {endpoint}\n"
        "AllowedIPs = 10.77.0.0/24\n"
        "PersistentKeepalive = 25\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{ifname}.conf"
        path.write_text(conf)
        path.chmod(0o600)
        stripped = await arun("wg-quick", "strip", str(path))
    await arun(*ns.cmd("wg", "setconf", ifname, "/dev/stdin"), stdin=stripped)
    await arun("ip", "-n", ns.name, "addr", "add", "10.77.0.2/32", "dev", ifname)
    await arun("ip", "-n", ns.name, "link", "set", ifname, "up")
    await arun("ip", "-n", ns.name, "route", "add", "10.77.0.0/24", "dev", ifname)


@pytest.mark.root
async def test_kernel_backend_without_module_is_unavailable(inside: Namespace) -> None:
    if kernel_wireguard_available(inside):
        pytest.skip("the wireguard kernel module is present; nothing to refuse")
    ifname = unique("wgk")
    backend = KernelBackend(interface=ifname)
    with pytest.raises(BackendUnavailable, match="no wireguard module"):
        await backend.ensure_interface(interface_spec(ifname))
    with pytest.raises(BackendUnavailable):
        await backend.dump()


@pytest.mark.parametrize(("require_all", "outcome"), [(False, "skip"), (True, "fail")])
def test_missing_components_fail_when_everything_is_required(
    monkeypatch: pytest.MonkeyPatch, require_all: bool, outcome: str
) -> None:
    monkeypatch.setattr(components, "REQUIRE_ALL", require_all)
    components.require_or_skip(True, "present")
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected, match="wireguard-go is not installed"):
        components.require_or_skip(False, "wireguard-go is not installed")
