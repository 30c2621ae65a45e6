"""[witness] settings: each entry is "<URL prefix> <witness vkey>"; errors name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.cosignature import Cosigner
from gateway.audit.note import Ed25519NoteSigner
from gateway.settings import SettingsError, load_settings

W1 = Cosigner("witness.example/w1", Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
LOG_VKEY = Ed25519NoteSigner("vpngw.example/log",
                             Ed25519PrivateKey.from_private_bytes(bytes(32))).vkey()


def _load(tmp_path: Path, body: str) -> object:
    (tmp_path / "gateway.toml").write_text("[witness]\n" + body)
    (tmp_path / "gateway.toml").chmod(0o600)  # the config is refused if others can read it
    return load_settings(tmp_path, environ={})


def test_entries_are_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    entry = f"https://w1.example/vpngw {W1.verifier.vkey()}"
    s = load_settings(tmp_path, environ={"VPNGW_WITNESS_WITNESSES": entry})
    assert s.witness.witnesses == (entry,)
    assert _load(tmp_path, f'witnesses = ["{entry}"]\n') is not None


@pytest.mark.parametrize("body, message", [
    ('witnesses = ["https://w1.example"]\n', "<URL prefix> <witness vkey>"),
    (f'witnesses = ["ftp://w1.example {W1.verifier.vkey()}"]\n', "http(s) URL"),
    (f'witnesses = ["https://w1.example {LOG_VKEY}"]\n', "type 0x04"),
    (f'witnesses = ["https://a.example {W1.verifier.vkey()}", '
     f'"https://b.example {W1.verifier.vkey()}"]\n', "listed twice"),
    ("interval_seconds = 0\n", "witness.interval_seconds"),
    ("answer_wait_seconds = -1\n", "witness.answer_wait_seconds"),
])
def test_bad_witness_settings_name_what_to_fix(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(SettingsError, match="witness") as caught:
        _load(tmp_path, body)
    assert message in str(caught.value)
