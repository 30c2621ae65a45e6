"""Settings: TOML + environment, frozen, and errors that name the setting."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from gateway.settings import SECTIONS, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gateway.toml").write_text(text)
    (tmp_path / "gateway.toml").chmod(0o600)
    return tmp_path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_config_others_can_access_is_refused_naming_the_chmod(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, '[wireguard]\nbackend = "off"\n') / "gateway.toml"
    path.chmod(mode)
    with pytest.raises(SettingsError, match=f"chmod 600 {path}"):
        load_settings(tmp_path, environ={})


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'vpngw.db'}"
    assert s.wireguard.backend == "off"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server.listen = "x"  # type: ignore[misc]


def test_documented_config_lists_every_setting_with_its_default(tmp_path: Path) -> None:
    documented = tomllib.loads((ROOT / "configs" / "gateway.toml").read_text())
    defaults = Settings(data_dir=tmp_path)
    assert set(documented) == set(SECTIONS)
    for section, cls in SECTIONS.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(documented[section]) == names, section
        for name in names:
            value = getattr(getattr(defaults, section), name)
            expected = list(value) if isinstance(value, tuple) else value
            assert documented[section][name] == expected, f"{section}.{name}"


def test_environment_overrides_file(tmp_path: Path) -> None:
    write(tmp_path, '[wireguard]\nbackend = "kernel"\n[network]\npools = ["10.0.0.0/24"]\n')
    s = load_settings(
        tmp_path,
        environ={
            "VPNGW_WIREGUARD_BACKEND": "userspace",
            "VPNGW_NETWORK_POOLS": "10.9.0.0/24, fd00:9::/64",
            "VPNGW_WIREGUARD_MTU": "1380",
        },
    )
    assert s.wireguard.backend == "userspace"
    assert s.network.pools == ("10.9.0.0/24", "fd00:9::/64")
    assert s.wireguard.mtu == 1380


@pytest.mark.parametrize(
    ("toml", "env", "names"),
    [
        ('[wireguard]\nbackend = "tun"\n', {}, "wireguard.backend"),
        ('[wireguard]\nmtu = "big"\n', {}, "wireguard.mtu"),
        ("", {"VPNGW_WIREGUARD_MTU": "big"}, "wireguard.mtu"),
        ('[wireguard]\ninterface = "this-name-is-far-too-long"\n', {}, "wireguard.interface"),
        ('[network]\npools = ["10.0.0.0/33"]\n', {}, "network.pools"),
        ('[network]\npools = ["10.0.0.0/24", "10.1.0.0/24"]\n', {}, "network.pools"),
        ('[network]\nendpoint = "no-port"\n', {}, "network.endpoint"),
        ('[network]\ndns = ["dns.example"]\n', {}, "network.dns"),
        ("[server]\nlisten = 8080\n", {}, "server.listen"),
        ('[database]\nurl = "mysql://x"\n', {}, "database.url"),
        ("[audit]\nretention_days = 0\n", {}, "audit.retention_days"),
        ("[audit]\ncheckpoint_seconds = 5\n", {}, "audit.checkpoint_seconds"),
        ("[audit]\ncheckpoint_seconds = -1\n", {}, "audit.checkpoint_seconds"),
        ('[serverz]\nlisten = "x"\n', {}, "unknown section"),
        ('[server]\nlisten_addr = "x"\n', {}, "unknown setting"),
        ("[server\n", {}, "not valid TOML"),
    ],
)
def test_bad_values_name_the_setting(
    tmp_path: Path, toml: str, env: dict[str, str], names: str
) -> None:
    write(tmp_path, toml)
    with pytest.raises(SettingsError, match=names.replace(".", r"\.")):
        load_settings(tmp_path, environ=env)


def test_replace_validates(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s.replace(wireguard={"mtu": 1400}).wireguard.mtu == 1400
    with pytest.raises(SettingsError, match=r"wireguard\.mtu"):
        s.replace(wireguard={"mtu": 10})


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:8080",
                                    "control.example:8080", "[2001:db8::1]:443"])
def test_plain_http_on_a_non_loopback_address_is_refused_naming_what_to_set(
    tmp_path: Path, listen: str
) -> None:
    write(tmp_path, f'[server]\nlisten = "{listen}"\n')
    with pytest.raises(SettingsError) as refused:
        load_settings(tmp_path, environ={})
    message = str(refused.value)
    for named in ("server.listen", listen, "server.tls_cert", "server.tls_key",
                  "server.allow_plain_http = true", "127.0.0.1"):
        assert named in message, message


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "127.0.0.2:8080", "[::1]:8080",
                                    "localhost:8080"])
def test_plain_http_on_loopback_needs_nothing(tmp_path: Path, listen: str) -> None:
    write(tmp_path, f'[server]\nlisten = "{listen}"\n')
    assert load_settings(tmp_path, environ={}).server.allow_plain_http is False


def test_plain_http_elsewhere_when_explicitly_allowed_or_tls(tmp_path: Path) -> None:
    write(tmp_path, '[server]\nlisten = "0.0.0.0:8080"\nallow_plain_http = true\n')
    assert load_settings(tmp_path, environ={}).server.allow_plain_http is True
    write(tmp_path, '[server]\nlisten = "0.0.0.0:8080"\n')
    allowed = load_settings(tmp_path, environ={"VPNGW_SERVER_ALLOW_PLAIN_HTTP": "true"})
    assert allowed.server.allow_plain_http is True
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    with_tls = load_settings(tmp_path, environ={"VPNGW_SERVER_TLS_CERT": str(cert),
                                                "VPNGW_SERVER_TLS_KEY": str(key)})
    assert with_tls.public_url == "https://0.0.0.0:8080"
    loopback = load_settings(tmp_path, environ={"VPNGW_SERVER_LISTEN": "127.0.0.1:9"})
    with pytest.raises(SettingsError, match="allow_plain_http"):
        loopback.replace(server={"listen": "192.168.1.5:8080"})
