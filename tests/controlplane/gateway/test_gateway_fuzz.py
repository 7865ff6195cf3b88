"""Fuzzing the gateway: arbitrary JSON (nested lists and objects, lone surrogates, huge numbers) and the real fields
with wrong types, to both inference endpoints with a valid token and a stub worker behind. Every answer is a 200 or
a 4xx in OpenAI's error format: never a 5xx, never an exception, never a hang (the client gives up after 30 s)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import auth

pytestmark = pytest.mark.django_db(transaction=True)

# 2 endpoints x EXAMPLES; well under a minute on a busy 2-core machine.
EXAMPLES = 400

odd_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "demo-cpu\x00", "🙂", "\u2028", "x" * 300]),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["user", "system", "assistant", "robot"]), json_values)},
    optional={"content": st.one_of(odd_text, json_values), "name": json_values},
)
fields = {
    "prompt": st.one_of(odd_text, st.lists(odd_text, max_size=3), json_values),
    "messages": st.one_of(st.lists(message, max_size=3), json_values),
    "stream": st.one_of(st.booleans(), json_values),
    "stream_options": st.one_of(st.fixed_dictionaries({}, optional={"include_usage": json_values}), json_values),
    "temperature": st.one_of(st.just(0), json_values),
    "top_p": json_values,
    "max_tokens": st.one_of(st.integers(-5, 10**12), json_values),
    "seed": json_values,
    "stop": json_values,
    "n": json_values,
    "user": json_values,
    "session_id": st.one_of(st.sampled_from(["s-1", "bad id!", ""]), json_values),
}
VALID = {
    "model": "demo-cpu",
    "prompt": "hi",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 4,
}
requests = st.one_of(
    # a valid body with one field changed: reaches the worker, the stream relay and the records often
    st.builds(lambda name, value: {**VALID, name: value}, st.sampled_from(sorted(fields)), st.one_of(*fields.values())),
    st.builds(lambda on, options: {**VALID, "stream": on, "stream_options": options}, st.booleans(), json_values),
    st.fixed_dictionaries({"model": st.one_of(st.just("demo-cpu"), json_values)}, optional=fields),
    json_values,
)


def nested(depth: int) -> bytes:
    return b'{"model": "demo-cpu", "prompt": ' + b"[" * depth + b"]" * depth + b"}"


def raw_bodies():
    return st.one_of(
        requests.map(lambda body: json.dumps(body).encode()),
        st.binary(max_size=64),
        st.integers(1, 3000).map(
            lambda depth: b'{"model": "demo-cpu", "prompt": ' + b"[" * depth + b"]" * depth + b"}"
        ),
    )


def assert_answer_is_ok_or_an_openai_client_error(response) -> None:
    assert response.status_code == 200 or 400 <= response.status_code < 500, (response.status_code, response.text)
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=raw_bodies())
async def test_any_body_gets_a_200_or_an_openai_client_error(gateway, token, stub_worker, path, raw):
    response = await gateway.post(path, headers={**auth(token), "Content-Type": "application/json"}, content=raw)
    assert_answer_is_ok_or_an_openai_client_error(response)
