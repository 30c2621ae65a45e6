"""Pure provisioning logic: state machine, keys, addresses, validation, client configs."""

from __future__ import annotations

import base64
import ipaddress
import json

import pytest

from provisioning import addresses, keys, validation
from provisioning.clientconfig import ClientConfig, render, render_conf
from provisioning.errors import IllegalTransition, InvalidInput
from provisioning.ids import is_id, new_id
from provisioning.tenants import Action, TenantStatus, next_status
from provisioning.tokens import Role, mint


@pytest.mark.parametrize(
    ("status", "action", "expected"),
    [
        ("pending", "verify", "verified"),
        ("pending", "terminate", "terminated"),
        ("verified", "suspend", "suspended"),
        ("suspended", "reinstate", "verified"),
        ("verified", "terminate", "terminated"),
        ("suspended", "terminate", "terminated"),
    ],
)
def test_allowed_transitions(status: str, action: str, expected: str) -> None:
    assert next_status(TenantStatus(status), Action(action)) is TenantStatus(expected)


def test_every_other_transition_is_illegal() -> None:
    allowed = {
        ("pending", "verify"),
        ("pending", "terminate"),
        ("verified", "suspend"),
        ("suspended", "reinstate"),
        ("verified", "terminate"),
        ("suspended", "terminate"),
    }
    for status in TenantStatus:
        for action in Action:
            if (status.value, action.value) not in allowed:
                with pytest.raises(IllegalTransition):
                    next_status(status, action)


def test_key_pair_and_strict_parsing() -> None:
    pair = keys.generate_key_pair()
    assert keys.public_key_of(pair.private_key) == pair.public_key
    assert pair.private_key not in repr(pair)
    assert keys.normalise_public_key(pair.public_key) == pair.public_key
    for bad in (
        "",
        "abc",
        pair.public_key[:-1],
        pair.public_key + "=",
        " " + pair.public_key,
        pair.public_key.replace("=", "A"),
        None,
        1,
    ):
        with pytest.raises(InvalidInput):
            keys.normalise_public_key(bad)


def test_pool_arithmetic() -> None:
    v4 = ipaddress.ip_network("10.0.0.0/29")
    assert addresses.client_capacity(v4) == 5  # .2 .. .6
    assert str(addresses.address_at(v4, 2)) == "10.0.0.2"
    with pytest.raises(ValueError):
        addresses.address_at(v4, 7)  # broadcast
    with pytest.raises(ValueError):
        addresses.address_at(v4, 1)  # the gateway
    assert addresses.gateway_interface(v4) == "10.0.0.1/29"
    v6 = ipaddress.ip_network("fd00::/64")
    assert addresses.end_offset(v6) == 1 << 62
    assert addresses.host_prefix("fd00::2") == "fd00::2/128"


def test_validation_messages() -> None:
    with pytest.raises(InvalidInput, match="name: must not contain control"):
        validation.text("name", "a\nb")
    assert validation.timestamp("t", "2026-01-01T05:00:00+05:00").hour == 0
    assert (
        validation.rfc3339(validation.timestamp("t", "2026-01-01T00:00:00.9Z"))
        == "2026-01-01T00:00:00Z"
    )


def test_ids_are_time_ordered_uuid7() -> None:
    first, second = new_id(1000), new_id(2000)
    assert is_id(first) and first < second and first[14] == "7"
    assert not is_id("../etc/passwd")


def test_token_shape() -> None:
    token_id, bearer, stored = mint(Role.TENANT)
    assert bearer.startswith(f"vgw_t_{token_id}_") and len(stored) == 64
    assert bearer.split("_", 3)[3] not in stored


CFG = ClientConfig(
    peer_name="laptop",
    tunnel_ips=("10.0.0.2", "fd00::2"),
    dns=("10.0.0.1",),
    gateway_public_key="G" * 43 + "=",
    endpoint="vpn.test:51820",
    allowed_ips=("0.0.0.0/0", "::/0"),
    persistent_keepalive=25,
)


def test_conf_without_private_key() -> None:
    conf = render_conf(CFG)
    assert conf.splitlines()[1:] == [
        "[Interface]",
        "# PrivateKey = <this device's private key>",
        "Address = 10.0.0.2/32, fd00::2/128",
        "DNS = 10.0.0.1",
        "",
        "[Peer]",
        f"PublicKey = {'G' * 43}=",
        "Endpoint = vpn.test:51820",
        "AllowedIPs = 0.0.0.0/0, ::/0",
        "PersistentKeepalive = 25",
    ]


def test_conf_with_private_and_preshared_key() -> None:
    from dataclasses import replace

    conf = render_conf(replace(CFG, private_key="P" * 43 + "=", preshared_key="S" * 43 + "="))
    assert f"PrivateKey = {'P' * 43}=" in conf and f"PresharedKey = {'S' * 43}=" in conf
    assert "P" * 43 not in repr(replace(CFG, private_key="P" * 43 + "="))


def test_other_formats() -> None:
    assert json.loads(render(CFG, "json"))["peer"]["endpoint"] == "vpn.test:51820"
    assert render(CFG, "qr.svg").lstrip().startswith(b"<?xml")
    assert render(CFG, "qr.png").startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        render(CFG, "pdf")


def test_small_order_curve25519_keys_give_an_all_zero_shared_secret() -> None:
    # Why they are refused: X25519 with any of them yields zero, which OpenSSL (and
    # WireGuard) refuse. Derived here through the library, not from the list itself.
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    from provisioning.keys import SMALL_ORDER_PUBLIC_KEYS, normalise_public_key

    assert len(SMALL_ORDER_PUBLIC_KEYS) == 7
    for raw in SMALL_ORDER_PUBLIC_KEYS:
        with pytest.raises(ValueError):
            X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
        with pytest.raises(InvalidInput, match="small order"):
            normalise_public_key(base64.b64encode(raw).decode())
    real = X25519PrivateKey.generate().public_key().public_bytes_raw()
    assert normalise_public_key(base64.b64encode(real).decode())
