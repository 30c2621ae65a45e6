"""Egress benchmark: what translation and policy cost, in network namespaces, in one run.

  python -m bench.egress [--elements 10000] [--seconds 5] [--log-size 1000000]

1. Throughput client → internet server through a gateway namespace, TCP and UDP, with
   the vpngw table (policy + translation, 10,000 map elements) against the same path with
   forwarding but no vpngw rules (target: ≥ 0.95×). The "tunnel" here is a veth named as
   the WireGuard interface would be, so the figure is nftables' cost alone, not
   wireguard-go's. Sender and receiver are Python processes on the same two cores.
2. Loading 10,000 map elements into a fresh table (target ≤ 1 s), and changing one at
   10,000: the nft transaction alone (target ≤ 5 ms) and a whole reconcile pass
   (list, diff, apply).
3. `attribution.egress` p99 at `--log-size` log entries, signed and verified like the
   regulator does (target ≤ 50 ms), through bench/regulator.py's log builder.
Needs root (namespaces, nftables). Prints the load average: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import structlog

from bench.common import Server, machine_note, percentile, print_table, run
from gateway.egress.mapping import resolve
from gateway.egress.nft import Nft
from gateway.egress.ruleset import (
    Policy,
    desired_elements,
    element_commands,
    plan_elements,
)
from gateway.egress.sync import EgressSync
from gateway.wireguard.backend import PeerSpec
from tests.integration.netns import Namespace, unique, veth_pair
from tests.integration.netns import run as sh

POOL = "10.100.0.0/18"  # 16,384 addresses: room for 10,000 peers
SERVER_IP = "198.51.100.2"

SINK = r"""
import socket, sys, time
proto, seconds = sys.argv[1], float(sys.argv[2])
if proto == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 7101)); s.listen(1); c, _ = s.accept(); total = 0
    while True:
        data = c.recv(1 << 20)
        if not data: break
        total += len(data)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7102))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24); s.settimeout(1.0); total = 0
    try:
        while True: total += len(s.recv(2048))
    except socket.timeout: pass
print(total)
"""

SOURCE = r"""
import socket, sys, time
proto, host, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + seconds; sent = 0
if proto == "tcp":
    for _ in range(100):  # the sink may still be starting
        try:
            s = socket.create_connection((host, 7101), timeout=5); break
        except OSError: time.sleep(0.1)
    end = time.monotonic() + seconds; chunk = b"x" * (1 << 16)
    while time.monotonic() < end: s.sendall(chunk); sent += len(chunk)
    s.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); chunk = b"x" * 1400
    while time.monotonic() < end:
        for _ in range(64): s.sendto(chunk, (host, 7102)); sent += 1400
print(sent)
"""


class NoForwarding:
    """Forwarding is switched on by hand below, for both runs alike."""

    async def enable(self, interfaces: tuple[str, ...], *, ipv6: bool) -> None:
        return None


def policy(tunnel_if: str, uplink_if: str) -> Policy:
    egress = resolve(
        gateway_id="bench", pools=[ipaddress.ip_network(POOL)],
        addresses=[f"198.51.100.{i}" for i in range(101, 118)], ports="1024-65535",
        block_size=64, ipv6="off", addresses6=(),
        blocked=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
    return Policy(egress=egress, wireguard_interface=tunnel_if, egress_interface=uplink_if,
                  gateway_addresses=("10.100.0.1",))


def peers(n: int) -> list[PeerSpec]:
    base = ipaddress.IPv4Address("10.100.0.2")
    return [PeerSpec(i.to_bytes(32, "big"), (f"{base + i}/32",)) for i in range(n)]


def addresses(specs: list[PeerSpec]) -> list[tuple[str, ...]]:
    return [tuple(a.split("/")[0] for a in p.allowed_ips) for p in specs]


def throughput(client: Namespace, inet: Namespace, proto: str, seconds: float) -> float:
    sink = subprocess.Popen(inet.cmd(sys.executable, "-c", SINK, proto, str(seconds)),
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    source = subprocess.run(client.cmd(sys.executable, "-c", SOURCE, proto, SERVER_IP,
                                       str(seconds)), capture_output=True, text=True, check=False)
    if source.returncode != 0:
        sink.kill()
        raise RuntimeError(f"{proto} source failed: {source.stderr.strip()[-400:]}")
    received = int(sink.communicate(timeout=seconds + 30)[0].strip() or 0)
    if proto == "udp":  # what arrived, as a share of what was sent, also matters
        received = min(received, int(source.stdout.strip() or 0))
    return received * 8 / seconds / 1e6  # Mbit/s received


async def element_timings(ns: Namespace, n: int, repeat: int) -> list[dict[str, Any]]:
    nft = Nft(ns.cmd("nft"))
    pol = policy("bench-wg", "bench-up")
    sync = EgressSync(policy=pol, nft=nft, forwarding=NoForwarding())  # type: ignore[arg-type]
    everyone = peers(n)
    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        await sync.rebuild(desired_elements(pol.egress, addresses(everyone)), why="bench")
        loads.append(time.perf_counter() - t0)
    await sync.sync(everyone)
    full = EgressSync(policy=pol, nft=nft, forwarding=NoForwarding(),  # type: ignore[arg-type]
                      full_check_seconds=0)
    one_tx, one_pass, full_pass = [], [], []
    for i in range(repeat):
        # Swap peer i for a new one: one element out, one in.
        spare = PeerSpec((n + i).to_bytes(32, "big"),
                         (f"{ipaddress.IPv4Address('10.100.0.2') + n + i}/32",))
        changed = [*everyone[:i], *everyone[i + 1:], spare]
        want = desired_elements(pol.egress, addresses(changed))
        have = desired_elements(pol.egress, addresses(everyone))
        forward = element_commands(plan_elements(want, have.ipv4, {}), {})
        back = element_commands(plan_elements(have, want.ipv4, {}), {})
        for text in (forward, back):
            t0 = time.perf_counter()
            await nft.load(text)
            one_tx.append((time.perf_counter() - t0) * 1000)
        # The same change through a reconcile pass on a commit wake, and back.
        for target in (changed, everyone):
            t0 = time.perf_counter()
            await sync.sync(target)
            one_pass.append((time.perf_counter() - t0) * 1000)
        # And the periodic full check (read the table and every element back, diff).
        t0 = time.perf_counter()
        await full.sync(everyone)
        full_pass.append((time.perf_counter() - t0) * 1000)
    return [
        {"operation": f"load {n:,} elements into a fresh table", "p50 ms":
         statistics.median(loads) * 1000, "p99 ms": max(loads) * 1000, "target": "≤ 1000 ms",
         "met": "ok" if max(loads) <= 1.0 else "MISSED"},
        {"operation": f"change one element at {n:,} (nft transaction)",
         "p50 ms": percentile(one_tx, 50), "p99 ms": percentile(one_tx, 99),
         "target": "≤ 5 ms", "met": "ok" if percentile(one_tx, 50) <= 5 else "MISSED"},
        {"operation": f"change one at {n:,} (reconcile pass on a commit)",
         "p50 ms": percentile(one_pass, 50), "p99 ms": percentile(one_pass, 99),
         "target": "", "met": ""},
        {"operation": f"periodic full check at {n:,} (read back, diff)",
         "p50 ms": percentile(full_pass, 50), "p99 ms": percentile(full_pass, 99),
         "target": "", "met": ""},
    ]


def throughput_rows(seconds: float, n: int) -> list[dict[str, Any]]:
    gw, client, inet = Namespace.create("begw"), Namespace.create("becl"), Namespace.create("bein")
    try:
        tunnel_if, uplink_if = unique("bwg"), unique("bup")
        veth_pair(client, unique("bcl"), "10.100.0.2/18", gw, tunnel_if, "10.100.0.1/18")
        veth_pair(gw, uplink_if, "198.51.100.1/24", inet, unique("bin"), f"{SERVER_IP}/24")
        for i in range(101, 118):  # the egress addresses the blocks live on
            sh("ip", "-n", gw.name, "addr", "add", f"198.51.100.{i}/32", "dev", uplink_if)
        sh("ip", "-n", client.name, "route", "add", "default", "via", "10.100.0.1")
        # Without translation the server must route the pool back to the gateway.
        sh("ip", "-n", inet.name, "route", "add", POOL, "via", "198.51.100.1")
        sh(*gw.cmd("sysctl", "-qw", "net.ipv4.ip_forward=1"))
        results: dict[tuple[str, str], list[float]] = {}
        sync = EgressSync(policy=policy(tunnel_if, uplink_if), nft=Nft(gw.cmd("nft")),
                          forwarding=NoForwarding())  # type: ignore[arg-type]
        for _round in range(2):  # alternate, so drifting load hits both sides alike
            for mode in ("forwarding only", "vpngw table"):
                if mode == "vpngw table":
                    run(sync.rebuild(desired_elements(sync.policy.egress, addresses(peers(n))),
                                     why="bench"))
                else:
                    subprocess.run(gw.cmd("nft", "delete", "table", "inet", "vpngw"),
                                   capture_output=True, check=False)
                for proto in ("tcp", "udp"):
                    results.setdefault((mode, proto), []).append(
                        throughput(client, inet, proto, seconds))
        rows = []
        for proto in ("tcp", "udp"):
            base = statistics.median(results[("forwarding only", proto)])
            with_rules = statistics.median(results[("vpngw table", proto)])
            rows.append({"protocol": proto.upper(), "forwarding only Mbit/s": base,
                         "vpngw table Mbit/s": with_rules, "ratio": with_rules / base,
                         "target": "≥ 0.95", "met": "ok" if with_rules / base >= 0.95 else
                         "MISSED"})
        return rows
    finally:
        for ns in (client, gw, inet):
            ns.delete()


def attribution_rows(size: int, queries: int) -> list[dict[str, Any]]:
    from bench.regulator import build_log, measure

    with Server(pools=("10.64.0.0/10",)) as server:
        server.init()
        print(f"building a {size:,}-event log ...", flush=True)
        samples, _stats = build_log(server.data_dir, size, 8)
        server.start(ready_timeout=300)
        rows: list[dict[str, Any]] = run(measure(server, samples, queries, 8,
                                                 only="attribution.egress"))
    return [{"events": size, **r} for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--elements", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput run")
    parser.add_argument("--changes", type=int, default=50, help="single-element changes")
    parser.add_argument("--log-size", type=int, default=1_000_000, help="0 skips the query part")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.egress needs root (network namespaces, nftables)", file=sys.stderr)
        return 2
    # The table prints, not the per-change log lines.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"Egress benchmark — {machine_note()}; load average {os.getloadavg()[0]:.2f} at start")
    ns = Namespace.create("bent")
    try:
        element_rows = run(element_timings(ns, args.elements, args.changes))
    finally:
        ns.delete()
    print_table("nftables map elements", element_rows,
                ("operation", "p50 ms", "p99 ms", "target", "met"))
    rows = throughput_rows(args.seconds, args.elements)
    print_table(f"Throughput through the gateway namespace ({args.seconds:g} s per run, median "
                "of 2)", rows, ("protocol", "forwarding only Mbit/s", "vpngw table Mbit/s",
                                "ratio", "target", "met"))
    if args.log_size:
        q = attribution_rows(args.log_size, args.queries)
        print_table("attribution.egress, signed, logged, verified (target p99 ≤ 50 ms)", q,
                    ("events", "query", "n", "p50 ms", "p99 ms", "max ms", "records",
                     "verified", "p99 target"))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
