"""`vpngw-regulator` end to end against a real `vpngw serve` process on a free port.

The regulator's whole workflow runs as subprocesses (keygen, keys, query, verify,
checkpoint); the many tampering variants of a saved answer call the same ``main()``
in-process to keep the suite fast.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.note import Checkpoint, Ed25519NoteSigner, Ed25519NoteVerifier, key_id
from gateway.keyfiles import LOG_KEY
from gateway.regulator.answer import open_checkpoint
from gateway.regulator.cli import main
from gateway.regulator.client import StateFile, public_key_b64

ROOT = Path(__file__).resolve().parents[2]


def run(module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def regulator(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("gateway.regulator.cli", *args, check=check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Gateway:
    url: str
    data_dir: Path
    ops_token: str

    def call(self, method: str, path: str, token: str | None = None,
             body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", f"Bearer {token or self.ops_token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (http to localhost)
            return json.loads(resp.read() or b"null")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    base = tmp_path_factory.mktemp("gateway")
    data = base / "data"
    init = run("gateway.cli", "init", "--data-dir", str(data), "--pool", "10.70.0.0/24",
               "--endpoint", "vpn.test:51820", "--json")
    token = json.loads(init.stdout)["ops_token"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (base / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data),
             "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):  # noqa: S310
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((base / "serve.log").read_text()) from None
                time.sleep(0.1)
        yield Gateway(url, data, token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            proc.kill()
            proc.wait()


@dataclass
class Setup:
    gw: Gateway
    dir: Path
    keyid: str
    keygen: dict[str, Any]
    pins: Path
    vkey: str
    response_key: str
    peer: dict[str, Any]
    tenant: dict[str, Any]

    @staticmethod
    def window() -> tuple[str, str]:
        """An authorisation in force now (the server runs on the real clock)."""
        now = datetime.now(UTC)
        return ((now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def auth_flags(self) -> list[str]:
        valid_from, valid_until = self.window()
        return ["--request-country", "PK", "--request-authority", "PTA",
                "--request-number", "2026-000123", "--auth-reference", "PTA/LI/2026/0042",
                "--auth-basis", "PECA 2016 s.32", "--auth-from", valid_from,
                "--auth-until", valid_until]

    def query_args(self, state: Path, *extra: str) -> list[str]:
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return ["query", "--url", self.gw.url, "--key", str(self.dir / "keys/regulator.key"),
                "--keyid", self.keyid, "--state", str(state), "--kind", "attribution.tunnel_ip",
                "--ip", self.peer["tunnel_ips"][0], "--at", at, *self.auth_flags(), *extra]


@pytest.fixture(scope="module")
def setup(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    work = tmp_path_factory.mktemp("regulator")
    tenant = gateway.call("POST", "/ops/v1/tenants", body={
        "legal_name": "Acme Bank Ltd", "registration_number": "RC-1", "tax_id": "NTN-1",
        "country": "PK", "contact_email": "it@acme.example"})
    gateway.call("POST", f"/ops/v1/tenants/{tenant['id']}/verification",
                 body={"evidence_reference": "KYC-1"})
    tenant_token = gateway.call("POST", f"/ops/v1/tenants/{tenant['id']}/tokens")["token"]
    peer = gateway.call("POST", "/v1/peers", tenant_token, {"name": "laptop"})

    made = json.loads(regulator("keygen", "--out", str(work / "keys"), "--keyid", "pta-cli-1",
                                "--json").stdout)
    registration = json.loads((work / "keys/regulator.json").read_text())
    gateway.call("POST", "/ops/v1/regulator-keys", body=registration)
    pins = work / "pins.json"
    regulator("keys", "--url", gateway.url, "--save", str(pins))
    pinned = json.loads(pins.read_text())
    return Setup(gateway, work, made["keyid"], made, pins, pinned["log"]["vkey"],
                 pinned["response"]["public_key"], peer, tenant)


def test_keygen_writes_a_private_key_only_its_owner_can_read(setup: Setup,
                                                             tmp_path: Path) -> None:
    made = setup.keygen
    assert made["keyid"] == "pta-cli-1"
    assert len(base64.b64decode(made["public_key"])) == 32
    assert Path(made["private_key_file"]).stat().st_mode & 0o777 == 0o600
    assert Path(made["public_key_file"]).read_text().strip() == made["public_key"]
    table = regulator("keygen", "--out", str(tmp_path / "k")).stdout
    assert "keyid:" in table and "reg-" in table and "/ops/v1/regulator-keys" in table
    again = regulator("keygen", "--out", str(tmp_path / "k"), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = regulator("keygen", "--out", str(tmp_path / "k2"), "--keyid", 'a"b', check=False)
    assert bad.returncode == 2 and "keyid" in bad.stderr


def test_query_prints_verified_records_and_keeps_the_log_consistent(setup: Setup) -> None:
    state = setup.dir / "query-state.json"
    saved = setup.dir / "answer.json"
    first = regulator(*setup.query_args(state, "--pin-keys", str(setup.pins),
                                        "--save", str(saved)))
    out = first.stdout
    assert "peer.provisioned" in out and setup.peer["id"] in out and "tenant.created" in out
    assert f"tunnel_ips={setup.peer['tunnel_ips'][0]}" in out
    for check in ("response-signature", "checkpoint-signature", "inclusion", "leaves",
                  "consistency"):
        assert check in out
    assert "FAILED" not in out and "trust on first use" in out
    assert saved.exists() and state.exists()
    stored = json.loads(state.read_text())["logs"][setup.vkey]

    second = regulator(*setup.query_args(state, "--vkey", setup.vkey, "--response-key",
                                         setup.response_key, "--json"))
    doc = json.loads(second.stdout)
    assert doc["ok"] is True and doc["error"] is None
    assert [r["event"]["type"] for r in doc["records"]] == ["tenant.created", "peer.provisioned"]
    checks = {c["check"]: c for c in doc["checks"]}
    assert all(c["ok"] for c in checks.values())
    assert "append-only" in checks["consistency"]["detail"]
    assert doc["checkpoint"]["size"] > stored["size"]
    assert json.loads(state.read_text())["logs"][setup.vkey]["size"] == doc["checkpoint"]["size"]

    # A query file is sent byte for byte: its SHA-256 is the digest the gateway logs.
    query_file = setup.dir / "query.json"
    valid_from, valid_until = setup.window()
    query_file.write_text(json.dumps({
        "request_id": {"country": "PK", "authority": "PTA", "number": "2026-000124"},
        "authorisation": {"reference": "PTA/LI/2026/0042", "legal_basis": "PECA 2016 s.32",
                          "valid_from": valid_from, "valid_until": valid_until},
        "query": {"kind": "activity.tenant", "tenant_id": setup.tenant["id"],
                  "from": valid_from, "to": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "max_hits": 3}, indent=2))
    from_file = json.loads(regulator(
        "query", "--url", setup.gw.url, "--key", str(setup.dir / "keys/regulator.key"),
        "--keyid", setup.keyid, "--pin-keys", str(setup.pins), "--state", str(state),
        "--file", str(query_file), "--json").stdout)
    assert from_file["body_sha256"] == hashlib.sha256(query_file.read_bytes()).hexdigest()
    assert from_file["ok"] and from_file["truncated"] is True and len(from_file["records"]) == 3
    assert {r["event"]["tenant_id"] for r in from_file["records"]} == {setup.tenant["id"]}


def _saved(setup: Setup) -> dict[str, Any]:
    path = setup.dir / "answer.json"
    if not path.exists():
        regulator(*setup.query_args(setup.dir / "saved-state.json", "--pin-keys",
                                    str(setup.pins), "--save", str(path)))
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _with_answer(saved: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = json.loads(json.dumps(saved))
    answer = json.loads(base64.b64decode(doc["response"]["body"]))
    change(answer)
    doc["response"]["body"] = base64.b64encode(
        json.dumps(answer, separators=(",", ":")).encode()).decode()
    return doc


def _flip_proof_byte(answer: dict[str, Any]) -> None:
    record = next(r for r in answer["records"] if r["inclusion_proof"])
    raw = bytearray(base64.b64decode(record["inclusion_proof"][0]))
    raw[-1] ^= 0x01
    record["inclusion_proof"][0] = base64.b64encode(raw).decode()


def test_saved_answer_verifies_offline_and_names_every_tampering(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = _saved(setup)
    pins = ["--vkey", setup.vkey, "--response-key", setup.response_key]
    ok = regulator("verify", str(setup.dir / "answer.json"), *pins)
    assert "peer.provisioned" in ok.stdout and "FAILED" not in ok.stdout

    gw = setup.gw
    later = urllib.request.urlopen(gw.url + "/regulator/v1/checkpoint").read().decode()  # noqa: S310
    other_signer = Ed25519NoteSigner(Ed25519NoteVerifier.from_vkey(setup.vkey).name,
                                     Ed25519PrivateKey.generate())
    forged = Checkpoint(other_signer.name, 5, b"\x01" * 32).sign(other_signer)
    cases: list[tuple[str, dict[str, Any], list[str], set[str]]] = [
        ("proof byte", _with_answer(saved, _flip_proof_byte), pins,
         {"response-signature", "inclusion"}),
        ("event field", _with_answer(saved, lambda a: a["records"][-1]["event"].update(
            peer_id="01a22ad1-0000-7000-8000-000000000000")), pins,
         {"response-signature", "leaves"}),
        ("later checkpoint", _with_answer(saved, lambda a: a.update(checkpoint=later)), pins,
         {"response-signature", "inclusion"}),
        ("forged checkpoint", _with_answer(saved, lambda a: a.update(checkpoint=forged)), pins,
         {"response-signature", "checkpoint-signature", "inclusion"}),
        ("other response key", saved,
         ["--vkey", setup.vkey, "--response-key",
          public_key_b64(Ed25519PrivateKey.generate())], {"response-signature"}),
        ("other log key", saved, ["--vkey", other_signer.vkey(), "--response-key",
                                  setup.response_key],
         {"checkpoint-signature", "inclusion"}),
    ]
    for name, doc, flags, expected in cases:
        path = tmp_path / "tampered.json"
        path.write_text(json.dumps(doc))
        assert main(["verify", str(path), *flags, "--json"]) == 1, name
        out, err = capsys.readouterr()
        result = json.loads(out)
        assert result["ok"] is False
        assert {c["check"] for c in result["checks"] if not c["ok"]} == expected, name
        assert err.startswith("vpngw-regulator: FAILED: ") and err.count("\n") == 1, err
        assert all(check in err for check in expected), err

    # The subprocess says the same in one line, with exit status 1.
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(_with_answer(saved, _flip_proof_byte)))
    bad = regulator("verify", str(path), *pins, check=False)
    assert bad.returncode == 1 and "inclusion" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    path.write_text("{}")
    unreadable = regulator("verify", str(path), *pins, check=False)
    assert unreadable.returncode == 2 and "not a saved answer" in unreadable.stderr


IDENTITY_KEY = bytes([1]) + bytes(31)
FORGED = bytes([1]) + bytes(63)  # R = identity, S = 0: no private key involved


def _forge(saved: dict[str, Any], log_name: str) -> dict[str, Any]:
    """The saved answer re-"signed" by nobody: forged checkpoint and response signatures."""
    line = f"— {log_name} " + base64.b64encode(key_id(log_name, IDENTITY_KEY) + FORGED).decode()

    def forge_checkpoint(answer: dict[str, Any]) -> None:
        body = answer["checkpoint"].split("\n\n")[0]
        answer["checkpoint"] = f"{body}\n\n{line}\n"

    doc = _with_answer(saved, forge_checkpoint)
    forged_signature = "gw=:" + base64.b64encode(FORGED).decode() + ":"
    doc["response"]["headers"] = [
        [name, forged_signature if name.lower() == "signature" else value]
        for name, value in doc["response"]["headers"]
    ]
    return doc


@pytest.mark.parametrize("key", [IDENTITY_KEY, bytes(32)], ids=["identity", "zero"])
def test_verify_refuses_degenerate_pins_under_which_a_forged_answer_would_pass(
    setup: Setup, tmp_path: Path, key: bytes
) -> None:
    name = Ed25519NoteVerifier.from_vkey(setup.vkey).name
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(_forge(_saved(setup), name)))
    degenerate = base64.b64encode(key).decode()
    vkey = f"{name}+{key_id(name, key).hex()}+" + base64.b64encode(b"\x01" + key).decode()
    for flags in (["--vkey", setup.vkey, "--response-key", degenerate],
                  ["--vkey", vkey, "--response-key", setup.response_key]):
        refused = regulator("verify", str(path), *flags, check=False)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "small order" in refused.stderr, refused.stderr
    pin_file = tmp_path / "pins.json"
    pin_file.write_text(json.dumps({"log": {"origin": name, "vkey": vkey},
                                    "response": {"keyid": None, "public_key": degenerate}}))
    refused = regulator("verify", str(path), "--pin-keys", str(pin_file), check=False)
    assert refused.returncode == 2 and "small order" in refused.stderr, refused.stderr
    checkpoint = regulator("checkpoint", "--url", setup.gw.url, "--vkey", vkey,
                           "--state", str(tmp_path / "state.json"), check=False)
    assert checkpoint.returncode == 2 and "small order" in checkpoint.stderr


def _log_signer(setup: Setup) -> Ed25519NoteSigner:
    raw = base64.b64decode((setup.gw.data_dir / LOG_KEY).read_text())
    name = Ed25519NoteVerifier.from_vkey(setup.vkey).name
    return Ed25519NoteSigner(name, Ed25519PrivateKey.from_private_bytes(raw))


def _store(state: Path, note: str, setup: Setup) -> None:
    verifier = Ed25519NoteVerifier.from_vkey(setup.vkey)
    state.unlink(missing_ok=True)
    StateFile(state).store(verifier, open_checkpoint(note, verifier), url=setup.gw.url)


def test_checkpoint_state_catches_a_shrunk_forked_or_forged_log(setup: Setup) -> None:
    state = setup.dir / "checkpoint-state.json"
    cmd = ["checkpoint", "--url", setup.gw.url, "--vkey", setup.vkey, "--state", str(state)]
    first = regulator(*cmd)
    assert "trust on first use" in first.stdout and "(updated)" in first.stdout
    doc = json.loads(regulator(*cmd, "--json").stdout)
    assert doc["ok"] and doc["previous"]["size"] <= doc["checkpoint"]["size"]
    size = doc["checkpoint"]["size"]
    signer = _log_signer(setup)  # the provider's own key, signing a split view

    # The provider once showed us a bigger tree: now the log looks shrunk.
    _store(state, Checkpoint(signer.name, size + 1000, b"\x02" * 32).sign(signer), setup)
    shrunk = regulator(*cmd, check=False)
    assert shrunk.returncode == 1 and "shrank" in shrunk.stderr
    assert "FAILED" in shrunk.stdout and "(unchanged)" in shrunk.stdout
    before = state.read_text()
    query = regulator(*setup.query_args(state, "--pin-keys", str(setup.pins)), check=False)
    assert query.returncode == 1 and "consistency" in query.stderr and "shrank" in query.stderr
    assert state.read_text() == before  # a failed check never moves the state forward

    # A smaller tree with a root the real history never had: no consistency proof fits.
    _store(state, Checkpoint(signer.name, 3, b"\x03" * 32).sign(signer), setup)
    forked = json.loads(regulator(*cmd, "--json", check=False).stdout)
    assert not forked["ok"] and "append-only" in forked["error"]

    # The state itself was tampered with: re-signed by someone else, or edited.
    other = Ed25519NoteSigner(signer.name, Ed25519PrivateKey.generate())
    note = Checkpoint(signer.name, size, b"\x04" * 32).sign(other)
    doc = json.loads(state.read_text())
    doc["logs"][setup.vkey]["checkpoint"] = note
    state.write_text(json.dumps(doc))
    forged = regulator(*cmd, check=False)
    assert forged.returncode == 1 and "state" in forged.stderr
    assert "does not verify" in forged.stderr
    _store(state, Checkpoint(signer.name, 3, b"\x03" * 32).sign(signer), setup)
    doc = json.loads(state.read_text())
    doc["logs"][setup.vkey]["size"] = 2
    state.write_text(json.dumps(doc))
    edited = regulator(*cmd, check=False)
    assert edited.returncode == 1 and "altered" in edited.stderr


def test_refusals_and_usage_errors_exit_non_zero_with_one_line(setup: Setup) -> None:
    state = setup.dir / "refusal-state.json"
    args = setup.query_args(state, "--pin-keys", str(setup.pins))
    unknown = regulator(*[("not-registered" if a == setup.keyid else a) for a in args],
                        check=False)
    assert unknown.returncode == 3 and "keyid" in unknown.stderr and "401" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    out_of_scope = list(args)
    i = out_of_scope.index("--at")
    out_of_scope[i + 1] = "2020-01-01T00:00:00Z"
    refused = regulator(*out_of_scope, "--json", check=False)
    assert refused.returncode == 3 and "out-of-scope" in refused.stderr
    assert json.loads(refused.stdout)["status"] == 403
    no_pins = [a for a in args if a not in ("--pin-keys", str(setup.pins))]
    missing = regulator(*no_pins, check=False)
    assert missing.returncode == 2 and "--vkey" in missing.stderr
    wrong_kind = regulator(*args, "--port", "51820", check=False)
    assert wrong_kind.returncode == 2 and "--port" in wrong_kind.stderr
    bad_ip = [("10.70.0.300" if a == setup.peer["tunnel_ips"][0] else a) for a in args]
    invalid = regulator(*bad_ip, check=False)
    assert invalid.returncode == 2 and "query.ip" in invalid.stderr
    down = regulator("keys", "--url", f"http://127.0.0.1:{free_port()}", check=False)
    assert down.returncode == 3 and "cannot reach" in down.stderr
    assert not state.exists()
