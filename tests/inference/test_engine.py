"""The engine: deterministic generation, batch invariance, stops, failures, load/swap/unload, scoring."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inference.batcher import Failed, Finished
from inference.bridge import generate
from inference.engine import Engine
from inference.errors import CheckpointError, Conflict, NoModel
from inference.protocol import WorkerConfig
from tests.inference.helpers import Stall, submit, wait_until

PROMPTS = ["The default value", "Return a new list", "x", "If the file does not exist, raise", "abc def", "zz"]


def test_greedy_generation_is_deterministic(engine: Engine) -> None:
    first = generate(engine, "Hello world", max_tokens=20, temperature=0)
    again = generate(engine, "Hello world", max_tokens=20, temperature=0)
    assert first.output_ids == again.output_ids
    assert len(first.output_ids) == 20 and first.finish_reason == "length"


def test_sampling_with_a_seed_is_reproducible_and_seeds_differ(engine: Engine) -> None:
    runs = {s: generate(engine, "Hello", max_tokens=24, temperature=1.0, seed=s).output_ids for s in (1, 2, 3)}
    assert generate(engine, "Hello", max_tokens=24, temperature=1.0, seed=1).output_ids == runs[1]
    assert len({tuple(v) for v in runs.values()}) > 1


def test_a_request_batched_with_others_gets_the_same_tokens_as_alone(engine: Engine) -> None:
    alone = {p: generate(engine, p, max_tokens=16, temperature=0).output_ids for p in PROMPTS}
    sampled = generate(engine, PROMPTS[0], max_tokens=16, temperature=0.9, seed=5).output_ids
    with Stall(engine) as stall:
        submit(engine, "warm", max_tokens=2)
        assert stall.entered.wait(30)
        together = [submit(engine, p, max_tokens=16, temperature=0) for p in PROMPTS]
        seeded = submit(engine, PROMPTS[0], max_tokens=16, temperature=0.9, seed=5)
    for (seq, sink), prompt in zip(together, PROMPTS, strict=True):
        sink.result()
        assert seq.output_ids == alone[prompt], prompt
    seeded[1].result()
    assert seeded[0].output_ids == sampled
    assert max(int(k) for k, v in engine.counters.to_dict(0)["batch_size_histogram"].items() if v) >= len(PROMPTS)


def test_requests_joining_a_running_batch_get_the_same_tokens_as_alone(engine: Engine) -> None:
    long_alone = generate(engine, "a long one", max_tokens=60, temperature=0).output_ids
    alone = {p: generate(engine, p, max_tokens=12, temperature=0).output_ids for p in PROMPTS}
    runner = engine.active_lane().runner
    fused_before = runner.fused_passes
    long_seq, long_sink = submit(engine, "a long one", max_tokens=60, temperature=0)
    wait_until(lambda: long_seq.output_ids, what="the long request to run")
    with Stall(engine) as stall:  # hold the next step so the new requests join a batch that is still running
        assert stall.entered.wait(30)
        joined = [submit(engine, p, max_tokens=12, temperature=0) for p in PROMPTS]
    for (seq, sink), prompt in zip(joined, PROMPTS, strict=True):
        sink.result()
        assert seq.output_ids == alone[prompt], prompt
    long_sink.result()
    assert long_seq.output_ids == long_alone
    assert runner.fused_passes > fused_before  # prefill rode along with the decode step


def test_every_request_gets_exactly_one_final_event(engine: Engine) -> None:
    sinks = [submit(engine, f"prompt {i}", max_tokens=1 + i % 7)[1] for i in range(40)]
    for sink in sinks:
        sink.result()
        assert sum(isinstance(e, Finished | Failed) for e in sink.events) == 1


def test_a_stop_string_ends_the_output_before_it(engine: Engine) -> None:
    full = generate(engine, "Hello world", max_tokens=30, temperature=0).text
    stop = full[10:12]
    cut = generate(engine, "Hello world", max_tokens=30, temperature=0, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]


def test_streamed_deltas_add_up_to_the_final_text(engine: Engine) -> None:
    seq, sink = submit(engine, "Hello", max_tokens=25, temperature=0)
    final = sink.result()
    assert "".join(e.text for e in sink.events[:-1]) == final.text
    assert final.usage["completion_tokens"] == 25 and final.usage["prompt_tokens"] == len(seq.prompt_ids)


def test_a_failing_step_fails_its_requests_and_the_engine_keeps_serving(engine: Engine) -> None:
    calls = {"n": 0}

    def boom() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated kernel failure")

    engine.hooks.before_forward = boom
    _, sink = submit(engine, "Hello", max_tokens=5)
    assert sink.done.wait(30)
    assert isinstance(sink.events[-1], Failed) and "simulated" in str(sink.events[-1].error)
    assert generate(engine, "Hello", max_tokens=5).finish_reason == "length"
    assert engine.counters.errors_total == 1


def test_cancelling_frees_the_batch_slot(engine: Engine) -> None:
    seq, sink = submit(engine, "Hello", max_tokens=100)
    wait_until(lambda: seq.output_ids, what="first token")
    engine.cancel(seq)
    assert sink.result().reason == "cancelled"
    wait_until(lambda: not engine.active_lane().runner.seqs, what="batch to empty")


def test_loading_twice_is_a_conflict_and_unload_stops_serving(engine: Engine, tiny_checkpoint: Path) -> None:
    with pytest.raises(Conflict, match="already loaded"):
        engine.load(str(tiny_checkpoint))
    result = engine.unload()
    assert result["freed_bytes"] > 0 and result["drained"]
    with pytest.raises(NoModel):
        generate(engine, "Hello", max_tokens=2)
    engine.load(str(tiny_checkpoint), "fp32", "cpu")
    assert generate(engine, "Hello", max_tokens=2).finish_reason == "length"


def test_a_failed_load_leaves_the_worker_serving_the_old_model(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file or directory"):
        engine.swap(str(tmp_path / "missing"), "fp32", "cpu")
    assert engine.progress.phase == "failed"
    assert generate(engine, "Hello", max_tokens=2).finish_reason == "length"


def test_swap_finishes_requests_in_flight_on_the_old_model_and_frees_it(
    make_engine, tiny_checkpoint: Path, other_checkpoint: Path
) -> None:
    engine = make_engine()
    reference_old = generate(engine, "Hello", max_tokens=60, temperature=0).output_ids
    seq, sink = submit(engine, "Hello", max_tokens=60, temperature=0)
    wait_until(lambda: seq.output_ids, what="the old model to start")
    outcome: dict = {}
    swapper = threading.Thread(target=lambda: outcome.update(engine.swap(str(other_checkpoint), "fp32", "cpu")))
    swapper.start()
    wait_until(lambda: engine.active_model()["id"] == "tiny-moe-v2", what="the new model to become active")
    new = generate(engine, "Hello", max_tokens=60, temperature=0)
    swapper.join(60)
    assert sink.result().reason == "length"
    assert seq.output_ids == reference_old
    assert new.output_ids != reference_old
    assert outcome["previous"]["id"] == "tiny-moe" and outcome["previous"]["drained"]
    assert outcome["previous"]["freed_bytes"] > 0
    assert [lane.model_id for lane in engine.lanes()] == ["tiny-moe-v2"]


def test_perplexity_scores_every_token_plus_end_of_text(engine: Engine) -> None:
    texts = ["hello world", "abc"]
    out = engine.perplexity(texts)
    model, nll, count = engine.active_lane().runner.model, 0.0, 0
    for text in texts:
        ids = torch.tensor([256, *text.encode(), 257])
        with torch.inference_mode():
            logits = model(ids[None, :-1])[0]
        nll += float(F.cross_entropy(logits, ids[1:], reduction="sum"))
        count += len(ids) - 1
    assert out["tokens"] == count == len("hello world") + 1 + len("abc") + 1
    assert out["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_an_idle_engine_is_healthy_however_long_it_waits(tiny_checkpoint: Path) -> None:
    now = [1000.0]
    engine = Engine(WorkerConfig(stall_timeout_s=1.0), clock=lambda: now[0]).start()
    try:
        engine.load(str(tiny_checkpoint), "fp32", "cpu")
        now[0] += 3600
        ok, body = engine.health()
        assert ok and body["status"] == "ok" and body["last_progress_age_s"] >= 3600
    finally:
        engine.stop()
    ok, body = engine.health()
    assert not ok and body["reason"] == "the engine thread is not running"


def test_a_control_call_to_a_stuck_engine_times_out_without_applying(engine: Engine) -> None:
    from inference.errors import Unavailable

    with Stall(engine) as stall:
        submit(engine, "a", max_tokens=2)
        assert stall.entered.wait(30)
        with pytest.raises(Unavailable, match="nothing was changed"):
            engine.call(lambda: engine.update_config({"max_batch_size": 3}), timeout=0.2)
    assert generate(engine, "b", max_tokens=2).finish_reason == "length"
    assert engine.config.max_batch_size == 32
