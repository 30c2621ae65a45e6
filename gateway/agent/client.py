"""The agent's HTTP(S) client for the control plane: one session, one token, CA checked."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gateway.agent import protocol


class ControlPlaneUnavailable(Exception):
    """Not reachable or failing (network, 5xx): retry later, keep serving saved state."""


class Refused(Exception):
    """The control plane answered with a problem a retry will not fix (4xx)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('type', '')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem


def check_url(url: str, *, allow_http: bool) -> str:
    """HTTPS, or plain HTTP to a loopback address (or when explicitly allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--control must be an https:// URL (got {url!r})")
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "http" and not (loopback or allow_http):
        raise ValueError(
            "--control uses plain HTTP to a non-loopback host: the agent token and preshared "
            "keys would cross the network in clear; use https:// (or --allow-http on a "
            "network you trust)"
        )
    return url.rstrip("/")


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """System CAs, or only the CA in `ca_file` (a private control-plane CA)."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


@dataclass
class ControlPlane:
    base_url: str
    token: str
    ssl: ssl.SSLContext
    gateway_id: str = ""
    _session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.token}"},
                connector=aiohttp.TCPConnector(ssl=self.ssl),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, *, seconds: float, **kw: Any) -> Any:
        try:
            async with self._http().request(
                method, f"{self.base_url}{path}", timeout=aiohttp.ClientTimeout(total=seconds),
                **kw,
            ) as resp:
                if resp.status >= 500:
                    raise ControlPlaneUnavailable(f"{method} {path}: HTTP {resp.status}")
                if resp.status >= 400:
                    try:
                        problem = await resp.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        problem = {"detail": await resp.text()}
                    raise Refused(resp.status, problem)
                if resp.status == 204:
                    return None
                return await resp.json()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ControlPlaneUnavailable(f"{method} {path}: {exc or type(exc).__name__}") from exc

    async def whoami(self) -> str:
        doc = await self._call("GET", "/agent/v1/whoami", seconds=15)
        self.gateway_id = str(doc["gateway_id"])
        return self.gateway_id

    async def state(self, revision: int, *, wait: int) -> protocol.StateDoc:
        doc = await self._call(
            "GET", f"/agent/v1/gateways/{self.gateway_id}/state",
            params={"revision": str(revision), "wait": str(wait)}, seconds=wait + 15,
        )
        return protocol.state_from_wire(doc)

    async def upload(self, batch_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        doc: dict[str, Any] = await self._call(
            "POST", f"/agent/v1/gateways/{self.gateway_id}/observations",
            json={"batch_id": batch_id, "events": events}, seconds=30,
        )
        return doc

    async def status(self, interface: dict[str, Any], peers: list[dict[str, Any]]) -> None:
        await self._call(
            "POST", f"/agent/v1/gateways/{self.gateway_id}/status",
            json={"interface": interface, "peers": peers}, seconds=30,
        )
