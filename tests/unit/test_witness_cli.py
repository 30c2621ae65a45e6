"""`vpngw-regulator witness keygen|serve`: bad flags and key files exit 2 saying what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.audit.cosignature import Cosigner, CosignerVerifier
from gateway.regulator.cli import main


def test_keygen_writes_an_owner_only_key_and_its_vkey(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "w.key"
    assert main(["witness", "keygen", "--name", "witness.test/w1", "--out", str(key)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    vkey = (tmp_path / "w.key.vkey").read_text().strip()
    assert f"witness vkey: {vkey}" in capsys.readouterr().out
    assert Cosigner.from_private_key(key.read_text()).verifier == CosignerVerifier.from_vkey(vkey)
    with pytest.raises(SystemExit) as again:
        main(["witness", "keygen", "--name", "witness.test/w1", "--out", str(key)])
    assert again.value.code == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("setup, flags, message", [
    ("ok", [], "--log-vkey"),
    ("ok", ["--log-vkey", "not-a-vkey"], "--log-vkey"),
    ("readable", ["--log-vkey", "x"], "chmod 600"),
    ("missing", ["--log-vkey", "x"], "cannot read witness key"),
    ("ok", ["--log-vkey", "x", "--listen", "nowhere"], "HOST:PORT"),
])
def test_serve_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, flags: list[str],
    message: str,
) -> None:
    key = tmp_path / "w.key"
    if setup != "missing":
        main(["witness", "keygen", "--name", "witness.test/w1", "--out", str(key)])
    if setup == "readable":
        key.chmod(0o644)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["witness", "serve", "--key", str(key), "--state", str(tmp_path / "s"), *flags])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
