"""Blocking rtnetlink helpers (pyroute2 IPRoute) for a WireGuard link; run them in a thread."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Sequence

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from gateway.wireguard.backend import BackendError, BackendUnavailable

_SCOPE_LINK = 253


def _index(ipr: IPRoute, ifname: str) -> int:
    indices: list[int] = ipr.link_lookup(ifname=ifname)
    if not indices:
        raise BackendUnavailable(f"interface {ifname} does not exist")
    return indices[0]


def create_wireguard_link(ifname: str) -> None:
    """Create a kernel WireGuard link unless one of that name exists."""
    with IPRoute() as ipr:
        if ipr.link_lookup(ifname=ifname):
            return
        try:
            ipr.link("add", ifname=ifname, kind="wireguard")
        except NetlinkError as exc:
            if exc.code in (errno.EOPNOTSUPP, errno.ENOTSUP):
                raise BackendUnavailable(
                    "the kernel has no wireguard module; use the userspace backend"
                ) from exc
            if exc.code != errno.EEXIST:
                raise BackendError(f"cannot create {ifname}: {exc}") from exc


def configure_link(ifname: str, *, addresses: Sequence[str], mtu: int) -> None:
    """Set MTU, make the addresses exactly `addresses` (link-local aside), bring it up."""
    wanted = {ipaddress.ip_interface(a) for a in addresses}
    with IPRoute() as ipr:
        try:
            index = _index(ipr, ifname)
            ipr.link("set", index=index, mtu=mtu)
            present = set()
            for msg in ipr.get_addr(index=index):
                if msg["scope"] == _SCOPE_LINK:
                    continue
                # On point-to-point links IFA_LOCAL is ours and IFA_ADDRESS the far end.
                local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                present.add(ipaddress.ip_interface(f"{local}/{msg['prefixlen']}"))
            for addr in sorted(present - wanted, key=str):
                ipr.addr("del", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen)
            for addr in sorted(wanted - present, key=str):
                ipr.addr("add", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen)
            ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise BackendUnavailable(f"interface {ifname} disappeared") from exc
            raise BackendError(f"cannot configure {ifname}: {exc}") from exc
