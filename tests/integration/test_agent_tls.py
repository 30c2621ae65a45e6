"""HTTPS between agent and control plane: `vpngw serve` serves the certificate from its
settings, the agent verifies it against --ca-file (or the system CAs) and refuses plain
HTTP to anything but loopback unless told otherwise."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.agent.client import ControlPlane, ControlPlaneUnavailable, check_url, ssl_context
from gateway.app import create_app
from gateway.cli import server_ssl_context
from gateway.http import appkeys
from gateway.settings import SettingsError, validate
from provisioning.gateways import NewGateway
from tests.integration.test_agent import free_port

ROOT = Path(__file__).resolve().parents[2]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(tmp: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("vpngw test CA"))
          .issuer_name(_name("vpngw test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("control"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


async def test_agent_verifies_the_control_planes_certificate(
    make_settings: Any, tmp_path: Path
) -> None:
    ca, cert, key = make_pki(tmp_path)
    settings = make_settings(server={"tls_cert": str(cert), "tls_key": str(key)})
    validate(settings)
    assert settings.public_url.startswith("https://")
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ssl_context(settings)).start()
    try:
        gw, issued = await app[appkeys.COMMANDS].register_gateway(
            NewGateway.parse({"name": "tls", "endpoint": "tls.test:51820"}), None, actor="t"
        )
        url = f"https://127.0.0.1:{port}"
        trusted = ControlPlane(url, issued.secret, ssl_context(str(ca)))
        assert await trusted.whoami() == gw.id
        await trusted.close()
        # Without the private CA the certificate is not trusted: no token is ever sent.
        untrusted = ControlPlane(url, issued.secret, ssl_context(None))
        with pytest.raises(ControlPlaneUnavailable, match=r"(?i)certificate"):
            await untrusted.whoami()
        await untrusted.close()
    finally:
        await runner.cleanup()


def test_plain_http_only_to_loopback_unless_allowed(make_settings: Any, tmp_path: Path) -> None:
    assert check_url("https://cp.example.net:8443/", allow_http=False) == (
        "https://cp.example.net:8443"
    )
    assert check_url("http://127.0.0.1:8080", allow_http=False)
    with pytest.raises(ValueError, match="https"):
        check_url("http://cp.example.net:8080", allow_http=False)
    assert check_url("http://cp.example.net:8080", allow_http=True)
    with pytest.raises(SettingsError, match="tls_key"):
        validate(make_settings(server={"tls_cert": str(tmp_path / "c.pem")}))


def _vpngw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=ROOT)


def test_serve_refuses_plain_http_beyond_loopback_unless_allowed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # init refuses such a listen address outright and leaves no config behind ...
    refused = _vpngw("init", "--data-dir", str(data), "--json", "--listen", "0.0.0.0:8080")
    assert refused.returncode == 1, refused.stdout
    assert "server.allow_plain_http = true" in refused.stderr, refused.stderr
    assert "server.tls_cert" in refused.stderr and "Traceback" not in refused.stderr
    assert not (data / "gateway.toml").exists()
    # ... a loopback data dir serves nothing when told to listen beyond it ...
    assert _vpngw("init", "--data-dir", str(data), "--json").returncode == 0
    port = free_port()
    refused = _vpngw("serve", "--data-dir", str(data), "--listen", f"0.0.0.0:{port}")
    assert refused.returncode == 1
    assert "not a loopback address" in refused.stderr, refused.stderr
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listened, even briefly
    # ... and the explicit flag is written to the config when asked for.
    other = tmp_path / "other"
    allowed = _vpngw("init", "--data-dir", str(other), "--json", "--listen", "0.0.0.0:8080",
                     "--allow-plain-http")
    assert allowed.returncode == 0, allowed.stderr
    assert "allow_plain_http = true" in (other / "gateway.toml").read_text()
