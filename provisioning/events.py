"""Audit events returned by use-cases (DESIGN section 5 types); serialised by the gateway."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

T = TypeVar("T")

EventValue = str | int | tuple[str, ...]


@dataclass(frozen=True)
class Event:
    """A past-tense fact; `attrs` holds only strings, integers and tuples of strings."""

    type: str
    attrs: Mapping[str, EventValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a use-case produced and the events it caused, to commit together."""

    value: T
    events: tuple[Event, ...] = ()
