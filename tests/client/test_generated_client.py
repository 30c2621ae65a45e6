"""A client generated from the served /openapi.json runs the README walk-through, typed.

openapi-python-client (pinned in pyproject.toml) generates the package from the document
a real server serves over a socket; mypy --strict then checks walkthrough.py against the
generated package (so every result the walk-through uses is typed, none decoded by
hand), and the walk-through runs against the same server.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings
from provisioning.keys import generate_key_pair

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


async def run(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{argv[0]} failed:\n{text}"
    return text


@pytest.fixture
def import_path() -> Iterator[list[str]]:
    """Paths added to sys.path for the generated package, and its modules, undone after."""
    added: list[str] = []
    yield added
    for path in added:
        sys.path.remove(path)
    for name in [m for m in sys.modules if m.split(".")[0] in ("vpngw_client", "walkthrough")]:
        del sys.modules[name]


async def test_generated_client_runs_the_readme_walkthrough(
    aiohttp_server: Any,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    import_path: list[str],
) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'vpngw.db'}")
    server = await aiohttp_server(create_app(settings))
    base_url = str(server.make_url("")).rstrip("/")

    # Generate from what the server serves, not from an in-process dict.
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/openapi.json") as r:
        assert r.status == 200
        spec = await r.json()
    (tmp_path / "openapi.json").write_text(json.dumps(spec))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = await run(
        str(BIN / "openapi-python-client"),
        "generate",
        "--path",
        "openapi.json",
        "--meta",
        "none",
        "--output-path",
        "vpngw_client",
        cwd=tmp_path,
        env=env,
    )
    # Any construct the generator cannot express is a warning and a missing piece.
    assert "Warning" not in out, out

    # Every result the walk-through uses must be typed by the generated package.
    (tmp_path / "walkthrough.py").write_text((HERE / "walkthrough.py").read_text())
    # The generator's own client.py trips --strict in places that do not concern the
    # types it hands out; the walk-through itself is checked strictly.
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nstrict = True\npython_version = 3.11\n"
        "[mypy-vpngw_client.*]\nignore_errors = True\n"
    )
    await run(
        str(BIN / "mypy"),
        "--config-file",
        "mypy.ini",
        "--no-incremental",
        "walkthrough.py",
        cwd=tmp_path,
        env={**env, "MYPYPATH": str(tmp_path)},
    )

    import_path.append(str(tmp_path))
    sys.path.insert(0, str(tmp_path))
    walkthrough = importlib.import_module("walkthrough")
    ops = (await server.app[appkeys.COMMANDS].issue_ops_token(label="t", actor="t")).secret
    device, replacement = generate_key_pair().public_key, generate_key_pair().public_key
    walked = await walkthrough.walk(base_url, ops, device, replacement)
    await server.app[appkeys.SEQUENCER].drain()
    audit = await walkthrough.audit_of(base_url, ops, walked.tenant.id)

    gateway_key = server.app[appkeys.KEYS].wireguard_public
    assert f"PublicKey = {gateway_key}" in walked.conf
    assert "# PrivateKey = <this device's private key>" in walked.conf
    assert walked.linked_conf == walked.conf
    assert "\nPrivateKey = " in walked.sealed_conf  # the sealed config carries the key
    assert walked.qr_svg.lstrip().startswith("<?xml") and "<svg" in walked.qr_svg
    assert walked.qr_png.startswith(b"\x89PNG\r\n\x1a\n")
    assert walked.link.url.startswith(settings.public_url + "/links/")
    assert f"PrivateKey = {walked.server_peer.private_key}" in walked.server_peer.config
    assert walked.rotated.public_key == replacement
    assert walked.rotated.tunnel_ips == walked.device_peer.tunnel_ips
    assert walked.bad_key.status == 400 and walked.bad_key.field == "public_key"
    assert walked.bad_key.type_ == "urn:vpngw:problem:invalid-input"
    assert len(walked.bad_key.request_id) == 16
    types = [entry.type_ for entry in audit.items]
    assert types[:3] == ["tenant.created", "tenant.verified", "token.issued"]
    assert "peer.key_rotated" in types and "tenant.suspended" in types
