"""UAPI text protocol: parsing daemon answers, rendering set requests, and the socket client."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.wireguard.backend import (
    BackendError,
    BackendUnavailable,
    Endpoint,
    PeerChanges,
    PeerRejected,
    PeerSpec,
)
from gateway.wireguard.keys import preshared_key_digest, public_key_of
from gateway.wireguard.uapi import (
    UapiClient,
    UapiError,
    UapiProtocolError,
    parse_get_response,
    parse_set_response,
    render_device_set,
    render_peer_changes,
)
from gateway.wireguard.userspace import UserspaceBackend

PRIV = bytes(range(1, 33))
K1, K2, K3 = (bytes([n]) * 32 for n in (0xA1, 0xB2, 0xC3))
PSK = bytes([0x33]) * 32

GET_ANSWER = (
    f"private_key={PRIV.hex()}\n"
    "listen_port=51820\n"
    "fwmark=7\n"
    f"public_key={K1.hex()}\n"
    f"preshared_key={PSK.hex()}\n"
    "protocol_version=1\n"
    "endpoint=198.51.100.7:40001\n"
    "last_handshake_time_sec=1700000000\n"
    "last_handshake_time_nsec=250000000\n"
    "tx_bytes=1000\n"
    "rx_bytes=2000\n"
    "persistent_keepalive_interval=25\n"
    "allowed_ip=10.100.0.2/32\n"
    "allowed_ip=fd00:100::2/128\n"
    f"public_key={K2.hex()}\n"
    f"preshared_key={'00' * 32}\n"
    "protocol_version=1\n"
    "endpoint=[2001:db8::5]:51820\n"
    "last_handshake_time_sec=0\n"
    "last_handshake_time_nsec=0\n"
    "tx_bytes=0\n"
    "rx_bytes=0\n"
    "persistent_keepalive_interval=0\n"
    f"public_key={K3.hex()}\n"
    "allowed_ip=10.100.0.4/32\n"
    "errno=0\n\n"
)


def test_parse_get_answer_with_several_peers() -> None:
    device = parse_get_response(GET_ANSWER)
    assert device.private_key == PRIV
    assert (device.listen_port, device.fwmark) == (51820, 7)
    first, second, third = device.peers
    assert first.public_key == K1
    assert first.preshared_key_digest == preshared_key_digest(PSK)
    assert first.endpoint == Endpoint("198.51.100.7", 40001)
    assert first.latest_handshake == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)
    assert (first.rx_bytes, first.tx_bytes) == (2000, 1000)
    assert first.persistent_keepalive == 25
    assert first.allowed_ips == ("10.100.0.2/32", "fd00:100::2/128")
    assert second.endpoint == Endpoint("2001:db8::5", 51820)
    assert str(second.endpoint) == "[2001:db8::5]:51820"
    assert not second.has_preshared_key
    assert second.latest_handshake is None
    assert second.persistent_keepalive is None
    assert second.allowed_ips == ()
    assert third.allowed_ips == ("10.100.0.4/32",)


def test_parse_fresh_daemon_without_key_or_peers() -> None:
    device = parse_get_response("listen_port=39711\nerrno=0\n\n")
    assert device.private_key is None
    assert device.listen_port == 39711
    assert device.peers == ()


def test_ipv6_loopback_endpoint() -> None:
    answer = f"public_key={K1.hex()}\nendpoint=[::1]:51820\nerrno=0\n\n"
    (peer,) = parse_get_response(answer).peers
    assert peer.endpoint == Endpoint("::1", 51820)
    assert str(peer.endpoint) == "[::1]:51820"


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    answer = f"public_key={K1.hex()}\nprotocol_version=2\nsome_future_key=x\nerrno=0\n\n"
    assert parse_get_response(answer).peers[0].public_key == K1


@pytest.mark.parametrize("errno_text", ["-22", "22"])
def test_nonzero_errno_is_an_error(errno_text: str) -> None:
    with pytest.raises(UapiError) as caught:
        parse_get_response(f"errno={errno_text}\n\n")
    assert caught.value.errno == 22
    assert "Invalid argument" in str(caught.value)
    with pytest.raises(UapiError):
        parse_set_response(f"errno={errno_text}\n\n")


def test_set_answer_ok() -> None:
    parse_set_response("errno=0\n\n")


@pytest.mark.parametrize(
    "answer",
    [
        "listen_port=1\n\n",  # no errno
        "errno=0\n",  # not terminated
        "errno=zero\n\n",
        "listen_port\nerrno=0\n\n",  # no '='
        "=5\nerrno=0\n\n",
        "endpoint=1.2.3.4:5\nerrno=0\n\n",  # peer key before public_key
        f"public_key={K1.hex()}\nlisten_port=1\nerrno=0\n\n",  # device key inside a peer
        "public_key=abcd\nerrno=0\n\n",  # short key
        f"public_key={'zz' * 32}\nerrno=0\n\n",
        f"public_key={K1.hex()}\nrx_bytes=-1\nerrno=0\n\n",
        f"public_key={K1.hex()}\nendpoint=::1:51820\nerrno=0\n\n",  # unbracketed IPv6
        f"public_key={K1.hex()}\nendpoint=10.0.0.1\nerrno=0\n\n",
        f"public_key={K1.hex()}\nallowed_ip=10.0.0.1/33\nerrno=0\n\n",
        f"public_key={K1.hex()}\nallowed_ip=10.0.0.1/24\nerrno=0\n\n",  # host bits set
        "listen_port=x\nerrno=0\n\n",
    ],
)
def test_malformed_answers_are_protocol_errors(answer: str) -> None:
    with pytest.raises(UapiProtocolError):
        parse_get_response(answer)


def test_set_answer_with_extra_lines_is_a_protocol_error() -> None:
    with pytest.raises(UapiProtocolError):
        parse_set_response("listen_port=1\nerrno=0\n\n")


def test_render_device_settings() -> None:
    assert render_device_set(private_key=PRIV, listen_port=51820, fwmark=0) == (
        f"set=1\nprivate_key={PRIV.hex()}\nlisten_port=51820\nfwmark=0\n\n"
    )
    assert render_device_set(listen_port=1) == "set=1\nlisten_port=1\n\n"


def test_render_many_peers_in_one_request() -> None:
    changes = PeerChanges(
        adds=(
            PeerSpec(K1, ("10.100.0.2/32", "fd00:100:0::2/128"), PSK, 25),
            PeerSpec(K2, ("10.100.0.3/32",)),
        ),
        updates=(PeerSpec(K3, ("10.100.0.4/32",)),),
        removals=(bytes([0xD4]) * 32,),
    )
    assert render_peer_changes(changes) == (
        "set=1\n"
        f"public_key={'d4' * 32}\n"
        "remove=true\n"
        f"public_key={K3.hex()}\n"
        "update_only=true\n"
        f"preshared_key={'00' * 32}\n"
        "persistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=10.100.0.4/32\n"
        f"public_key={K1.hex()}\n"
        f"preshared_key={PSK.hex()}\n"
        "persistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=10.100.0.2/32\n"
        "allowed_ip=fd00:100::2/128\n"
        f"public_key={K2.hex()}\n"
        f"preshared_key={'00' * 32}\n"
        "persistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=10.100.0.3/32\n"
        "\n"
    )


def test_secrets_stay_out_of_reprs() -> None:
    spec = PeerSpec(K1, ("10.0.0.2/32",), PSK)
    assert PSK.hex() not in repr(spec) and repr(PSK) not in repr(spec)
    device = parse_get_response(GET_ANSWER)
    assert repr(PRIV) not in repr(device)


# --- the client, against a small in-memory daemon speaking the protocol -----------------


@dataclass
class FakePeer:
    psk: bytes = bytes(32)
    keepalive: int = 0
    allowed_ips: list[str] = field(default_factory=list)


@dataclass
class FakeDaemon:
    """Just enough of wireguard-go's UAPI to exercise the client honestly."""

    private_key: bytes | None = None
    listen_port: int = 40000
    peers: dict[bytes, FakePeer] = field(default_factory=dict)
    set_requests: int = 0
    fail_with: int | None = None
    hang_up: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        op = await reader.readline()
        lines = []
        while (line := await reader.readline()) not in (b"\n", b""):
            lines.append(line.decode().rstrip("\n"))
        if self.hang_up:
            writer.close()
            return
        if op == b"get=1\n":
            writer.write(self._get().encode())
        else:
            self.set_requests += 1
            errno = self.fail_with if self.fail_with is not None else self._set(lines)
            writer.write(f"errno={errno}\n\n".encode())
        await writer.drain()
        writer.close()

    def _get(self) -> str:
        out = []
        if self.private_key is not None:
            out.append(f"private_key={self.private_key.hex()}")
        out.append(f"listen_port={self.listen_port}")
        for key, peer in self.peers.items():
            out += [
                f"public_key={key.hex()}",
                f"preshared_key={peer.psk.hex()}",
                "protocol_version=1",
                "last_handshake_time_sec=0",
                "last_handshake_time_nsec=0",
                "tx_bytes=0",
                "rx_bytes=0",
                f"persistent_keepalive_interval={peer.keepalive}",
                *(f"allowed_ip={ip}" for ip in peer.allowed_ips),
            ]
        return "".join(f"{line}\n" for line in out) + "errno=0\n\n"

    def _set(self, lines: list[str]) -> int:
        peer: FakePeer | None = None
        current = b""
        for line in lines:
            key, _, value = line.partition("=")
            if key == "private_key":
                self.private_key = bytes.fromhex(value)
            elif key == "listen_port":
                self.listen_port = int(value)
            elif key == "public_key":
                pub = bytes.fromhex(value)
                peer = self.peers.setdefault(pub, FakePeer())
                current = pub
            elif peer is None:
                return -22
            elif key == "remove":
                del self.peers[current]
                peer = None
            elif key == "preshared_key":
                peer.psk = bytes.fromhex(value)
            elif key == "persistent_keepalive_interval":
                peer.keepalive = int(value)
            elif key == "replace_allowed_ips":
                peer.allowed_ips.clear()
            elif key == "allowed_ip":
                peer.allowed_ips.append(value)
            elif key != "update_only":
                return -22
        return 0


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="uapi", dir="/tmp"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
async def daemon(socket_dir: Path) -> AsyncIterator[FakeDaemon]:
    fake = FakeDaemon()
    server = await asyncio.start_unix_server(fake.handle, path=socket_dir / "wgt0.sock")
    async with server:
        yield fake


async def test_client_round_trip(daemon: FakeDaemon, socket_dir: Path) -> None:
    client = UapiClient(interface="wgt0", socket_dir=socket_dir)
    await client.set(render_device_set(private_key=PRIV, listen_port=51820))
    device = await client.get()
    assert device.private_key == PRIV
    assert device.listen_port == 51820
    assert await client.alive()


async def test_backend_applies_three_adds_in_one_transaction(
    daemon: FakeDaemon, socket_dir: Path
) -> None:
    backend = UserspaceBackend(interface="wgt0", socket_dir=socket_dir)
    adds = tuple(PeerSpec(k, (f"10.100.0.{i}/32",)) for i, k in enumerate((K1, K2, K3), 2))
    await backend.apply(PeerChanges(adds=adds))
    assert daemon.set_requests == 1
    dump = await backend.dump()
    assert {p.public_key for p in dump.peers} == {K1, K2, K3}
    assert dump.public_key is None
    daemon.private_key = PRIV
    assert (await backend.dump()).public_key == public_key_of(PRIV)
    await backend.apply(PeerChanges())
    assert daemon.set_requests == 1, "an empty change set must not reach the daemon"


async def test_daemon_refusal_is_peer_rejected(daemon: FakeDaemon, socket_dir: Path) -> None:
    daemon.fail_with = -22
    backend = UserspaceBackend(interface="wgt0", socket_dir=socket_dir)
    with pytest.raises(PeerRejected):
        await backend.apply(PeerChanges(adds=(PeerSpec(K1, ()),)))


async def test_daemon_io_error_is_a_backend_error(daemon: FakeDaemon, socket_dir: Path) -> None:
    daemon.fail_with = -5
    backend = UserspaceBackend(interface="wgt0", socket_dir=socket_dir)
    with pytest.raises(BackendError) as caught:
        await backend.apply(PeerChanges(adds=(PeerSpec(K1, ()),)))
    assert not isinstance(caught.value, PeerRejected)


async def test_hang_up_mid_answer_is_a_protocol_error(daemon: FakeDaemon, socket_dir: Path) -> None:
    daemon.hang_up = True
    with pytest.raises(UapiProtocolError):
        await UapiClient(interface="wgt0", socket_dir=socket_dir).get()


async def test_missing_socket_means_unavailable(socket_dir: Path) -> None:
    client = UapiClient(interface="nothere", socket_dir=socket_dir)
    with pytest.raises(BackendUnavailable):
        await client.get()
    assert not await client.alive()


async def test_stale_socket_file_means_unavailable(socket_dir: Path) -> None:
    # What a SIGKILLed daemon leaves behind: the file, with nobody listening.
    server = await asyncio.start_unix_server(lambda r, w: None, path=socket_dir / "gone.sock")
    server.close()
    await server.wait_closed()
    (socket_dir / "gone.sock").touch()
    with pytest.raises(BackendUnavailable):
        await UapiClient(interface="gone", socket_dir=socket_dir).get()
