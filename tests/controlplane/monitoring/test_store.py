"""The in-memory sample store: live window, one-minute rollups handed over once, subscribers."""

import math

import pytest

from controlplane.monitoring.store import SampleStore

T0 = 1_800_000_000.0  # a whole minute


def test_frames_are_kept_for_the_live_window_only():
    store = SampleStore(live_window_s=10)
    for i in range(30):
        store.add(T0 + i, {"a": float(i)})
    frames = store.frames()
    assert [ts for ts, _ in frames] == [T0 + i for i in range(19, 30)]
    assert store.raw(["a"], T0 + 25, T0 + 28) == {"a": [(T0 + 25, 25.0), (T0 + 26, 26.0), (T0 + 27, 27.0)]}
    assert store.frames(since=T0 + 28) == [(T0 + 29, {"a": 29.0})]


def test_rollups_give_min_mean_max_per_minute_and_are_handed_over_once():
    store = SampleStore()
    for i in range(120):
        store.add(T0 + i, {"a": float(i % 60), "b": 2.0})
    store.add(T0 + 120, {"a": 0.0})
    closed = store.take_closed()
    assert {(r.series, r.minute) for r in closed} == {("a", T0), ("a", T0 + 60), ("b", T0), ("b", T0 + 60)}
    first = next(r for r in closed if r.series == "a" and r.minute == T0)
    assert (first.min, first.max, first.count) == (0.0, 59.0, 60)
    assert first.mean == pytest.approx(29.5)
    assert store.take_closed() == []
    # the minute in progress is visible to history queries but not handed over yet
    [pending] = store.rollups(["a"], T0 + 120, T0 + 180)
    assert (pending.minute, pending.count) == (T0 + 120, 1)


def test_a_series_that_stops_closes_its_last_minute_when_the_minute_ends():
    store = SampleStore()
    store.add(T0, {"gone": 1.0, "kept": 1.0})
    store.add(T0 + 61, {"kept": 1.0})
    assert {r.series for r in store.take_closed()} == {"gone", "kept"}


def test_unwritten_rollups_given_back_are_offered_again():
    store = SampleStore()
    store.add(T0, {"a": 1.0})
    store.add(T0 + 60, {"a": 1.0})
    closed = store.take_closed()
    store.give_back(closed)
    assert store.take_closed() == closed


def test_non_finite_values_are_dropped_and_old_samples_ignored():
    store = SampleStore()
    store.add(T0 + 5, {"a": 1.0, "nan": math.nan, "inf": math.inf})
    store.add(T0, {"a": 99.0})
    assert store.frames() == [(T0 + 5, {"a": 1.0})]
    assert store.names() == ["a"]
