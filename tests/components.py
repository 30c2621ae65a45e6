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
