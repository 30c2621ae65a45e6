"""Plain shapes of account values for the CLI and the pages."""

from __future__ import annotations

from typing import Any

from provisioning.accounts.users import User
from provisioning.validation import rfc3339


def user_view(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "email": u.email,
        "role": u.role.value,
        "tenant_id": u.tenant_id,
        "status": u.status.value,
        "second_factor": "totp" if u.has_totp else "none",
        "created_at": rfc3339(u.created_at),
        "last_signin_at": rfc3339(u.last_signin_at) if u.last_signin_at else None,
    }
