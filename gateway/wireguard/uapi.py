"""WireGuard cross-platform UAPI: text protocol parse/serialise and a unix-socket client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.wireguard.backend import (
    BackendError,
    BackendUnavailable,
    Endpoint,
    PeerChanges,
    PeerSpec,
    PeerState,
)
from gateway.wireguard.keys import ZERO_KEY, from_hex, preshared_key_digest, to_hex

DEFAULT_SOCKET_DIR = Path("/var/run/wireguard")
GET_REQUEST = "get=1\n\n"


class UapiProtocolError(BackendError):
    """The daemon's answer does not follow the UAPI grammar."""

    status = 502
    code = "uapi-protocol"
    title = "WireGuard daemon answer malformed"


class UapiError(BackendError):
    """The daemon answered with a nonzero errno."""

    status = 503  # most errnos (busy, no memory, interface going away) pass
    code = "uapi-errno"
    title = "WireGuard daemon refused the change"

    def __init__(self, errno: int) -> None:
        # wireguard-go reports negative errnos (-22); the spec says positive. Accept both.
        self.errno = abs(errno)
        super().__init__(f"UAPI errno={self.errno} ({os.strerror(self.errno)})")


@dataclass(frozen=True)
class UapiDevice:
    """A parsed `get=1` answer."""

    private_key: bytes | None = field(repr=False)
    listen_port: int | None
    fwmark: int | None
    peers: tuple[PeerState, ...]


_DEVICE_KEYS = frozenset({"private_key", "listen_port", "fwmark"})


def _int(key: str, value: str) -> int:
    if not value.isdigit():
        raise UapiProtocolError(f"{key}={value!r} is not a non-negative integer")
    return int(value)


def _key(key: str, value: str) -> bytes:
    try:
        return from_hex(value)
    except ValueError as exc:
        raise UapiProtocolError(f"{key} is not a 64-digit hex key") from exc


class _PeerBuilder:
    """Collects one peer's lines; only lives inside `parse_get_response`."""

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.psk_digest: bytes | None = None
        self.endpoint: Endpoint | None = None
        self.handshake_sec = 0
        self.handshake_nsec = 0
        self.rx = 0
        self.tx = 0
        self.keepalive: int | None = None
        self.allowed_ips: list[str] = []

    def take(self, key: str, value: str) -> None:
        match key:
            case "preshared_key":
                psk = _key(key, value)
                self.psk_digest = None if psk == ZERO_KEY else preshared_key_digest(psk)
            case "endpoint":
                try:
                    self.endpoint = Endpoint.parse(value)
                except ValueError as exc:
                    raise UapiProtocolError(str(exc)) from exc
            case "last_handshake_time_sec":
                self.handshake_sec = _int(key, value)
            case "last_handshake_time_nsec":
                self.handshake_nsec = _int(key, value)
            case "rx_bytes":
                self.rx = _int(key, value)
            case "tx_bytes":
                self.tx = _int(key, value)
            case "persistent_keepalive_interval":
                self.keepalive = _int(key, value) or None
            case "allowed_ip":
                self.allowed_ips.append(value)
            case _:
                # protocol_version and keys newer than this client: nothing to keep.
                pass

    def build(self) -> PeerState:
        handshake = None
        if self.handshake_sec or self.handshake_nsec:
            handshake = datetime.fromtimestamp(self.handshake_sec, UTC) + timedelta(
                microseconds=self.handshake_nsec // 1000
            )
        try:
            return PeerState(
                public_key=self.public_key,
                allowed_ips=tuple(self.allowed_ips),
                preshared_key_digest=self.psk_digest,
                endpoint=self.endpoint,
                latest_handshake=handshake,
                rx_bytes=self.rx,
                tx_bytes=self.tx,
                persistent_keepalive=self.keepalive,
            )
        except ValueError as exc:
            raise UapiProtocolError(f"bad peer in UAPI answer: {exc}") from exc


def _pairs(text: str) -> list[tuple[str, str]]:
    """Split an answer into key/value pairs, checking the errno trailer."""
    if not text.endswith("\n\n"):
        raise UapiProtocolError("answer is not terminated by an empty line")
    pairs: list[tuple[str, str]] = []
    for line in text[:-2].split("\n"):
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise UapiProtocolError(f"malformed UAPI line {line!r}")
        pairs.append((key, value))
    if not pairs or pairs[-1][0] != "errno":
        raise UapiProtocolError("answer does not end with errno=")
    errno_text = pairs[-1][1]
    try:
        errno = int(errno_text)
    except ValueError as exc:
        raise UapiProtocolError(f"errno={errno_text!r} is not an integer") from exc
    if errno != 0:
        raise UapiError(errno)
    return pairs[:-1]


def _parse_get_lines(text: str) -> UapiDevice:
    """The reference parser, line by line: authoritative for every error."""
    private_key: bytes | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    peers: list[PeerState] = []
    current: _PeerBuilder | None = None
    for key, value in _pairs(text):
        if key == "public_key":
            if current is not None:
                peers.append(current.build())
            current = _PeerBuilder(_key(key, value))
        elif current is not None:
            if key in _DEVICE_KEYS:
                raise UapiProtocolError(f"device key {key!r} after the first peer")
            current.take(key, value)
        elif key == "private_key":
            private_key = _key(key, value)
        elif key == "listen_port":
            listen_port = _int(key, value) or None
        elif key == "fwmark":
            fwmark = _int(key, value) or None
        else:
            raise UapiProtocolError(f"peer key {key!r} before any public_key")
    if current is not None:
        peers.append(current.build())
    return UapiDevice(private_key, listen_port, fwmark, tuple(peers))


_PEER_START = "\npublic_key="


def _parse_peer_block(block: str) -> PeerState:
    """One peer: its public key's hex, then its `key=value` lines (no trailing newline)."""
    lines = block.split("\n")
    builder = _PeerBuilder(_key("public_key", lines[0]))
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if not sep or not key or key in _DEVICE_KEYS:
            raise UapiProtocolError(f"bad line {line!r} in a peer")
        builder.take(key, value)
    return builder.build()


class GetParser:
    """Parses `get=1` answers, reusing the `PeerState` of every peer whose lines are
    verbatim those of the previous answer (idle peers: most of a large interface).

    The answer is cut into peer blocks at each `public_key=` line; a block not seen last
    time is parsed as the reference parser would. On anything unexpected (an error, a
    nonzero errno) the reference parser runs on the whole answer and has the last word,
    so results and errors are exactly those of a line-by-line parse.
    """

    __slots__ = ("_blocks",)

    def __init__(self) -> None:
        # Block text -> its state; holds the last answer only (it may contain PSK hex,
        # like the daemon's answer itself; never logged, never in a repr).
        self._blocks: dict[str, PeerState] = {}

    def __repr__(self) -> str:
        return f"<GetParser {len(self._blocks)} peer blocks remembered>"

    def parse(self, text: str) -> UapiDevice:
        try:
            device, blocks = self._parse_blocks(text)
        except Exception:
            # Whatever went wrong (a bad line, an errno, a handshake time out of range),
            # the line-by-line parser decides: it raises the error it would always have
            # raised, which need not be the first one met block by block.
            return _parse_get_lines(text)
        self._blocks = blocks
        return device

    def _parse_blocks(self, text: str) -> tuple[UapiDevice, dict[str, PeerState]]:
        # Slices, not copies, of a multi-megabyte answer: only the last block is cut.
        if not text.endswith("\n\n"):
            raise UapiProtocolError("answer is not terminated by an empty line")
        cut = text.rfind("\n", 0, len(text) - 2)  # the newline ending the line before errno
        key, eq, errno_text = text[cut + 1 : -2].partition("=")
        if key != "errno" or not eq or int(errno_text) != 0:
            raise UapiProtocolError("no errno=0 trailer")
        if cut < 0:  # errno was the only line
            return UapiDevice(None, None, None, ()), {}
        parts = text.split(_PEER_START)
        parts[-1] = parts[-1][: cut - len(text)]  # drop "\nerrno=0\n\n"
        if parts[0].startswith("public_key="):  # no device lines: the first line is a peer's
            parts[0] = parts[0][len("public_key=") :]
            device_lines: list[str] = []
            blocks = parts
        else:
            device_lines = parts[0].split("\n")
            blocks = parts[1:]
        private_key: bytes | None = None
        listen_port: int | None = None
        fwmark: int | None = None
        for line in device_lines:
            key, eq, value = line.partition("=")
            if key == "private_key" and eq:
                private_key = _key(key, value)
            elif key == "listen_port" and eq:
                listen_port = _int(key, value) or None
            elif key == "fwmark" and eq:
                fwmark = _int(key, value) or None
            else:
                raise UapiProtocolError(f"unexpected device line {line!r}")
        # A PeerState is always true, so `or` parses exactly the blocks not seen last time.
        known = self._blocks.get
        peers = tuple([known(block) or _parse_peer_block(block) for block in blocks])
        return UapiDevice(private_key, listen_port, fwmark, peers), dict(
            zip(blocks, peers, strict=True)
        )


def parse_get_response(text: str) -> UapiDevice:
    """Parse the answer to `get=1`; raise `UapiError` for errno != 0."""
    return GetParser().parse(text)


def parse_set_response(text: str) -> None:
    """Check the answer to `set=1`; raise `UapiError` for errno != 0."""
    if rest := _pairs(text):
        raise UapiProtocolError(f"unexpected {rest[0][0]!r} in a set answer")


def _request(lines: Iterable[str]) -> str:
    return "set=1\n" + "".join(f"{line}\n" for line in lines) + "\n"


def render_device_set(
    *, private_key: bytes | None = None, listen_port: int | None = None, fwmark: int | None = None
) -> str:
    """A `set=1` request for interface-level settings; None leaves a setting alone."""
    lines = []
    if private_key is not None:
        lines.append(f"private_key={to_hex(private_key)}")
    if listen_port is not None:
        lines.append(f"listen_port={listen_port}")
    if fwmark is not None:
        lines.append(f"fwmark={fwmark}")
    return _request(lines)


def _peer_config(spec: PeerSpec) -> str:
    # Zero key and zero interval clear a PSK / keepalive that should not be there.
    psk = (spec.preshared_key or ZERO_KEY).hex()  # PeerSpec checked its keys already
    ips = "".join([f"allowed_ip={net}\n" for net in spec.allowed_ips])
    return (
        f"preshared_key={psk}\n"
        f"persistent_keepalive_interval={spec.persistent_keepalive or 0}\n"
        f"replace_allowed_ips=true\n{ips}"
    )


def render_peer_changes(changes: PeerChanges) -> str:
    """One `set=1` request carrying every removal, update and add."""
    # Built in one pass: at 10,000 peers this request is ~1.3 MB.
    out = ["set=1\n"]
    for key in changes.removals:
        out.append(f"public_key={to_hex(key)}\nremove=true\n")
    for spec in changes.updates:
        # update_only: if the peer vanished meanwhile, do not resurrect a half-configured one.
        out.append(f"public_key={spec.public_key.hex()}\nupdate_only=true\n{_peer_config(spec)}")
    for spec in changes.adds:
        out.append(f"public_key={spec.public_key.hex()}\n{_peer_config(spec)}")
    out.append("\n")
    return "".join(out)


class UapiClient:
    """Talks UAPI to one interface's daemon, one connection per request."""

    def __init__(
        self, *, interface: str, socket_dir: Path = DEFAULT_SOCKET_DIR, timeout: float = 10.0
    ) -> None:
        self._path = socket_dir / f"{interface}.sock"
        self._timeout = timeout
        self._parser = GetParser()

    @property
    def socket_path(self) -> Path:
        return self._path

    async def get(self) -> UapiDevice:
        return self._parser.parse(await self._exchange(GET_REQUEST))

    async def set(self, request: str) -> None:
        parse_set_response(await self._exchange(request))

    async def alive(self) -> bool:
        """Whether something accepts connections on the socket."""
        try:
            async with asyncio.timeout(self._timeout):
                _, writer = await asyncio.open_unix_connection(self._path)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _exchange(self, request: str) -> str:
        # A plain non-blocking socket: a 10,000-peer answer is ~3 MB, and asyncio's
        # streams copy it five times over where sock_recv copies it once.
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.setblocking(False)
                    await loop.sock_connect(sock, str(self._path))
                    await loop.sock_sendall(sock, request.encode("ascii"))
                    answer = await _read_answer(lambda: loop.sock_recv(sock, _READ_CHUNK))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise BackendUnavailable(f"no WireGuard daemon listening on {self._path}") from exc
        except TimeoutError as exc:
            raise BackendError(f"UAPI request to {self._path} timed out") from exc
        except ConnectionError as exc:
            raise BackendUnavailable(f"UAPI connection to {self._path} failed: {exc}") from exc
        return answer.decode("ascii", errors="replace")


_READ_CHUNK = 1 << 20


async def _read_answer(receive: Callable[[], Awaitable[bytes]]) -> bytes:
    """Everything up to and including the first empty line (the end of an answer)."""
    chunks: list[bytes] = []
    last = b""
    while True:
        chunk = await receive()
        if not chunk:
            raise UapiProtocolError("daemon closed the connection before the end of its answer")
        if not chunks and chunk[:1] == b"\n":  # the very first line is empty
            return b"\n"
        # An empty line is "\n\n"; the two may straddle chunks.
        if last.endswith(b"\n") and chunk[:1] == b"\n":
            chunks.append(b"\n")
            return b"".join(chunks)
        end = chunk.find(b"\n\n")
        if end >= 0:
            chunks.append(chunk[: end + 2])
            return b"".join(chunks)
        chunks.append(chunk)
        last = chunk
