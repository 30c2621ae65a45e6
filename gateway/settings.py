"""Typed, frozen settings loaded from the data dir's TOML with VPNGW_* overrides."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.egress.mapping import DEFAULT_BLOCKED, EgressConfigError, parse_ports
from gateway.privatefiles import exposure

CONFIG_FILE = "gateway.toml"
ENV_PREFIX = "VPNGW_"


class SettingsError(Exception):
    """A setting is missing, malformed or out of range; the message names it."""


@dataclass(frozen=True)
class ServerSettings:
    listen: str = "127.0.0.1:8080"
    # Base URL clients use to reach the API; one-time links are built on it.
    public_url: str = ""
    max_body_bytes: int = 65536
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # HTTPS: PEM certificate chain and its private key (both set, or neither for HTTP).
    tls_cert: str = ""
    tls_key: str = ""
    # Plain HTTP on a non-loopback listen address (tokens and preshared keys in clear):
    # only behind a TLS-terminating proxy or on a network you trust.
    allow_plain_http: bool = False


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty means the embedded SQLite file <data_dir>/vpngw.db.
    url: str = ""
    pool_size: int = 10


@dataclass(frozen=True)
class NetworkSettings:
    gateway_id: str = "gw1"
    endpoint: str = "vpn.example.net:51820"
    # 512 IPv4 addresses: what one public address covers with 126-port egress blocks.
    pools: tuple[str, ...] = ("10.100.0.0/23", "fd00:100::/64")
    # Resolvers reached through the tunnel (the gateway itself answers only ping).
    dns: tuple[str, ...] = ("9.9.9.9", "149.112.112.112")
    client_allowed_ips: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    persistent_keepalive: int = 25
    address_quarantine_days: int = 30


@dataclass(frozen=True)
class TenantSettings:
    default_max_peers: int = 100
    link_ttl_seconds: int = 900
    link_max_ttl_seconds: int = 86400


@dataclass(frozen=True)
class WireGuardSettings:
    backend: Literal["off", "userspace", "kernel"] = "off"
    interface: str = "vpngw0"
    listen_port: int = 51820
    mtu: int = 1420
    fwmark: int = 0
    wireguard_go: str = "wireguard-go"
    socket_dir: str = "/var/run/wireguard"
    reconcile_interval_seconds: float = 30.0
    collect_interval_seconds: float = 10.0
    # A session counts as ended once its latest handshake is older than silence + grace.
    # 180 s is WireGuard's REJECT_AFTER_TIME (past it no data flows without a new
    # handshake); shorter ends live sessions too, so only tests and demos lower it.
    session_silence_seconds: int = 180
    session_grace_seconds: int = 30
    # userspace: what stopping the service does to wireguard-go (and so to every tunnel).
    daemon_on_stop: Literal["keep", "stop"] = "keep"


@dataclass(frozen=True)
class EgressSettings:
    # Carry clients' traffic out (forwarding, isolation, translation) and log the mapping.
    enabled: bool = True
    # Empty: the interface of the host's default route, found at start.
    interface: str = ""
    # Ordered public IPv4 addresses; empty: the address of the default route's interface.
    addresses: tuple[str, ...] = ()
    ports: str = "1024-65535"
    block_size: int | Literal["auto"] = "auto"
    ipv6: Literal["nat66", "routed", "off"] = "nat66"
    addresses6: tuple[str, ...] = ()
    blocked: tuple[str, ...] = DEFAULT_BLOCKED
    # Delete the vpngw nftables table when the service stops cleanly.
    remove_on_stop: bool = False


@dataclass(frozen=True)
class AuditSettings:
    origin: str = "vpngw.example/log"
    retention_days: int = 365
    sequencer_interval_seconds: float = 0.2
    sequencer_batch: int = 5000
    checkpoint_seconds: float = 0.5
    retention_interval_seconds: float = 3600.0


@dataclass(frozen=True)
class RegulatorSettings:
    max_hits_limit: int = 1000
    default_max_hits: int = 100
    clock_skew_seconds: int = 60
    max_signature_lifetime_seconds: int = 300
    # regulator.refused events per registered key id and minute (the rest are counted).
    refusal_log_per_minute: int = 10
    # Longest a query waits for the sequencer to log it (or to log what committed before
    # it) before it is refused with 503 and Retry-After.
    log_wait_seconds: float = 5.0


@dataclass(frozen=True)
class TransparencySettings:
    # Days after a quarter ends before its public report appears.
    embargo_days: int = 90


@dataclass(frozen=True)
class WitnessSettings:
    # Each entry: "<witness URL prefix> <witness vkey>" (C2SP tlog-witness, cosignature/v1).
    witnesses: tuple[str, ...] = ()
    # Seconds between rounds that bring every witness up to the newest checkpoint.
    interval_seconds: float = 5.0
    # Longest a regulator answer or GET /regulator/v1/checkpoint waits for reachable
    # witnesses to cosign the newest checkpoint before it is served with what exists.
    answer_wait_seconds: float = 2.0
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class ApprovalSettings:
    # Two-person control: sensitive operations wait for a second ops principal's approval.
    # Only a single-operator deployment should switch it off; its value is logged at start.
    required: bool = True
    # Hours a pending approval waits for a decision before it expires and does nothing.
    expiry_hours: float = 24.0


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    tenants: TenantSettings = field(default_factory=TenantSettings)
    wireguard: WireGuardSettings = field(default_factory=WireGuardSettings)
    egress: EgressSettings = field(default_factory=EgressSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    regulator: RegulatorSettings = field(default_factory=RegulatorSettings)
    transparency: TransparencySettings = field(default_factory=TransparencySettings)
    witness: WitnessSettings = field(default_factory=WitnessSettings)
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'vpngw.db'}"

    @property
    def listen_host(self) -> str:
        return self.server.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.server.listen.rsplit(":", 1)[1])

    @property
    def public_url(self) -> str:
        scheme = "https" if self.server.tls_cert else "http"
        return (self.server.public_url or f"{scheme}://{self.server.listen}").rstrip("/")

    @property
    def pool_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(p) for p in self.network.pools)

    def replace(self, **sections: Any) -> Settings:
        """Copy with sections changed, e.g. replace(wireguard={"backend": "off"})."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            if isinstance(value, Mapping):
                changes[name] = dataclasses.replace(getattr(self, name), **value)
            else:
                changes[name] = value
        new = dataclasses.replace(self, **changes)
        validate(new)
        return new


SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name != "data_dir"
}


def load_settings(data_dir: Path | str, environ: Mapping[str, str] | None = None) -> Settings:
    """Read <data_dir>/gateway.toml (optional) and apply VPNGW_<SECTION>_<NAME> overrides."""
    data_dir = Path(data_dir).resolve()
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = data_dir / CONFIG_FILE
    if path.exists():
        problem = exposure(path)
        if problem is not None:
            raise SettingsError(f"{problem}; it may hold the database password")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise SettingsError(
            f"{path}: unknown section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}"
        )
    sections = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise SettingsError(f"[{name}] must be a table")
        sections[name] = _build_section(name, cls, table, environ)
    settings = Settings(data_dir=data_dir, **sections)
    validate(settings)
    return settings


def _build_section(
    section: str, cls: type[Any], table: Mapping[str, Any], environ: Mapping[str, str]
) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - names
    if unknown:
        raise SettingsError(
            f"[{section}]: unknown setting(s) {sorted(unknown)}; known: {sorted(names)}"
        )
    values: dict[str, Any] = {}
    for name in names:
        key = f"{section}.{name}"
        env_name = f"{ENV_PREFIX}{section}_{name}".upper()
        if env_name in environ:
            values[name] = _coerce(key, hints[name], _parse_env(hints[name], environ[env_name]))
        elif name in table:
            values[name] = _coerce(key, hints[name], table[name])
    return cls(**values)


def _parse_env(hint: Any, text: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _parse_env(int, text) if int in typing.get_args(hint) else text
    if origin is tuple:
        return [item.strip() for item in text.split(",") if item.strip()]
    if hint is bool:
        return text.strip().lower() in {"1", "true", "yes", "on"}
    if hint is int:
        try:
            return int(text)
        except ValueError:
            return text
    if hint is float:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _coerce(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for member in typing.get_args(hint):
            try:
                return _coerce(key, member, value)
            except SettingsError as exc:
                errors.append(str(exc))
        raise SettingsError(" or ".join(errors))
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{key} must be true or false, got {value!r}")
        return value
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise SettingsError(f"{key} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{key} must be a list of strings, got {value!r}")
        return tuple(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{key} must be a string, got {value!r}")
        return value
    raise SettingsError(f"{key}: unsupported type {hint!r}")


def validate(s: Settings) -> None:
    """Cross-field and range checks; each message names the setting and what to fix."""
    _check_hostport("server.listen", s.server.listen)
    _check_hostport("network.endpoint", s.network.endpoint)
    if bool(s.server.tls_cert) != bool(s.server.tls_key):
        raise SettingsError("server.tls_cert and server.tls_key: set both (HTTPS) or neither")
    for key, path in (("server.tls_cert", s.server.tls_cert), ("server.tls_key", s.server.tls_key)):
        if path and not Path(path).is_file():
            raise SettingsError(f"{key}: {path} is not a readable file (PEM)")
    _check_plain_http(s)
    if not 1024 <= s.server.max_body_bytes <= 16 * 1024 * 1024:
        raise SettingsError("server.max_body_bytes must be between 1024 and 16777216")
    if s.database.url and not s.database.url.startswith(
        ("sqlite+aiosqlite://", "postgresql+asyncpg://")
    ):
        raise SettingsError(
            "database.url must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    families: set[int] = set()
    for pool in s.network.pools:
        try:
            net = ipaddress.ip_network(pool)
        except ValueError as exc:
            raise SettingsError(f"network.pools: {pool!r} is not a CIDR network ({exc})") from exc
        if net.version in families:
            raise SettingsError("network.pools: give at most one IPv4 and one IPv6 pool")
        families.add(net.version)
        if net.num_addresses < 4:
            raise SettingsError(f"network.pools: {pool} is too small (needs at least 4 addresses)")
    if not s.network.pools:
        raise SettingsError("network.pools must name at least one CIDR pool")
    for label, items in (("network.dns", s.network.dns),):
        for item in items:
            try:
                ipaddress.ip_address(item)
            except ValueError as exc:
                raise SettingsError(f"{label}: {item!r} is not an IP address") from exc
    for item in s.network.client_allowed_ips:
        try:
            ipaddress.ip_network(item)
        except ValueError as exc:
            raise SettingsError(f"network.client_allowed_ips: {item!r} is not a CIDR") from exc
    if not s.network.gateway_id or len(s.network.gateway_id) > 64:
        raise SettingsError("network.gateway_id must be 1-64 characters")
    if not 0 <= s.network.persistent_keepalive <= 65535:
        raise SettingsError("network.persistent_keepalive must be 0-65535")
    if s.network.address_quarantine_days < 0:
        raise SettingsError("network.address_quarantine_days must be >= 0")
    if not 1 <= s.tenants.default_max_peers <= 1_000_000:
        raise SettingsError("tenants.default_max_peers must be 1-1000000")
    if not 60 <= s.tenants.link_ttl_seconds <= s.tenants.link_max_ttl_seconds:
        raise SettingsError(
            "tenants.link_ttl_seconds must be >= 60 and <= tenants.link_max_ttl_seconds"
        )
    if not _valid_ifname(s.wireguard.interface):
        raise SettingsError(
            "wireguard.interface must be 1-15 characters of letters, digits, '-', '_' or '.'"
        )
    if not 1 <= s.wireguard.listen_port <= 65535:
        raise SettingsError("wireguard.listen_port must be 1-65535")
    if not 1280 <= s.wireguard.mtu <= 9000:
        raise SettingsError("wireguard.mtu must be 1280-9000")
    if not 0 <= s.wireguard.fwmark <= 0xFFFFFFFF:
        raise SettingsError("wireguard.fwmark must be a 32-bit unsigned integer")
    for name in ("reconcile_interval_seconds", "collect_interval_seconds"):
        if getattr(s.wireguard, name) <= 0:
            raise SettingsError(f"wireguard.{name} must be > 0")
    validate_session_timing(s.wireguard)
    if not s.audit.origin or "\n" in s.audit.origin:
        raise SettingsError("audit.origin must be a non-empty single line")
    if s.audit.retention_days < 1:
        raise SettingsError("audit.retention_days must be >= 1")
    if not 0 <= s.audit.checkpoint_seconds <= 1:
        raise SettingsError("audit.checkpoint_seconds must be 0-1 (0: sign after every "
                            "sequencer pass; default 0.5)")
    if not 0 < s.approvals.expiry_hours <= 24 * 30:
        raise SettingsError("approvals.expiry_hours must be > 0 and at most 720 (30 days)")
    _check_egress(s)
    if not 0 <= s.transparency.embargo_days <= 3650:
        raise SettingsError("transparency.embargo_days must be 0-3650")
    _check_witness(s)
    if not 1 <= s.regulator.default_max_hits <= s.regulator.max_hits_limit:
        raise SettingsError("regulator.default_max_hits must be 1..regulator.max_hits_limit")
    if not 0 <= s.regulator.refusal_log_per_minute <= 10_000:
        raise SettingsError("regulator.refusal_log_per_minute must be 0-10000")
    if not 0 < s.regulator.log_wait_seconds <= 300:
        raise SettingsError("regulator.log_wait_seconds must be more than 0 and at most 300")


def is_loopback_host(host: str) -> bool:
    """A listen host only this machine can reach (a name other than localhost never is)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_plain_http(s: Settings) -> None:
    if s.server.tls_cert or s.server.allow_plain_http or is_loopback_host(s.listen_host):
        return
    raise SettingsError(
        f"server.listen {s.server.listen} is not a loopback address and TLS is not set: "
        "tokens and preshared keys would cross the network in clear. Set server.tls_cert "
        "and server.tls_key (HTTPS), or set server.allow_plain_http = true (behind a "
        "TLS-terminating proxy or on a network you trust), or listen on 127.0.0.1"
    )


def validate_session_timing(w: WireGuardSettings) -> None:
    if not 1 <= w.session_silence_seconds <= 86400:
        raise SettingsError("wireguard.session_silence_seconds must be 1-86400 (default 180, "
                            "WireGuard's REJECT_AFTER_TIME)")
    if not 0 <= w.session_grace_seconds <= 86400:
        raise SettingsError("wireguard.session_grace_seconds must be 0-86400")


def _check_egress(s: Settings) -> None:
    """Shape checks; whether the addresses cover the pool is checked once they are known."""
    e = s.egress
    if e.interface and not _valid_ifname(e.interface):
        raise SettingsError(
            "egress.interface must be 1-15 characters of letters, digits, '-', '_' or '.'"
        )
    if e.enabled and e.interface and e.interface == s.wireguard.interface:
        raise SettingsError("egress.interface must not be the WireGuard interface")
    try:
        parse_ports(e.ports)
    except EgressConfigError as exc:
        raise SettingsError(str(exc)) from exc
    for label, items, version in (("egress.addresses", e.addresses, 4),
                                  ("egress.addresses6", e.addresses6, 6)):
        for item in items:
            try:
                ok = ipaddress.ip_address(item).version == version
            except ValueError:
                ok = False
            if not ok:
                raise SettingsError(f"{label}: {item!r} is not an IPv{version} address")
    for item in e.blocked:
        try:
            ipaddress.ip_network(item)
        except ValueError as exc:
            raise SettingsError(f"egress.blocked: {item!r} is not a CIDR network ({exc})") from exc


def _check_witness(s: Settings) -> None:
    from gateway.audit.witnessing import WitnessConfigError, parse_witness_entry

    names = set()
    for entry in s.witness.witnesses:
        try:
            witness = parse_witness_entry(entry)
        except WitnessConfigError as exc:
            raise SettingsError(f"witness.witnesses: {exc}") from exc
        if witness.verifier.key_id in names:
            raise SettingsError(f"witness.witnesses: {witness.verifier.label} is listed twice")
        names.add(witness.verifier.key_id)
    for name in ("interval_seconds", "answer_wait_seconds", "timeout_seconds"):
        if not 0 <= getattr(s.witness, name) <= 3600:
            raise SettingsError(f"witness.{name} must be between 0 and 3600 seconds")
    if s.witness.interval_seconds <= 0 or s.witness.timeout_seconds <= 0:
        raise SettingsError("witness.interval_seconds and witness.timeout_seconds must be > 0")


def _valid_ifname(name: str) -> bool:
    return 0 < len(name) <= 15 and all(c.isalnum() or c in "-_." for c in name) and name.isascii()


def _check_hostport(key: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise SettingsError(f"{key} must be HOST:PORT (IPv6 as [addr]:port), got {value!r}")
