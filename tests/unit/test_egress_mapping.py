"""The section 8 port-block mapping against a brute-force model, its edges and refusals."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.egress.mapping import (
    EgressConfigError,
    EgressMap,
    auto_block_size,
    largest_pool_prefix,
    parse_ports,
    resolve,
)

A1, A2 = "198.51.100.1", "198.51.100.2"


def make(pool: str = "10.100.0.0/23", addresses: tuple[str, ...] = (A1,), ports: str =
         "1024-65535", block_size: int | str = "auto", **extra: object) -> EgressMap:
    return resolve(
        gateway_id="gw1",
        pools=[ipaddress.ip_network(pool), ipaddress.ip_network("fd00:100::/64")],
        addresses=addresses,
        ports=ports,
        block_size=block_size,  # type: ignore[arg-type]
        ipv6=extra.get("ipv6", "nat66"),  # type: ignore[arg-type]
        addresses6=extra.get("addresses6", ()),  # type: ignore[arg-type]
        blocked=("10.0.0.0/8",),
    )


def brute_force(m: EgressMap) -> dict[tuple[str, int], str]:
    """Every (address, port) → tunnel address, by walking the pool in order."""
    owner: dict[tuple[str, int], str] = {}
    offset = 0
    for address in m.addresses:
        port = m.first_port
        while port + m.block_size - 1 <= m.last_port and offset < m.pool.num_addresses:
            tunnel = str(m.pool.network_address + offset)
            for p in range(port, port + m.block_size):
                owner[(str(address), p)] = tunnel
            port += m.block_size
            offset += 1
    return owner


def test_design_example_default_pool_one_address() -> None:
    m = make()
    assert m.block_size == 126  # 64512 ports // 512 addresses
    assert m.blocks_per_address == 512
    block = m.block_of(ipaddress.IPv4Address("10.100.0.7"))
    assert block is not None
    assert (str(block.address), block.first_port, block.last_port) == (A1, 1024 + 7 * 126,
                                                                      1024 + 8 * 126 - 1)


def test_first_and_last_offsets_and_block_edges() -> None:
    m = make(pool="10.100.0.0/28", addresses=(A1, A2), ports="1024-1535", block_size=64)
    per = m.blocks_per_address
    assert per == 8
    first = m.block_of(ipaddress.IPv4Address("10.100.0.0"))
    assert first is not None and (str(first.address), first.first_port) == (A1, 1024)
    last_on_a1 = m.block_of(m.pool.network_address + per - 1)
    assert last_on_a1 is not None
    assert (str(last_on_a1.address), last_on_a1.last_port) == (A1, 1535)
    first_on_a2 = m.block_of(m.pool.network_address + per)
    assert first_on_a2 is not None and (str(first_on_a2.address), first_on_a2.first_port) == (
        A2, 1024)
    # Edges of a block map back to the same tunnel address; one past goes to the next.
    d1 = m.derive(ipaddress.IPv4Address(A1), 1024 + 64 - 1)
    d2 = m.derive(ipaddress.IPv4Address(A1), 1024 + 64)
    assert d1 is not None and str(d1.tunnel_ip) == "10.100.0.0"
    assert d2 is not None and str(d2.tunnel_ip) == "10.100.0.1"


def test_outside_every_block_is_none() -> None:
    m = make(pool="10.100.0.0/26", ports="1024-1151", block_size=64, addresses=tuple(
        f"198.51.100.{i}" for i in range(1, 33)))
    assert m.derive(ipaddress.IPv4Address(A1), 1023) is None
    assert m.derive(ipaddress.IPv4Address(A1), 1152) is None
    assert m.derive(ipaddress.IPv4Address("203.0.113.9"), 1024) is None
    assert m.block_of(ipaddress.IPv4Address("10.200.0.1")) is None


def test_leftover_ports_after_the_last_whole_block_are_unused() -> None:
    # 300 ports, blocks of 100: three blocks, and the pool has four addresses -> refused.
    with pytest.raises(EgressConfigError, match="fewer than the 4 addresses"):
        make(pool="10.100.0.0/30", ports="1000-1299", block_size=100)
    m2 = make(pool="10.100.0.0/30", ports="1000-1449", block_size=100)
    assert m2.blocks_per_address == 4
    assert m2.derive(ipaddress.IPv4Address(A1), 1420) is None


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.integers(min_value=24, max_value=30),
    extra_addresses=st.integers(min_value=0, max_value=3),
    first=st.integers(min_value=1024, max_value=30000),
    span=st.integers(min_value=256, max_value=4096),
    block_size=st.sampled_from([64, 65, 100, 128, 200]),
)
def test_mapping_matches_brute_force(prefix: int, extra_addresses: int, first: int, span: int,
                                     block_size: int) -> None:
    addresses = tuple(f"198.51.100.{i}" for i in range(1, 2 + extra_addresses))
    try:
        m = make(pool=f"10.100.0.0/{prefix}", addresses=addresses,
                 ports=f"{first}-{first + span - 1}", block_size=block_size)
    except EgressConfigError:
        per = span // block_size
        assert block_size > span or per * len(addresses) < 2 ** (32 - prefix)
        return
    model = brute_force(m)
    # Forward: every pool address's block is exactly the model's ports for it.
    for offset in range(m.pool.num_addresses):
        tunnel = m.pool.network_address + offset
        block = m.block_of(tunnel)
        assert block is not None
        ports = {p for (a, p), t in model.items() if t == str(tunnel)}
        assert ports == set(range(block.first_port, block.last_port + 1))
        assert all(a == str(block.address) for (a, _), t in model.items() if t == str(tunnel))
    # Inverse: every (address, port) in range gives the model's owner, or none.
    for address in m.addresses:
        for port in range(m.first_port - 1, m.last_port + 2):
            d = m.derive(address, port)
            expected = model.get((str(address), port))
            assert (str(d.tunnel_ip) if d else None) == expected


def test_capacity_refusal_names_numbers_and_fix() -> None:
    with pytest.raises(EgressConfigError) as caught:
        make(pool="10.100.0.0/16")
    text = str(caught.value)
    assert "65536" in text and "64" in text and "egress.addresses" in text and "/23" in text


def test_block_under_64_ports_refused() -> None:
    with pytest.raises(EgressConfigError, match="below the minimum of 64"):
        make(block_size=32)


def test_address_inside_pool_refused() -> None:
    with pytest.raises(EgressConfigError, match="inside the tunnel pool"):
        make(addresses=("10.100.0.9",))


def test_bad_ports_refused() -> None:
    for bad in ("1024", "65535-1024", "0-100", "1-70000", "١٠٢٤-2000"):
        with pytest.raises(EgressConfigError, match=r"egress\.ports"):
            parse_ports(bad)


def test_nat66_uses_the_ipv4_offset_and_inverts() -> None:
    m = make(addresses6=("2001:db8::1",))
    tunnel = ipaddress.IPv4Address("10.100.1.44")
    block6 = m.block6_of(tunnel)
    block4 = m.block_of(tunnel)
    assert block6 is not None and block4 is not None
    assert (block6.first_port, block6.last_port) == (block4.first_port, block4.last_port)
    d = m.derive(ipaddress.IPv6Address("2001:db8::1"), block6.first_port + 3)
    assert d is not None and d.tunnel_ip == tunnel


def test_event_round_trip() -> None:
    m = make(addresses6=("2001:db8::1",))
    again = EgressMap.from_event({**m.event_fields(), "type": "egress.configured"})
    assert again == m
    assert m.event_fields()["ports"] == "1024-65535"
    assert "10.100.0.0/23" in m.event_fields()["blocked"]  # own pools always blocked


def test_from_event_refuses_garbage() -> None:
    fields = make().event_fields()
    for broken in ({**fields, "block_size": "126"}, {**fields, "ipv6": "maybe"},
                   {k: v for k, v in fields.items() if k != "pool"}, {**fields, "addresses": []}):
        with pytest.raises(EgressConfigError):
            EgressMap.from_event(broken)


def test_auto_block_and_default_pool_sizes() -> None:
    assert auto_block_size(512, 1, 64512) == 126
    assert auto_block_size(65536, 65, 64512) == 63  # below 64: refused by check()
    assert largest_pool_prefix(1, 64512) == 23
    assert largest_pool_prefix(65, 64512) == 17
