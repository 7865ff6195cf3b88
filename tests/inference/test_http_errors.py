"""Every bad input gets a 4xx with OpenAI's error JSON naming the field, and the worker keeps serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from inference.bridge import make_request
from inference.engine import Engine
from inference.protocol import WorkerConfig
from tests.inference.helpers import LiveServer, Stall, start_server, stop_server, wait_until

OK = {"model": "tiny-moe", "prompt": "Hello", "max_tokens": 3}
CHAT = {"model": "tiny-moe", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}


@pytest.fixture(scope="module")
def shared_live(tiny_checkpoint: Path):
    """One server for the cases that change nothing (faster than a server per case)."""
    engine = Engine(WorkerConfig()).start()
    engine.load(str(tiny_checkpoint), "fp32", "cpu")
    server = start_server(engine)
    yield server
    stop_server(server)
    engine.stop()


def _post(live: LiveServer, path: str, body: object, **kw: object) -> httpx.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    headers = {"content-type": "application/json", **kw.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.post(live.url + path, content=data, headers=headers, timeout=60, **kw)  # type: ignore[arg-type]


def _assert_error(resp: httpx.Response, status: int, param: str | None, fragment: str) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param, err
    assert fragment in err["message"], err
    return err


def _still_serving(live: LiveServer) -> None:
    resp = _post(live, "/v1/completions", OK)
    assert resp.status_code == 200, resp.text


COMPLETION_CASES = [
    ({**OK, "prompt": ""}, 400, "prompt", "must not be empty"),
    ({**OK, "prompt": "x" * 500}, 400, "prompt", "the prompt has 501 tokens but the model's context is 128"),
    ({**OK, "prompt": "x" * 100, "max_tokens": 50}, 400, "max_tokens", "together they exceed"),
    ({**OK, "max_tokens": 0}, 400, "max_tokens", "out of range [1, 1024]"),
    ({**OK, "max_tokens": 5000}, 400, "max_tokens", "out of range [1, 1024]"),
    ({**OK, "max_tokens": 128}, 400, "max_tokens", "leaves no room for a prompt"),
    ({**OK, "max_tokens": "5"}, 400, "max_tokens", "valid integer"),
    ({**OK, "max_tokens": 2.5}, 400, "max_tokens", "valid integer"),
    ({**OK, "temperature": "hot"}, 400, "temperature", "valid number"),
    ({**OK, "temperature": 3}, 400, "temperature", "less than or equal to 2"),
    ({**OK, "top_p": 0}, 400, "top_p", "greater than 0"),
    ({**OK, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "at most 4"),
    ({**OK, "stop": [""]}, 400, "stop", "non-empty"),
    ({**OK, "n": 2}, 400, "n", "Input should be 1"),
    ({**OK, "frobnicate": True}, 400, "frobnicate", "unrecognized request argument"),
    ({"model": "tiny-moe"}, 400, "prompt", "missing required parameter"),
    ({**OK, "prompt": 42}, 400, "prompt", "valid string"),
    ({**OK, "session_id": "bad id!"}, 400, "session_id", "1-128 characters"),
    ({**OK, "model": "gpt-4"}, 404, "model", "does not exist"),
    ("{not json", 400, None, "not valid JSON"),
    ("[1, 2]", 400, None, "invalid request body"),
]


@pytest.mark.parametrize(("body", "status", "param", "fragment"), COMPLETION_CASES)
def test_bad_completion_requests_are_4xx_and_name_the_field(shared_live, body, status, param, fragment) -> None:
    _assert_error(_post(shared_live, "/v1/completions", body), status, param, fragment)
    _still_serving(shared_live)


CHAT_CASES = [
    ({**CHAT, "messages": []}, 400, "messages", "at least 1 item"),
    ({**CHAT, "messages": "hi"}, 400, "messages", "valid list"),
    ({**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role", "Input should be"),
    ({**CHAT, "messages": [{"role": "user", "content": ""}]}, 400, "messages", "must contain some text"),
    ({**CHAT, "max_completion_tokens": 0}, 400, "max_completion_tokens", "out of range"),
    ({**CHAT, "messages": [{"role": "user", "content": "y" * 300}]}, 400, "messages", "context is 128 tokens"),
]


@pytest.mark.parametrize(("body", "status", "param", "fragment"), CHAT_CASES)
def test_bad_chat_requests_are_4xx_and_name_the_field(shared_live, body, status, param, fragment) -> None:
    _assert_error(_post(shared_live, "/v1/chat/completions", body), status, param, fragment)
    _still_serving(shared_live)


def test_an_oversized_body_is_413(live: LiveServer) -> None:
    big = {**OK, "prompt": "x" * (2 << 20)}
    _assert_error(_post(live, "/v1/completions", big), 413, None, "more than 1048576 bytes")
    _still_serving(live)


def test_an_overloaded_worker_answers_429_with_retry_after(live: LiveServer) -> None:
    live.engine.update_config({"max_queue": 1})
    with Stall(live.engine) as stall:
        first = live.engine.submit(make_request(live.engine, "a", max_tokens=2), lambda e: None)
        assert stall.entered.wait(30) and first is not None
        resp = _post(live, "/v1/completions", OK)
        err = _assert_error(resp, 429, None, "queue is full")
        assert err["type"] == "rate_limit_error" and resp.headers["retry-after"] == "1"
    wait_until(lambda: live.engine.queue_depth() == 0, what="the queue to drain")
    _still_serving(live)
    metrics = httpx.get(live.url + "/metrics").text
    assert "lcp_worker_requests_rejected_total 1.0" in metrics


def test_no_model_loaded_is_503_and_loading_again_recovers(live: LiveServer, tiny_checkpoint: Path) -> None:
    h = live.control_headers
    assert httpx.post(live.url + "/control/unload", headers=h, timeout=60).status_code == 200
    _assert_error(_post(live, "/v1/completions", OK), 503, None, "no model is loaded")
    missing = _post(live, "/control/load", {"path": str(tiny_checkpoint) + "-missing"}, headers=h)
    _assert_error(missing, 400, "path", "no such file or directory")
    assert httpx.get(live.url + "/control/status", headers=h).json()["phase"] == "failed"
    resp = _post(live, "/control/load", {"path": str(tiny_checkpoint), "device": "cpu"}, headers=h)
    assert resp.status_code == 200, resp.text
    _still_serving(live)


def test_loading_while_a_model_is_loaded_is_409(live: LiveServer, tiny_checkpoint: Path) -> None:
    resp = _post(live, "/control/load", {"path": str(tiny_checkpoint)}, headers=live.control_headers)
    _assert_error(resp, 409, "path", "already loaded")


def _swap(live: LiveServer, body: dict) -> httpx.Response:
    return _post(live, "/control/swap", body, headers=live.control_headers)


def test_a_missing_checkpoint_on_swap_is_400_naming_path(live: LiveServer, tmp_path: Path) -> None:
    _assert_error(_swap(live, {"path": str(tmp_path / "nope")}), 400, "path", "no such file or directory")
    _still_serving(live)


def test_a_corrupt_checkpoint_on_swap_is_400_naming_the_file(live, tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = Path(shutil.copytree(tiny_checkpoint, tmp_path / "bad"))
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[100] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(data))
    err = _assert_error(_swap(live, {"path": str(bad), "device": "cpu"}), 400, "path", "model.safetensors: sha256")
    assert err["code"] == "checkpoint_error"
    _still_serving(live)


def test_a_wrong_expected_sha256_on_swap_is_400(live: LiveServer, tiny_checkpoint: Path) -> None:
    _assert_error(_swap(live, {"path": str(tiny_checkpoint), "sha256": "a" * 64}), 400, "path", "expected aaaa")
    _still_serving(live)


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"precision": "fp16", "device": "cpu"}, "precision", "precision fp16 is not supported on cpu"),
        ({"precision": "fp8"}, "precision", "Input should be"),
        ({"device": "cuda:7"}, "device", "cuda:7"),
        ({"sha256": "xyz"}, "sha256", "should match pattern"),
    ],
)
def test_unsupported_load_options_are_400(shared_live, tiny_checkpoint, body: dict, param: str, fragment: str) -> None:
    _assert_error(_swap(shared_live, {"path": str(tiny_checkpoint), **body}), 400, param, fragment)
    _still_serving(shared_live)


@pytest.mark.parametrize(
    ("changes", "param", "fragment"),
    [
        ({"router_weights": [1.0, 1.0]}, "router_weights", "needs one weight per expert: 4 values; got 2"),
        ({"router_weights": [1.0, -2.0, 1.0, 1.0]}, "router_weights", "weight 1 must be from 0 to 1000; got -2.0"),
        ({"router_weights": [1.0, 0.0, 0.0, 0.0]}, "router_weights", "at least top_k=2"),
        ({"router_weights": "heavy"}, "router_weights", "must be a list; got a string"),
        ({"max_batch_size": 0}, "max_batch_size", "must be at least 1; got 0"),
        ({"max_batch_size": "8"}, "max_batch_size", "must be an integer"),
        ({"scheduling": "fifo"}, "scheduling", "must be one of continuous, static"),
        ({"default_max_tokens": 2000}, "default_max_tokens", "exceeds max_tokens_limit=1024"),
        ({"max_wait_ms": 5000, "stall_timeout_s": 2}, "max_wait_ms", "must be below stall_timeout_s=2"),
        ({"max_batch": 3, "zz": 1}, "max_batch", "unknown config field(s): max_batch, zz"),
    ],
)
def test_bad_config_changes_are_400_and_change_nothing(shared_live, changes: dict, param: str, fragment: str) -> None:
    before = shared_live.engine.config.to_dict()
    resp = httpx.patch(shared_live.url + "/control/config", json=changes, headers=shared_live.control_headers)
    _assert_error(resp, 400, param, fragment)
    assert shared_live.engine.config.to_dict() == before


def test_nan_router_weights_are_refused(live: LiveServer) -> None:
    body = '{"router_weights": [1.0, NaN, 1.0, 1.0]}'
    resp = httpx.patch(
        live.url + "/control/config", content=body, headers={**live.control_headers, "content-type": "application/json"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] in ("router_weights", None)


def test_unknown_routes_are_openai_style_404s(live: LiveServer) -> None:
    resp = httpx.get(live.url + "/v1/engines")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
