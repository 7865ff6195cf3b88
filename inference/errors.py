"""Errors the worker reports to clients. Each carries the HTTP status and the OpenAI error fields it maps to."""

from __future__ import annotations

from typing import Any


class WorkerError(Exception):
    """Base class: ``status`` (HTTP), ``type`` and ``code`` (OpenAI error JSON) and the ``param`` at fault."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, Any]:
        """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(WorkerError):
    """A field has a bad value (400)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class Unauthorized(WorkerError):
    """Missing or wrong bearer token (401)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(WorkerError):
    """Unknown model, session or route (404)."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(WorkerError):
    """The request clashes with the worker's state: a load in progress, a busy session (409)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(WorkerError):
    """Request body over ``max_body_bytes`` (413)."""

    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class Overloaded(WorkerError):
    """The queue is full; ``retry_after`` seconds is a hint for the client (429)."""

    status = 429
    type = "rate_limit_error"
    code = "overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoModel(WorkerError):
    """No model is loaded, or the only one is being unloaded (503)."""

    status = 503
    type = "server_error"
    code = "model_not_loaded"


class Unavailable(WorkerError):
    """The engine cannot do it now (e.g. a stuck step); retry later (503)."""

    status = 503
    type = "server_error"
    code = "engine_unavailable"


class CheckpointError(InvalidRequest):
    """A checkpoint is missing, corrupt or does not match its config; names the file and what is wrong."""

    code = "checkpoint_error"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"checkpoint {path}: {problem}", param="path")
        self.path = path
        self.problem = problem
