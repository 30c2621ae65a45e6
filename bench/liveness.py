"""A new peer live on the interface: from `POST /v1/peers` to the key in the UAPI dump.

Starts the real server (`vpngw init --wireguard userspace`, then `vpngw serve`) with a
wireguard-go interface of its own, fills it with --sizes peers over HTTP, waits until
every one is on the interface, then creates --samples more peers one at a time. For each,
the clock runs from sending the POST to the first UAPI dump (`get=1` on the daemon's
socket, read raw, no parsing) that holds the new key. Dumps are taken back to back, so a
figure includes up to one dump's duration: the table prints that duration beside it.

    sudo .venv/bin/python -m bench.liveness                       # 1,000 and 10,000 peers
    sudo .venv/bin/python -m bench.liveness --sizes 200 --samples 10   # quick

Target (issue "fast paths"): p99 <= 50 ms at 10,000 peers, flat in N. Needs root,
/dev/net/tun and wireguard-go. It prints a table; it is not a test and fails nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.common import (
    Server,
    fmt,
    machine_note,
    percentile,
    print_profile,
    print_table,
    run,
)
from bench.provision import onboard

UAPI_DIR = "/var/run/wireguard"
BULK_CONCURRENCY = 16


@dataclass
class Result:
    size: int
    latencies: list[float] = field(default_factory=list)  # seconds, POST sent -> in dump
    answers: list[float] = field(default_factory=list)  # seconds, POST sent -> 201 read
    dumps: list[float] = field(default_factory=list)  # seconds per raw dump


def new_public_key() -> tuple[str, str]:
    """(base64 for the API, hex as the UAPI dump spells it)."""
    raw = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode(), raw.hex()


def raw_dump(interface: str) -> bytes:
    """One `get=1` on the daemon's UAPI socket, read whole (it ends with a blank line)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(f"{UAPI_DIR}/{interface}.sock")
        sock.sendall(b"get=1\n\n")
        chunks = []
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n\n"):
                break
        return b"".join(chunks)


async def create(session: aiohttp.ClientSession, token: str, key: str) -> None:
    body = {"name": f"live-{key[:8]}", "public_key": key}
    async with session.post("/v1/peers", json=body,
                            headers={"Authorization": f"Bearer {token}"}) as resp:
        answer = await resp.text()
        if resp.status != 201:
            raise RuntimeError(f"POST /v1/peers: {resp.status} {answer[:300]}")


async def fill(session: aiohttp.ClientSession, token: str, keys: list[str]) -> None:
    queue = list(keys)

    async def worker() -> None:
        while queue:
            await create(session, token, queue.pop())

    await asyncio.gather(*(worker() for _ in range(BULK_CONCURRENCY)))


async def wait_for_count(interface: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        seen = (await asyncio.to_thread(raw_dump, interface)).count(b"\npublic_key=")
        if seen >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{seen} of {count} peers on {interface} after {within} s")
        await asyncio.sleep(0.2)


async def measure(size: int, samples: int, keep: bool, profile: Path | None) -> Result:
    interface = f"vlive{os.getpid() % 10000}"
    server = Server(pools=("10.64.0.0/10", "fd00:64::/64"), wireguard="userspace",
                    interface=interface, keep=keep)
    result = Result(size)
    server.init()
    server.start()
    try:
        async with aiohttp.ClientSession(server.base_url) as session:
            token = await onboard(session, server.ops_token, size + samples + 10)
            await fill(session, token, [new_public_key()[0] for _ in range(size)])
            await wait_for_count(interface, size, within=300)
            if profile is not None and not server.start_profile(profile / f"live-{size}.raw"):
                print("  py-spy is not installed: no profile")
            for _ in range(samples):
                key, hexkey = new_public_key()
                needle = b"public_key=" + hexkey.encode()
                began = time.perf_counter()
                await create(session, token, key)
                result.answers.append(time.perf_counter() - began)
                while True:
                    dumped = time.perf_counter()
                    dump = await asyncio.to_thread(raw_dump, interface)
                    result.dumps.append(time.perf_counter() - dumped)
                    if needle in dump:
                        result.latencies.append(time.perf_counter() - began)
                        break
                    if time.perf_counter() - began > 10:
                        raise RuntimeError("a new peer was not on the interface after 10 s")
        server.stop_profile()
    finally:
        server.stop()
        # The daemon outlives `serve` by design (wireguard.daemon_on_stop = keep): deleting
        # the link ends it.
        await asyncio.to_thread(subprocess.run, ["ip", "link", "del", interface],
                                capture_output=True, check=False)
    return result


def ms(values: list[float], p: float) -> str:
    return fmt(percentile(values, p) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="peers already on the interface")
    parser.add_argument("--samples", type=int, default=100, help="new peers timed per size")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    parser.add_argument("--profile", help="py-spy the server while sampling; raw files here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(machine_note())
    profile = Path(args.profile) if args.profile else None
    results = [run(measure(size, args.samples, args.keep, profile)) for size in sizes]
    rows: list[dict[str, Any]] = []
    for r in results:
        p99 = percentile(r.latencies, 99)
        rows.append({
            "peers": f"{r.size:,}", "samples": len(r.latencies),
            "201 p50 ms": ms(r.answers, 50), "live p50 ms": ms(r.latencies, 50),
            "live p99 ms": ms(r.latencies, 99), "live max ms": fmt(max(r.latencies) * 1000),
            "dump p50 ms": ms(r.dumps, 50),
            "target": "met" if p99 <= 0.050 else "MISSED (p99 <= 50 ms)",
        })
    print_table("A new peer live on the interface (POST sent -> key in the UAPI dump), "
                "one at a time", rows,
                ("peers", "samples", "201 p50 ms", "live p50 ms", "live p99 ms", "live max ms",
                 "dump p50 ms", "target"))
    for size in sizes:
        if profile is not None and (profile / f"live-{size}.raw").exists():
            print_profile(profile / f"live-{size}.raw", top=25)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
