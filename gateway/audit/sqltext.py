"""Raw SQL text for both drivers: written with ``?`` placeholders (sqlite3/aiosqlite) and
renumbered for asyncpg. Free of SQLAlchemy, so `audit verify`'s workers start fast."""

from __future__ import annotations


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))
