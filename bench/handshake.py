"""Is a peer live on an interface? Ask the interface itself, at O(1): a handshake.

A WireGuard interface answers a handshake initiation only from a peer it carries: the
initiation names the sender by its static key, sealed to the interface's key (Noise IK, as
the WireGuard paper's section 5.4 spells it). So the bench, holding the new peer's private
key, sends one initiation every `PROBE_EVERY` and the first answer (a handshake response
naming our sender index) says the peer is on the interface. One probe costs the daemon one
Diffie-Hellman and a key look-up, whatever the peer count, and takes none of the locks a
configuration change waits for (a UAPI `get` holds the daemon's IPC lock for the whole dump,
so a dump in progress delays the very change it is watching for).

The same packet is resent (the first is built before the clock starts): until the peer
exists it is dropped, and the first one consumed after that is answered. A fresh one (new
ephemeral key and timestamp) replaces it every `REFRESH_EVERY`, in case an answer was lost:
the interface takes each initiation once. A daemon under load (its handshake queue backed up)
answers with a cookie reply instead; the probe takes the cookie up as a client does (mac2 on
the next initiations, which the daemon then rate-limits per source address) and counts the
replies, so such a sample shows as the slower one it is. Nothing else follows
(no data packet), so the interface records no completed handshake for the peer (it does
learn the probe's address as the peer's endpoint).
"""

from __future__ import annotations

import hashlib
import hmac
import select
import socket
import struct
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
TAI64N_BASE = 0x400000000000000A
INITIATION, RESPONSE, COOKIE_REPLY = 1, 2, 3
RESPONSE_SIZE = 92
COOKIE_REPLY_SIZE = 64
MAC2_AT = 132  # an initiation's mac2 covers the bytes before it
PROBE_EVERY = 0.001  # seconds between initiations: the resolution of a figure
REFRESH_EVERY = 0.1  # seconds between fresh initiations (the daemon's flood limit is 50 ms)


def raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _hash(*parts: bytes) -> bytes:
    h = hashlib.blake2s()
    for part in parts:
        h.update(part)
    return h.digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def _kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    t0 = _hmac(key, data)
    t1 = _hmac(t0, b"\x01")
    return t1, _hmac(t0, t1 + b"\x02")


def _seal(key: bytes, plaintext: bytes, hash_: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(bytes(12), plaintext, hash_)  # counter 0


def tai64n(now: float) -> bytes:
    seconds = int(now)
    return struct.pack(">QI", TAI64N_BASE + seconds, int((now - seconds) * 1e9))


def initiation(static: X25519PrivateKey, responder: bytes, sender: int) -> bytes:
    """A handshake initiation (message type 1, 148 bytes) from `static` to `responder`."""
    responder_key = X25519PublicKey.from_public_bytes(responder)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = raw_public(ephemeral)
    chain = _hash(CONSTRUCTION)
    h = _hash(_hash(chain, IDENTIFIER), responder)
    chain = _hmac(_hmac(chain, ephemeral_public), b"\x01")  # KDF1
    h = _hash(h, ephemeral_public)
    chain, key = _kdf2(chain, ephemeral.exchange(responder_key))
    sealed_static = _seal(key, raw_public(static), h)
    h = _hash(h, sealed_static)
    chain, key = _kdf2(chain, static.exchange(responder_key))
    sealed_time = _seal(key, tai64n(time.time()), h)
    body = struct.pack("<B3xI", INITIATION, sender) + ephemeral_public + sealed_static + sealed_time
    mac1 = hashlib.blake2s(body, digest_size=16, key=_hash(LABEL_MAC1, responder)).digest()
    return body + mac1 + bytes(16)  # no cookie: mac2 zero


def hchacha20(key: bytes, nonce: bytes) -> bytes:
    """HChaCha20 from ChaCha20's first keystream block, less the input state it adds."""
    block = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor().update(bytes(64))
    out = struct.unpack("<16I", block)
    state = struct.unpack("<16I", b"expand 32-byte k" + key + nonce)
    return struct.pack("<8I", *((out[i] - state[i]) & 0xFFFFFFFF
                                for i in (0, 1, 2, 3, 12, 13, 14, 15)))


def cookie_of(reply: bytes, responder: bytes, mac1: bytes) -> bytes | None:
    """The cookie in a cookie reply to the initiation whose mac1 is `mac1`, else None."""
    if len(reply) != COOKIE_REPLY_SIZE or reply[0] != COOKIE_REPLY:
        return None
    nonce, sealed = reply[8:32], reply[32:]
    key = hchacha20(_hash(LABEL_COOKIE, responder), nonce[:16])  # XChaCha20-Poly1305
    try:
        return ChaCha20Poly1305(key).decrypt(bytes(4) + nonce[16:], sealed, mac1)
    except InvalidTag:  # a reply to an earlier initiation
        return None


def with_mac2(packet: bytes, cookie: bytes) -> bytes:
    body = packet[:MAC2_AT]
    return body + hashlib.blake2s(body, digest_size=16, key=cookie).digest()


def is_answer(packet: bytes, sender: int) -> bool:
    """A handshake response to our initiation (its receiver index is our sender index)."""
    return (len(packet) == RESPONSE_SIZE and packet[0] == RESPONSE
            and struct.unpack_from("<I", packet, 8)[0] == sender)


class Probe:
    """One peer's initiation, resent to the interface until it is answered."""

    def __init__(self, static: X25519PrivateKey, responder: bytes, port: int,
                 host: str = "127.0.0.1") -> None:
        self.sender = int.from_bytes(raw_public(static)[:4], "little")
        self._static = static
        self._responder = responder
        self.packet = initiation(static, responder, self.sender)
        self.cookie_replies = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.connect((host, port))

    def answered_at(self, deadline: float) -> float:
        """perf_counter() when the answer came; TimeoutError past `deadline` (perf_counter).

        Sends at most one initiation every PROBE_EVERY, whatever comes back: replies must
        not speed the probe up into a flood.
        """
        cookie: bytes | None = None
        send_at = time.perf_counter()
        refresh_at = send_at + REFRESH_EVERY
        with self._sock:
            while True:
                now = time.perf_counter()
                if now > deadline:
                    raise TimeoutError(f"the interface never answered the new peer's handshake "
                                       f"({self.cookie_replies} cookie replies)")
                if now >= refresh_at:
                    self.packet = initiation(self._static, self._responder, self.sender)
                    refresh_at = now + REFRESH_EVERY
                if now >= send_at:
                    self._sock.send(self.packet if cookie is None
                                    else with_mac2(self.packet, cookie))
                    send_at = now + PROBE_EVERY
                ready, _, _ = select.select([self._sock], [], [], max(0.0, send_at - now))
                if not ready:
                    continue
                try:
                    packet = self._sock.recv(512)
                except ConnectionRefusedError:  # ICMP: nothing listens (yet)
                    continue
                if is_answer(packet, self.sender):
                    return time.perf_counter()
                if packet[:1] == bytes([COOKIE_REPLY]):
                    self.cookie_replies += 1
                    mac1 = self.packet[MAC2_AT - 16 : MAC2_AT]
                    cookie = cookie_of(packet, self._responder, mac1) or cookie
