"""Background components' health, as /readyz reports it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class ComponentStatus:
    ok: bool = False
    detail: str = "starting"
    since: datetime | None = None


@dataclass
class Runtime:
    components: dict[str, ComponentStatus] = field(default_factory=dict)
    # Shown by /readyz but never making the service unready (e.g. witness lag).
    informational: dict[str, Callable[[], object]] = field(default_factory=dict)

    def set(self, name: str, *, ok: bool, detail: str, now: datetime) -> None:
        current = self.components.get(name)
        if current is None or current.ok != ok or current.detail != detail:
            self.components[name] = ComponentStatus(ok, detail, now)

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.components.values())
