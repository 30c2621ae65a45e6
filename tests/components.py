"""Whether tests may skip for a missing real component (PostgreSQL, root, wireguard-go)."""

from __future__ import annotations

import os

import pytest

# Set by .ci/run: there, a missing component is a failure, never a silent skip.
REQUIRE_ALL = os.environ.get("VPNGW_REQUIRE_ALL") == "1"


def require_or_skip(condition: bool, reason: str) -> None:
    """Skip when a real component is missing, except under VPNGW_REQUIRE_ALL=1."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required component missing (VPNGW_REQUIRE_ALL=1): {reason}")
    pytest.skip(reason)


# Set inside the kernel test VM (tests/vm), which boots a kernel that has the wireguard module.
REQUIRE_KERNEL_WIREGUARD = os.environ.get("VPNGW_REQUIRE_KERNEL_WIREGUARD") == "1"


def require_kernel_wireguard_or_skip(available: bool) -> None:
    """Kernel-backend cases skip on hosts without the module (CI's too), never in the VM."""
    if available:
        return
    if REQUIRE_KERNEL_WIREGUARD:
        pytest.fail("wireguard kernel module missing (VPNGW_REQUIRE_KERNEL_WIREGUARD=1)")
    pytest.skip("wireguard kernel module unavailable on this host (expected: skip)")
