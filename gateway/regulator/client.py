"""The regulator's side of the wire: HTTP calls to the gateway, the state file, key files.

Everything here does I/O; the checks themselves are pure and live in
:mod:`gateway.regulator.answer`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import ssl
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yarl
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from gateway.audit.note import Ed25519NoteVerifier, NoteError
from gateway.regulator import httpsig
from gateway.regulator.answer import (
    AnswerFormatError,
    Check,
    Exchange,
    Pins,
    TreeHead,
    check_consistency_proof,
    open_checkpoint,
    plan_consistency,
)

__all__ = [
    "DEFAULT_STATE",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "REGISTRATION_FILE",
    "ClientError",
    "GatewayClient",
    "KeyPairFiles",
    "RefusedError",
    "StateError",
    "StateFile",
    "authority_of",
    "base_url",
    "check_consistency",
    "load_log_key",
    "load_pins",
    "load_private_key",
    "public_key_b64",
    "read_json_file",
    "write_json_file",
    "write_key_pair",
]

DEFAULT_STATE = Path("~/.vpngw-regulator/state.json")
PRIVATE_KEY_FILE = "regulator.key"
PUBLIC_KEY_FILE = "regulator.pub"
REGISTRATION_FILE = "regulator.json"
STATE_VERSION = 1
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class ClientError(Exception):
    """A network, HTTP or file problem; ``str()`` is one line that says what to do."""


class RefusedError(ClientError):
    """The gateway answered with an error (usually RFC 9457 problem+json)."""

    def __init__(self, status: int, problem: dict[str, Any] | None, text: str) -> None:
        self.status = status
        self.problem = problem
        if problem is not None:
            code = str(problem.get("type", "")).rsplit(":", 1)[-1] or "error"
            message = f"gateway refused ({status} {code}): {problem.get('detail', '')}"
        else:
            message = f"gateway answered HTTP {status}: {text[:200].strip()}"
        super().__init__(" ".join(message.split()))

    @property
    def check(self) -> str | None:
        value = (self.problem or {}).get("check")
        return value if isinstance(value, str) else None


class StateError(ClientError):
    """The state file cannot be read or does not verify."""


# --------------------------------------------------------------------------- files


def read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ClientError(f"{what} {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {what} {path}: {exc}") from exc
    except ValueError as exc:
        raise ClientError(f"{what} {path} is not valid JSON: {exc}") from exc


def write_json_file(path: Path, doc: Any, *, mode: int = 0o600) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a file."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- key files


@dataclass(frozen=True)
class KeyPairFiles:
    keyid: str
    public_key: str  # base64 of the 32 raw bytes
    private_path: Path
    public_path: Path
    registration_path: Path


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def write_key_pair(out_dir: Path, keyid: str | None = None) -> KeyPairFiles:
    """Create an Ed25519 key pair in ``out_dir``; never overwrites an existing key.

    ``regulator.key`` (PKCS#8 PEM, mode 0600), ``regulator.pub`` (base64 of the raw
    public key) and ``regulator.json`` (the body ops POST to /ops/v1/regulator-keys).
    """
    out_dir = out_dir.expanduser()
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    public = public_key_b64(key)
    if keyid is None:
        raw = base64.b64decode(public)
        keyid = f"reg-{hashlib.sha256(raw).hexdigest()[:12]}"
    private_path = out_dir / PRIVATE_KEY_FILE
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ClientError(f"{private_path} already exists; keygen never replaces a key "
                          "(choose another --out directory)") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path = out_dir / PUBLIC_KEY_FILE
    public_path.write_text(public + "\n", encoding="ascii")
    registration_path = out_dir / REGISTRATION_FILE
    write_json_file(registration_path,
                    {"keyid": keyid, "public_key": public, "label": f"regulator key {keyid}"},
                    mode=0o644)
    return KeyPairFiles(keyid, public, private_path, public_path, registration_path)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PKCS#8 PEM Ed25519 private key; refuse one readable by group or others."""
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ClientError(f"{path} must not be accessible by group or others "
                              f"(chmod 600 {path})")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ClientError(f"private key {path} does not exist (create one with keygen)") from exc
    except OSError as exc:
        raise ClientError(f"cannot read private key {path}: {exc}") from exc
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ClientError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ClientError(f"{path} is not an Ed25519 private key")
    return key


# --------------------------------------------------------------------------- URLs


def base_url(text: str) -> yarl.URL:
    """The gateway's base URL (scheme, host, port only)."""
    try:
        url = yarl.URL(text.strip())
    except (ValueError, TypeError) as exc:
        raise ClientError(f"--url {text!r} is not a URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ClientError(f"--url {text!r} must be http(s)://HOST[:PORT]")
    if url.raw_user or url.raw_password:
        raise ClientError("--url must not contain credentials")
    if url.raw_path not in ("", "/") or url.raw_query_string or url.raw_fragment:
        raise ClientError(f"--url {text!r} must have no path, query or fragment "
                          "(e.g. https://gateway.example.net)")
    return url.with_path("").with_query(None).with_fragment(None)


def authority_of(url: yarl.URL) -> str:
    """What the request's Host header carries: host[:port] (default port omitted)."""
    hostport = url.host_port_subcomponent
    if not hostport:
        raise ClientError(f"{url} has no host")
    return hostport


def _endpoint(base: yarl.URL, path: str, query: str = "") -> yarl.URL:
    origin = f"{base.scheme}://{authority_of(base)}"
    return yarl.URL(origin + path + (f"?{query}" if query else ""), encoded=True)


# --------------------------------------------------------------------------- HTTP


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GatewayClient:
    """``async with GatewayClient(url) as gw:`` — one HTTP session to one gateway."""

    def __init__(self, base: yarl.URL, *, timeout: float = 30.0, cafile: str | None = None) -> None:
        self.base = base
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl: ssl.SSLContext | bool = True
        if cafile:
            try:
                self._ssl = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ClientError(f"cannot load CA file {cafile}: {exc}") from exc
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GatewayClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use GatewayClient in `async with`")
        return self._session

    async def _request(
        self, method: str, url: yarl.URL, *, data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        try:
            async with self.session.request(method, url, data=data, headers=headers,
                                            ssl=self._ssl, allow_redirects=False) as resp:
                # StreamReader.read(n) returns what has arrived so far, not n bytes: read
                # to the end, chunk by chunk, with a cap.
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise ClientError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
                    chunks.append(chunk)
                body = b"".join(chunks)
                return resp.status, tuple((str(k), v) for k, v in resp.headers.items()), body
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            detail = str(exc) or exc.__class__.__name__
            raise ClientError(f"cannot reach {url}: {detail}") from exc

    @staticmethod
    def _refused(status: int, body: bytes) -> RefusedError:
        text = body.decode("utf-8", "replace")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        return RefusedError(status, doc if isinstance(doc, dict) else None, text)

    async def _get(self, path: str, query: str = "") -> bytes:
        url = _endpoint(self.base, path, query)
        status, _, body = await self._request("GET", url)
        if status != 200:
            raise self._refused(status, body)
        return body

    async def keys(self) -> dict[str, Any]:
        body = await self._get("/regulator/v1/keys")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ClientError("/regulator/v1/keys did not answer JSON") from exc
        if not isinstance(doc, dict):
            raise ClientError("/regulator/v1/keys did not answer a JSON object")
        return doc

    async def checkpoint(self) -> str:
        body = await self._get("/regulator/v1/checkpoint")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClientError("/regulator/v1/checkpoint is not UTF-8 text") from exc

    async def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        body = await self._get("/regulator/v1/proofs/consistency",
                               f"from={old_size}&to={new_size}")
        try:
            doc = json.loads(body)
            if not isinstance(doc, list):
                raise ValueError("not a list")
            return [base64.b64decode(h, validate=True) for h in doc]
        except (ValueError, TypeError) as exc:
            raise ClientError("the consistency proof is not a JSON list of base64 hashes") from exc

    async def query(
        self, body: bytes, *, private_key: Ed25519PrivateKey, keyid: str,
        created: int, nonce: str | None = None,
    ) -> Exchange:
        """Sign and send one query; return the exchange (verify it with answer.verify_exchange).

        A non-200 answer raises RefusedError.
        """
        url = _endpoint(self.base, httpsig.REQUEST_PATH)
        try:
            signed = httpsig.sign_request(
                private_key=private_key, keyid=keyid, authority=authority_of(self.base),
                body=body, created=created, nonce=nonce or secrets.token_urlsafe(16),
                scheme=self.base.scheme,
            )
        except (ValueError, httpsig.SignatureError) as exc:
            raise ClientError(f"cannot sign the request: {exc}") from exc
        headers = signed.headers()
        status, response_headers, response_body = await self._request(
            "POST", url, data=body, headers=headers)
        if status != 200:
            raise self._refused(status, response_body)
        return Exchange(
            url=str(url), request_headers=tuple(headers.items()), request_body=body,
            status=status, response_headers=response_headers, response_body=response_body,
            received_at=_utc_now(),
        )


# --------------------------------------------------------------------------- state


class StateFile:
    """The last checkpoint accepted per log (keyed by the log's vkey), in a JSON file.

    ``{"version": 1, "logs": {"<vkey>": {"origin", "size", "root", "checkpoint",
    "url", "updated_at"}}}``.  The stored note is re-verified on every load, and its
    size/root must match the readable fields, so an edited or forged state is caught.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"version": STATE_VERSION, "logs": {}}
        try:
            doc = read_json_file(self.path, "state file")
        except ClientError as exc:
            raise StateError(str(exc)) from exc
        if (not isinstance(doc, dict) or doc.get("version") != STATE_VERSION
                or not isinstance(doc.get("logs"), dict)):
            raise StateError(f"state file {self.path} is not a vpngw-regulator state "
                             f"(version {STATE_VERSION}); move it away to start afresh")
        return doc

    def load(self, log: Ed25519NoteVerifier) -> TreeHead | None:
        entry = self._read()["logs"].get(log.vkey())
        if entry is None:
            return None
        where = f"state file {self.path}"
        if not isinstance(entry, dict) or not isinstance(entry.get("checkpoint"), str):
            raise StateError(f"{where}: the entry for {log.name} has no checkpoint")
        try:
            head = open_checkpoint(entry["checkpoint"], log)
        except NoteError as exc:
            raise StateError(f"{where}: the stored checkpoint does not verify with the pinned "
                             f"log key ({exc}); the state was altered") from exc
        root = base64.b64encode(head.root).decode("ascii")
        if entry.get("size") != head.size or entry.get("root") != root:
            raise StateError(f"{where}: size/root ({entry.get('size')}, {entry.get('root')}) "
                             f"differ from its signed checkpoint ({head.size}, {root}); "
                             "the state was altered")
        return head

    def store(self, log: Ed25519NoteVerifier, head: TreeHead, *, url: str) -> None:
        doc = self._read()
        doc["logs"][log.vkey()] = {
            **head.summary(), "root": base64.b64encode(head.root).decode("ascii"),
            "checkpoint": head.note, "url": url, "updated_at": _utc_now(),
        }
        write_json_file(self.path, doc)


async def check_consistency(gw: GatewayClient, old: TreeHead | None, new: TreeHead) -> Check:
    """Compare a verified checkpoint with the stored one, fetching a proof if needed."""
    decided = plan_consistency(old, new)
    if decided is not None:
        return decided
    assert old is not None
    try:
        proof = await gw.consistency(old.size, new.size)
    except ClientError as exc:
        return Check("consistency", False,
                     f"no consistency proof from size {old.size} to {new.size}: {exc}")
    return check_consistency_proof(old, new, proof)


def load_pins(
    *, pin_file: Path | None, vkey: str | None, response_key: str | None
) -> Pins:
    """Pinned keys from flags, a pin file (saved by ``keys --save``), or both (flags win)."""
    doc: dict[str, Any] = {}
    if pin_file is not None:
        loaded = read_json_file(pin_file.expanduser(), "pin file")
        try:
            Pins.from_keys_document(loaded)
        except AnswerFormatError as exc:
            raise ClientError(f"pin file {pin_file}: {exc}") from exc
        doc = loaded
    log_vkey = vkey or (doc.get("log") or {}).get("vkey")
    key = response_key or (doc.get("response") or {}).get("public_key")
    keyid = (doc.get("response") or {}).get("keyid") if not response_key else None
    if not log_vkey or not key:
        raise ClientError("pin the provider keys: give --vkey and --response-key, or "
                          "--pin-keys FILE saved by `vpngw-regulator keys --save FILE`")
    try:
        return Pins.from_strings(log_vkey, key, keyid)
    except AnswerFormatError as exc:
        raise ClientError(str(exc)) from exc


def load_log_key(*, pin_file: Path | None, vkey: str | None) -> Ed25519NoteVerifier:
    """Only the pinned log key (checkpoints need no response key)."""
    if vkey is None and pin_file is not None:
        loaded = read_json_file(pin_file.expanduser(), "pin file")
        try:
            return Pins.from_keys_document(loaded).log
        except AnswerFormatError as exc:
            raise ClientError(f"pin file {pin_file}: {exc}") from exc
    if not vkey:
        raise ClientError("pin the log key: give --vkey or --pin-keys FILE saved by "
                          "`vpngw-regulator keys --save FILE`")
    try:
        return Ed25519NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        raise ClientError(f"--vkey: {exc}") from exc
