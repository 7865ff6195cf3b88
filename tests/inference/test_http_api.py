"""The OpenAI-compatible API through the official ``openai`` client against a real uvicorn server."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.inference.helpers import LiveServer, start_server, stop_server


@pytest.fixture
def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_loaded_model(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-moe"]


def test_a_completion_returns_text_and_usage(client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny-moe", prompt="Hello", max_tokens=7, temperature=0)
    assert out.object == "text_completion" and out.model == "tiny-moe"
    assert out.choices[0].finish_reason == "length" and len(out.choices[0].text) > 0
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (6, 7, 13)


def test_a_list_of_prompts_gives_one_choice_each(client: openai.OpenAI) -> None:
    single = client.completions.create(model="tiny-moe", prompt="b", max_tokens=5, temperature=0)
    out = client.completions.create(model="tiny-moe", prompt=["a", "b", "c"], max_tokens=5, temperature=0)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert out.choices[1].text == single.choices[0].text
    assert out.usage.completion_tokens == 15


def test_echo_prepends_the_prompt(client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny-moe", prompt="Hello", max_tokens=3, temperature=0, echo=True)
    assert out.choices[0].text.startswith("Hello") and len(out.choices[0].text) == len("Hello") + 3


def test_a_chat_completion_answers_as_assistant(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny-moe",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=6,
        temperature=0,
    )
    assert out.object == "chat.completion" and out.choices[0].message.role == "assistant"
    assert out.usage.prompt_tokens == 1 + len("system: Be brief.\nuser: Hi\nassistant: ")


def test_streaming_completion_chunks_add_up_to_the_plain_response(client: openai.OpenAI) -> None:
    plain = client.completions.create(model="tiny-moe", prompt="Hello", max_tokens=12, temperature=0)
    chunks = list(
        client.completions.create(
            model="tiny-moe", prompt="Hello", max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == plain.choices[0].text
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_streaming_chat_starts_with_the_role_and_ends_with_usage(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    plain = client.chat.completions.create(model="tiny-moe", messages=messages, max_tokens=10, temperature=0)
    stream = client.chat.completions.create(
        model="tiny-moe", messages=messages, max_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_the_raw_stream_is_server_sent_events_ending_with_done(live: LiveServer) -> None:
    body = {"model": "tiny-moe", "prompt": "Hi", "max_tokens": 4, "stream": True}
    with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "length"


def test_the_same_seed_gives_the_same_sample(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        out = client.completions.create(model="tiny-moe", prompt="Hello", max_tokens=16, temperature=1.0, seed=seed)
        return out.choices[0].text

    assert sample(42) == sample(42)
    assert len({sample(s) for s in (1, 2, 3, 4)}) > 1


def test_a_session_keeps_its_kv_cache_between_turns(client: openai.OpenAI, live: LiveServer) -> None:
    first = client.chat.completions.create(
        model="tiny-moe", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0,
        extra_body={"session_id": "chat-1"},
    )  # fmt: skip
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "More"},
    ]
    second = client.chat.completions.create(
        model="tiny-moe", messages=history, max_tokens=6, temperature=0, extra_headers={"X-Session-Id": "chat-1"}
    )
    fresh = client.chat.completions.create(model="tiny-moe", messages=history, max_tokens=6, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens > len("user: Hi\nassistant: ")
    assert second.usage.prompt_tokens == fresh.usage.prompt_tokens
    assert second.choices[0].message.content == fresh.choices[0].message.content
    sessions = httpx.get(live.url + "/control/sessions", headers=live.control_headers).json()
    assert [(s["id"], s["turns"]) for s in sessions] == [("chat-1", 2)]


def test_a_completion_session_appends_each_prompt(client: openai.OpenAI) -> None:
    client.completions.create(model="tiny-moe", prompt="One. ", max_tokens=4, extra_body={"session_id": "c"})
    out = client.completions.create(model="tiny-moe", prompt="Two. ", max_tokens=4, extra_body={"session_id": "c"})
    assert out.usage.prompt_tokens == 1 + len("One. ") + 4 + len("Two. ")
    assert out.usage.prompt_tokens_details.cached_tokens == 1 + len("One. ") + 3


def test_an_api_key_guards_v1_when_set(engine) -> None:
    server = start_server(engine, api_key="sk-secret")
    try:
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-secret", max_retries=0)
        assert good.completions.create(model="tiny-moe", prompt="a", max_tokens=2).choices[0].text is not None
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        stop_server(server)
