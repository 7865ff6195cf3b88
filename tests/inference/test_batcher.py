"""Batching: the scheduler's admission rules, a bounded queue, dynamic and continuous batching."""

from __future__ import annotations

from collections import deque

import pytest

from inference.batcher import Scheduler, Sequence
from inference.engine import Engine
from inference.errors import Overloaded
from inference.protocol import WorkerConfig
from inference.sampling import SamplingParams
from tests.inference.helpers import Stall, submit, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _seqs(n: int, clock: Clock, prompt_len: int = 4) -> deque[Sequence]:
    return deque(Sequence([1] * prompt_len, SamplingParams(), lambda e: None, 1, clock()) for _ in range(n))


def test_admission_fills_free_slots_only() -> None:
    clock = Clock()
    waiting = _seqs(10, clock)
    admitted, hold = Scheduler(clock).admit(waiting, running=5, cfg=WorkerConfig(max_batch_size=8))
    assert len(admitted) == 3 and len(waiting) == 7 and hold is None


def test_admission_respects_the_prefill_token_budget_but_always_takes_one() -> None:
    clock = Clock()
    cfg = WorkerConfig(prefill_token_budget=10)
    assert len(Scheduler(clock).admit(_seqs(5, clock, prompt_len=4), 0, cfg)[0]) == 2
    assert len(Scheduler(clock).admit(_seqs(5, clock, prompt_len=50), 0, cfg)[0]) == 1


def test_static_mode_admits_only_into_an_empty_batch() -> None:
    clock = Clock()
    cfg = WorkerConfig(scheduling="static", max_batch_size=4)
    assert Scheduler(clock).admit(_seqs(3, clock), running=1, cfg=cfg)[0] == []
    assert len(Scheduler(clock).admit(_seqs(6, clock), running=0, cfg=cfg)[0]) == 4


def test_without_max_wait_an_idle_engine_never_holds_a_request() -> None:
    clock = Clock()
    admitted, hold = Scheduler(clock).admit(_seqs(1, clock), 0, WorkerConfig(max_wait_ms=0))
    assert len(admitted) == 1 and hold is None


def test_max_wait_holds_a_small_batch_until_the_wait_is_over_or_the_batch_is_full() -> None:
    clock = Clock()
    sched, cfg = Scheduler(clock), WorkerConfig(max_wait_ms=50, max_batch_size=4)
    waiting = _seqs(2, clock)
    admitted, hold = sched.admit(waiting, 0, cfg)
    assert admitted == [] and hold == pytest.approx(0.05)
    clock.now += 0.051
    assert len(sched.admit(waiting, 0, cfg)[0]) == 2
    assert len(sched.admit(_seqs(4, clock), 0, cfg)[0]) == 4  # full: no reason to wait
    assert len(sched.admit(_seqs(1, clock), 1, cfg)[0]) == 1  # busy engine: join at the next step


def test_a_full_queue_refuses_at_once_and_accepted_requests_still_finish(make_engine) -> None:
    engine: Engine = make_engine(max_queue=3)
    with Stall(engine) as stall:
        accepted = [submit(engine, "a", max_tokens=3)]
        assert stall.entered.wait(30)
        accepted += [submit(engine, f"q{i}", max_tokens=3) for i in range(2)]
        assert engine.queue_depth() == 3  # the stalled step has not admitted anything yet
        with pytest.raises(Overloaded, match="queue is full"):
            submit(engine, "one too many", max_tokens=3)
        assert engine.counters.rejected_total == 1
    for _, sink in accepted:
        assert sink.result().reason == "length"


def test_requests_queued_together_are_prefilled_as_one_batch(engine: Engine) -> None:
    with Stall(engine) as stall:
        first = submit(engine, "first", max_tokens=2)
        assert stall.entered.wait(30)
        rest = [submit(engine, f"prompt {i}", max_tokens=2) for i in range(7)]
    for _, sink in [first, *rest]:
        sink.result()
    hist = engine.counters.to_dict(0)["batch_size_histogram"]
    assert hist.get("8", 0) >= 1, hist


def _short_arrives_during_long(engine: Engine) -> tuple[float, float]:
    long_seq, long_sink = submit(engine, "long", max_tokens=100, temperature=0)
    wait_until(lambda: long_seq.output_ids, what="the long request to be running")
    _, short_sink = submit(engine, "short", max_tokens=4, temperature=0)
    long_sink.result()
    short_sink.result()
    return short_sink.finished_at, long_sink.finished_at


def test_continuous_batching_lets_a_short_request_finish_before_a_long_one(make_engine) -> None:
    short_done, long_done = _short_arrives_during_long(make_engine(scheduling="continuous"))
    assert short_done < long_done


def test_static_batching_makes_a_late_short_request_wait_for_the_long_one(make_engine) -> None:
    short_done, long_done = _short_arrives_during_long(make_engine(scheduling="static"))
    assert short_done > long_done


def _decode_rows(engine: Engine, long_tokens: int) -> int:
    with Stall(engine) as stall:
        submit(engine, "long", max_tokens=long_tokens, temperature=0)
        assert stall.entered.wait(30)
        _, short = submit(engine, "short", max_tokens=3, temperature=0)
    short.result()
    wait_until(lambda: not engine.active_lane().runner.seqs, what="the batch to finish")
    return engine.counters.to_dict(0)["batch_size_histogram"].get("2", 0)


def test_static_batching_keeps_computing_finished_rows_until_the_batch_ends(make_engine) -> None:
    assert _decode_rows(make_engine(scheduling="static"), 60) >= 59
    assert _decode_rows(make_engine(scheduling="continuous"), 60) <= 3
