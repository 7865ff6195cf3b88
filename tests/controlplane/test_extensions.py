from collections.abc import Callable
from dataclasses import dataclass

import pytest

from controlplane.extensions import Registry, RegistryError


@dataclass(frozen=True)
class Thing:
    name: str
    func: Callable[[], int]
    unit: str = "count"


def _check(thing: Thing) -> None:
    if thing.unit not in ("count", "s"):
        raise ValueError(f"unit must be count or s; got {thing.unit!r}")


def test_entries_keep_their_order_and_are_found_by_name():
    things = Registry[Thing]("thing", _check)
    a = things.register(Thing("a", lambda: 1))
    things.register(Thing("b", lambda: 2, unit="s"))
    assert things.names() == ["a", "b"] and things["a"] is a and "b" in things and len(things) == 2
    assert [t.func() for t in things] == [1, 2]


def test_it_refuses_a_duplicate_a_bad_name_and_what_the_check_rejects():
    things = Registry[Thing]("thing", _check)
    things.register(Thing("a", lambda: 1))
    with pytest.raises(RegistryError, match="'a' is registered already"):
        things.register(Thing("a", lambda: 1))
    with pytest.raises(RegistryError, match="lower-case"):
        things.register(Thing("Bad Name", lambda: 1))
    with pytest.raises(RegistryError, match="thing 'c': unit must be count or s"):
        things.register(Thing("c", lambda: 1, unit="kg"))
    assert things.names() == ["a"]


def test_an_unknown_name_lists_the_known_ones():
    things = Registry[Thing]("thing")
    things.register(Thing("a", lambda: 1))
    with pytest.raises(KeyError, match="unknown thing 'z'; known: a"):
        things["z"]
