"""What the gateway checks in a request body before routing it: whatever it reads itself, and whatever would make the
worker fail rather than refuse (a lone surrogate cannot be encoded as UTF-8). Everything else is the worker's to
check (its 400s pass through). Each refusal is a 400 in OpenAI's format naming the field."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import GatewayError

# Real bodies nest a few levels (messages → parts → text); past this a body is refused before anything walks it.
MAX_DEPTH = 32
SURROGATE = re.compile("[\ud800-\udfff]")


def parse_body(raw: bytes) -> dict:
    """The body as a JSON object with a string ``model``, a boolean ``stream`` and an object ``stream_options``."""
    try:
        body = json.loads(raw or b"")
    except RecursionError:
        raise GatewayError(400, f"The body nests deeper than {MAX_DEPTH} levels.", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"The body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The body must be a JSON object.", code="invalid_json")
    check_values(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "'model' is required and must be a string.", param="model")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise GatewayError(400, "'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise GatewayError(400, "'stream_options' must be an object.", param="stream_options")
        if "include_usage" in options and not isinstance(options["include_usage"], bool):
            message = "'stream_options.include_usage' must be a boolean."
            raise GatewayError(400, message, param="stream_options.include_usage")
    return body


def _name(path: tuple[str | int, ...]) -> str:
    """``("messages", 0, "content")`` → ``messages[0].content``."""
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    return name


def check_values(body: dict) -> None:
    """400 for a body nested deeper than ``MAX_DEPTH`` or with a string (or key) that is not valid Unicode text
    (a lone surrogate such as ``\\ud800``), naming the field. Walks the body without recursion."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), body)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            raise GatewayError(400, f"The body nests deeper than {MAX_DEPTH} levels.", param=_name(path[:1]) or None)
        if isinstance(value, str):
            if SURROGATE.search(value):
                name = _name(path)
                raise GatewayError(400, f"'{name}' is not valid Unicode text (a lone surrogate).", param=name)
        elif isinstance(value, dict):
            for key, item in value.items():
                if SURROGATE.search(key):
                    name = _name(path) or "body"
                    raise GatewayError(400, f"A key in '{name}' is not valid Unicode text.", param=name)
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in enumerate(value))
