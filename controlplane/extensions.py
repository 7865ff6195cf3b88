"""One registry pattern for every extension point (rollout gates, alert evaluators, drift checks, jobs, engines).

An extension is a declared entry: a frozen dataclass with a ``name`` (and whatever else its kind needs: label, unit,
function, docs), validated when it is registered. Adding one is one entry plus its function; nothing else changes,
no if-chain is edited. ``Registry`` keeps the entries of one kind in declaration order and refuses a second entry
with a name already taken, a name that is not a lower-case identifier, or an entry its kind's ``check`` rejects::

    GATES = Registry[Gate]("gate")

    @dataclass(frozen=True)
    class Gate:
        name: str
        label: str
        func: Callable[..., GateResult]

    GATES.register(Gate("latency", "Latency", gate_latency))

Django-free, so that ``inference`` style code and the statistics could use it too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["Entry", "Registry", "RegistryError"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Entry(Protocol):
    """What every registered entry has: a unique name."""

    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=Entry)


class RegistryError(ValueError):
    """An entry was refused when registered: the message names the registry, the entry and the problem."""


class Registry(Generic[E]):
    """The declared entries of one kind of extension, by name, in the order they were registered."""

    def __init__(self, kind: str, check: Callable[[E], None] | None = None) -> None:
        self.kind = kind
        self._check = check
        self._entries: dict[str, E] = {}

    def register(self, entry: E) -> E:
        """Add ``entry`` after checking it; returns it, so that a module can keep the entry under its own name."""
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(f"{self.kind} {name!r}: the name must be lower-case letters, digits and underscores")
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is registered already")
        if self._check is not None:
            try:
                self._check(entry)
            except (TypeError, ValueError) as exc:
                raise RegistryError(f"{self.kind} {name!r}: {exc}") from exc
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests that register one of their own)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> E | None:
        return self._entries.get(name)

    def __getitem__(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)
