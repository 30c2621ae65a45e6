"""Client configuration rendering: wg-quick .conf, JSON and QR codes (pure)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import segno

from provisioning.addresses import host_prefix

CONFIG_FORMATS = {
    "conf": "text/plain; charset=utf-8",
    "json": "application/json",
    "qr.svg": "image/svg+xml",
    "qr.png": "image/png",
}


@dataclass(frozen=True)
class ClientConfig:
    peer_name: str
    tunnel_ips: tuple[str, ...]
    dns: tuple[str, ...]
    gateway_public_key: str
    endpoint: str
    allowed_ips: tuple[str, ...]
    persistent_keepalive: int
    private_key: str | None = None
    preshared_key: str | None = None

    def __repr__(self) -> str:
        return f"ClientConfig(peer_name={self.peer_name!r}, endpoint={self.endpoint!r})"


def render_conf(cfg: ClientConfig) -> str:
    lines = [f"# vpngw peer: {cfg.peer_name}", "[Interface]"]
    if cfg.private_key:
        lines.append(f"PrivateKey = {cfg.private_key}")
    else:
        # The key never left the device; wg-quick needs it here before `up`.
        lines.append("# PrivateKey = <this device's private key>")
    lines.append("Address = " + ", ".join(host_prefix(ip) for ip in cfg.tunnel_ips))
    if cfg.dns:
        lines.append("DNS = " + ", ".join(cfg.dns))
    lines += ["", "[Peer]", f"PublicKey = {cfg.gateway_public_key}"]
    if cfg.preshared_key:
        lines.append(f"PresharedKey = {cfg.preshared_key}")
    lines += [
        f"Endpoint = {cfg.endpoint}",
        "AllowedIPs = " + ", ".join(cfg.allowed_ips),
    ]
    if cfg.persistent_keepalive:
        lines.append(f"PersistentKeepalive = {cfg.persistent_keepalive}")
    return "\n".join(lines) + "\n"


def config_document(cfg: ClientConfig) -> dict[str, Any]:
    interface: dict[str, Any] = {
        "addresses": [host_prefix(ip) for ip in cfg.tunnel_ips],
        "dns": list(cfg.dns),
    }
    if cfg.private_key:
        interface["private_key"] = cfg.private_key
    peer: dict[str, Any] = {
        "public_key": cfg.gateway_public_key,
        "endpoint": cfg.endpoint,
        "allowed_ips": list(cfg.allowed_ips),
        "persistent_keepalive": cfg.persistent_keepalive,
    }
    if cfg.preshared_key:
        peer["preshared_key"] = cfg.preshared_key
    return {"name": cfg.peer_name, "interface": interface, "peer": peer}


def render(cfg: ClientConfig, fmt: str) -> bytes:
    """The config in one of CONFIG_FORMATS."""
    if fmt == "conf":
        return render_conf(cfg).encode()
    if fmt == "json":
        return json.dumps(config_document(cfg), indent=2).encode()
    qr = segno.make(render_conf(cfg), error="m")
    out = io.BytesIO()
    if fmt == "qr.svg":
        qr.save(out, kind="svg", scale=4, border=4)
    elif fmt == "qr.png":
        qr.save(out, kind="png", scale=6, border=4)
    else:
        raise ValueError(f"unknown config format {fmt!r}")
    return out.getvalue()
