"""`Agent` (the wiring of `vpngw agent`) against a real control plane over a real socket,
with a hand-written in-memory WireGuard backend: desired state reaches the interface,
sessions reach the log under the agent's gateway, and nothing is lost while the control
plane is away — not even across an agent restart."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.agent.main import Agent, AgentOptions
from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings, WireGuardSettings
from gateway.wireguard.keys import from_base64
from tests.conftest import FakeClock
from tests.fakes import MemoryBackend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ControlPlane:
    """`vpngw serve --wireguard off` in this process, stoppable and restartable on one port."""

    def __init__(self, settings: Settings, clock: FakeClock) -> None:
        self.settings, self.clock, self.port = settings, clock, free_port()
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = TestServer(create_app(self.settings, clock=self.clock), port=self.port)
        await self.server.start_server()

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.close()
        self.server = None

    @property
    def app(self) -> Any:
        assert self.server is not None
        return self.server.app

    async def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as http, http.request(
            method, self.url + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json() if resp.status != 204 else None

    async def logged(self, ops: str, kind: str) -> list[dict[str, Any]]:
        await self.app[appkeys.SEQUENCER].drain()
        doc = await self.call("GET", f"/ops/v1/audit?type={kind}", ops)
        return [i["event"] for i in doc["items"]]


async def until(check: Callable[[], Any], what: str) -> None:
    """Poll a condition; the test's own timeout bounds the wait."""
    for _ in range(3000):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def control(
    make_settings: Any, database_url: str, clock: FakeClock
) -> AsyncIterator[ControlPlane]:
    cp = ControlPlane(make_settings(database_url), clock)
    await cp.start()
    yield cp
    if cp.server is not None:
        await cp.stop()


class RunningAgent:
    def __init__(self, options: AgentOptions, backend: MemoryBackend, clock: FakeClock) -> None:
        self.agent = Agent(options, backend=backend, clock=clock.now)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.agent.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await self.task


async def test_agent_serves_its_gateway_online_and_offline(
    control: ControlPlane, clock: FakeClock, tmp_path: Path
) -> None:
    commands = control.app[appkeys.COMMANDS]
    ops = (await commands.issue_ops_token(label="t", actor="t")).secret
    gw = await control.call("POST", "/ops/v1/gateways", ops,
                            {"name": "fra", "endpoint": "fra.test:51820"})
    tenant = await control.call("POST", "/ops/v1/tenants", ops, {
        "legal_name": "Acme", "registration_number": "R1", "tax_id": "T1", "country": "DE",
        "contact_email": "it@acme.test"})
    await control.call("POST", f"/ops/v1/tenants/{tenant['id']}/verification", ops,
                       {"evidence_reference": "KYC-1"})
    token = (await control.call("POST", f"/ops/v1/tenants/{tenant['id']}/tokens", ops))["token"]
    peer = await control.call("POST", "/v1/peers", token, {"name": "p", "gateway_id": gw["id"]})
    key = from_base64(peer["public_key"])

    ws = replace(WireGuardSettings(), backend="userspace", interface="wgagent0",
                 collect_interval_seconds=0.05, reconcile_interval_seconds=0.5)
    options = AgentOptions(control=control.url, token=gw["agent_token"],
                           data_dir=tmp_path / "agent", wireguard=ws, poll_wait=5,
                           status_interval=0.2, max_backoff=0.2)
    backend = MemoryBackend()
    running = RunningAgent(options, backend, clock)
    await until(lambda: key in backend.peers, "peer on the interface")
    assert backend.peers[key].allowed_ips == tuple(f"{ip}/{32 if '.' in ip else 128}"
                                                   for ip in peer["tunnel_ips"])
    assert backend.spec is not None and backend.spec.listen_port == 51820
    assert (tmp_path / "agent" / "wireguard.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "agent" / "desired-state.json").stat().st_mode & 0o777 == 0o600

    # The agent reports its locally generated key: the config now names it.
    async def key_reported() -> bool:
        shown = await control.call("GET", f"/ops/v1/gateways/{gw['id']}", ops)
        return bool(shown["public_key"])

    await until(key_reported, "interface key reported")
    async with aiohttp.ClientSession() as http, http.get(
        f"{control.url}/v1/peers/{peer['id']}/config",
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        conf = await resp.text()
    assert running.agent.public_key in conf and "Endpoint = fra.test:51820" in conf

    backend.handshake(key, at=clock.now(), endpoint="203.0.113.7:40000", rx=10, tx=20)

    async def session_logged() -> bool:
        return bool(await control.logged(ops, "session.started"))

    await until(session_logged, "session.started logged")
    started = (await control.logged(ops, "session.started"))[0]
    assert started["gateway_id"] == gw["id"] and started["peer_id"] == peer["id"]

    # Control plane away: the session ends meanwhile, the agent restarts from saved state.
    await control.stop()
    clock.advance(seconds=300)
    await until(lambda: running.agent.store.queued_events == 1, "session.ended queued on disk")
    ended_at = clock.now()
    await running.close()
    fresh = MemoryBackend()
    running = RunningAgent(options, fresh, clock)
    await until(lambda: key in fresh.peers, "tunnel back from saved state, offline")

    await control.start()
    await until(lambda: running.agent.store.queued_events == 0, "queue replayed")
    ended = await control.logged(ops, "session.ended")
    assert len(ended) == 1 and ended[0]["gateway_id"] == gw["id"]
    assert ended[0]["observed_at"] <= ended_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (ended[0]["rx_bytes"], ended[0]["tx_bytes"]) == (10, 20)

    # Back online, a suspension reaches the interface through the long-poll.
    await control.call("POST", f"/ops/v1/tenants/{tenant['id']}/suspension", ops,
                       {"reason": "audit"})
    await until(lambda: key not in fresh.peers, "suspended peer removed")
    await running.close()
    assert len(await control.logged(ops, "session.ended")) == 1
