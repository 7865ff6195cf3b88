"""Sessions: KV reuse across turns, expiry that frees memory, caps that bound it."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from inference.bridge import generate
from inference.engine import Engine
from inference.errors import Conflict, NotFound
from inference.stats import rss_bytes
from tests.inference.helpers import TINY, Stall, submit, wait_until

KV_BYTES_PER_TOKEN = TINY.n_layers * 2 * TINY.n_kv_heads * TINY.head_dim * 4


def test_the_second_turn_only_prefills_the_new_tokens(engine: Engine) -> None:
    runner = engine.active_lane().runner
    first = generate(engine, "Hello there. ", session_id="s1", max_tokens=10, temperature=0)
    before = runner.prefilled_tokens
    second = generate(engine, "And more.", session_id="s1", max_tokens=10, temperature=0)
    # the cache holds <bos> + prompt + all but the last output token (sampled, never fed back)
    cached = 1 + len("Hello there. ") + 10 - 1
    assert second.usage["prompt_tokens_details"]["cached_tokens"] == cached
    assert runner.prefilled_tokens - before == 1 + len("And more.")
    assert second.usage["prompt_tokens"] == 1 + len("Hello there. ") + len(first.text) + len("And more.")


def test_a_session_turn_generates_what_the_whole_conversation_would(engine: Engine) -> None:
    first = generate(engine, "Hello there. ", session_id="s1", max_tokens=12, temperature=0)
    second = generate(engine, "And more.", session_id="s1", max_tokens=12, temperature=0)
    fresh = generate(engine, "Hello there. " + first.text + "And more.", max_tokens=12, temperature=0)
    assert second.output_ids == fresh.output_ids
    assert second.usage["prompt_tokens_details"]["cached_tokens"] > 0


def test_sessions_report_their_kv_bytes_and_expiry_frees_them(engine: Engine) -> None:
    for i in range(5):
        generate(engine, "hello", session_id=f"s{i}", max_tokens=5, temperature=0)
    tokens = 1 + 5 + 5 - 1
    listed = engine.sessions.list()
    assert [s["kv_cache_bytes"] for s in listed] == [tokens * KV_BYTES_PER_TOKEN] * 5
    assert [s["tokens"] for s in listed] == [tokens] * 5 and all(s["turns"] == 1 for s in listed)
    out = engine.expire_sessions(idle_s=0)
    assert out["expired"] == 5 and out["freed_bytes"] == 5 * tokens * KV_BYTES_PER_TOKEN
    assert engine.sessions.list() == [] and engine.sessions.kv_bytes == 0
    assert out["torch_allocated_bytes_after"] == out["torch_allocated_bytes_before"] - out["freed_bytes"]


def test_expiring_large_sessions_gives_the_memory_back_to_the_os(make_engine, tmp_path: Path) -> None:
    from tests.inference.helpers import make_checkpoint

    cfg = TINY.__class__(**{**TINY.__dict__, "n_kv_heads": 4, "d_model": 128, "max_seq_len": 512})
    engine = make_engine(make_checkpoint(tmp_path / "wide", cfg))
    for i in range(60):
        generate(engine, "x" * 400, session_id=f"big{i}", max_tokens=2, temperature=0)
    gc.collect()
    held = engine.sessions.kv_bytes
    assert held >= 60 * 400 * cfg.n_layers * 2 * 4 * 32 * 4  # ~100 MB of KV caches
    out = engine.expire_sessions(idle_s=0)
    assert out["freed_bytes"] == held
    assert out["rss_bytes_before"] - out["rss_bytes_after"] > 0.5 * held, out
    assert rss_bytes() < out["rss_bytes_before"] - 0.5 * held


def test_the_engine_expires_idle_sessions_by_itself(make_engine) -> None:
    engine = make_engine(session_timeout_s=0.2, session_sweep_interval_s=0.05)
    generate(engine, "hello", session_id="short-lived", max_tokens=3)
    assert len(engine.sessions) == 1
    wait_until(lambda: len(engine.sessions) == 0, what="the sweep to expire the session")
    assert engine.sessions.expired_total == 1 and engine.sessions.kv_bytes == 0


def test_the_session_count_cap_evicts_the_least_recently_used(make_engine) -> None:
    engine = make_engine(max_sessions=3)
    for i in range(5):
        generate(engine, "hello", session_id=f"s{i}", max_tokens=3)
    assert [s["id"] for s in engine.sessions.list()] == ["s2", "s3", "s4"]
    assert engine.sessions.evicted_total == 2


def test_the_kv_byte_cap_drops_old_caches_but_keeps_the_conversation(make_engine) -> None:
    per_session = (1 + 5 + 5 - 1) * KV_BYTES_PER_TOKEN
    engine = make_engine(max_session_kv_bytes=int(1.5 * per_session))
    generate(engine, "hello", session_id="a", max_tokens=5, temperature=0)
    generate(engine, "hello", session_id="b", max_tokens=5, temperature=0)
    assert engine.sessions.kv_bytes == per_session
    by_id = {s["id"]: s for s in engine.sessions.list()}
    assert by_id["a"]["kv_cache_bytes"] == 0 and by_id["b"]["kv_cache_bytes"] == per_session
    again = generate(engine, "more", session_id="a", max_tokens=5, temperature=0)
    assert again.usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert again.usage["prompt_tokens"] > 1 + len("hello") + len("more")  # the transcript was kept


def test_a_busy_session_refuses_a_second_request(engine: Engine) -> None:
    with Stall(engine) as stall:
        submit(engine, "hello", session_id="busy", max_tokens=3)
        assert stall.entered.wait(30)
        with pytest.raises(Conflict, match="already running"):
            submit(engine, "again", session_id="busy", max_tokens=3)


def test_deleting_a_session_frees_it(engine: Engine) -> None:
    generate(engine, "hello", session_id="gone", max_tokens=3)
    out = engine.delete_session("gone")
    assert out["deleted"] == "gone" and out["freed_bytes"] > 0
    with pytest.raises(NotFound):
        engine.delete_session("gone")


def test_a_long_conversation_is_truncated_from_the_left_and_keeps_working(engine: Engine) -> None:
    for _ in range(8):
        result = generate(engine, "another turn of talk. ", session_id="long", max_tokens=20, temperature=0)
        assert result.usage["prompt_tokens"] + 20 <= TINY.max_seq_len
    session = engine.sessions._sessions["long"]
    assert session.truncations > 0


def test_a_swap_drops_old_caches_but_sessions_continue_on_the_new_model(engine: Engine, other_checkpoint) -> None:
    generate(engine, "hello", session_id="s", max_tokens=4)
    engine.swap(str(other_checkpoint), "fp32", "cpu")
    assert engine.sessions.kv_bytes == 0
    result = generate(engine, " again", session_id="s", max_tokens=4)
    assert result.usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert result.usage["prompt_tokens"] == 1 + len("hello") + 4 + len(" again")
