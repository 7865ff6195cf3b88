"""Control routes under ``/control`` (the control token is checked by the server's gate before any route runs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.engine import Engine
from inference.errors import InvalidRequest
from inference.faults import Faults
from inference.protocol import WorkerConfig, describe
from inference.report import engine_stats
from inference.schemas import ExpireRequest, LoadRequest, PerplexityRequest
from inference.sessions import check_session_id

router = APIRouter(prefix="/control")


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


@router.get("/config")
def get_config(request: Request) -> dict[str, Any]:
    """The live serving config."""
    return _engine(request).config.to_dict()


@router.get("/config/schema")
def config_schema() -> dict[str, Any]:
    """Every config field with its default, bounds and description."""
    return describe(WorkerConfig)


@router.patch("/config")
def patch_config(request: Request, changes: Any = Body(...)) -> dict[str, Any]:  # noqa: B008
    """Validate and apply changes live; unknown keys are a 400 naming them."""
    if not isinstance(changes, dict):
        raise InvalidRequest("the body must be a JSON object of config fields", None)
    return _engine(request).update_config(changes).to_dict()


@router.post("/load")
def load(request: Request, body: LoadRequest) -> dict[str, Any]:
    """Load a model when none is loaded (blocks until ready; progress in GET /control/status)."""
    info = _engine(request).load(body.path, body.precision, body.device, body.model_id, body.sha256)
    return {"model": info}


@router.post("/swap")
def swap(request: Request, body: LoadRequest) -> dict[str, Any]:
    """Load beside the active model, switch new requests to it, drain and free the old one."""
    return _engine(request).swap(body.path, body.precision, body.device, body.model_id, body.sha256)


@router.post("/unload")
def unload(request: Request) -> dict[str, Any]:
    """Let requests in flight finish, then free the model; /v1 answers 503 until a new load."""
    return {"unloaded": _engine(request).unload()}


@router.get("/status")
def status(request: Request) -> dict[str, Any]:
    """Phase (idle, loading, ready, failed), the active model, models draining, load progress."""
    engine = _engine(request)
    progress = engine.progress.to_dict()
    model = engine.active_model()
    phase = "loading" if progress["phase"] == "loading" else ("ready" if model else progress["phase"])
    draining = [lane.model_id for lane in engine.lanes() if lane.draining]
    return {"phase": phase, "model": model, "draining": draining, "loading": progress}


@router.get("/sessions")
def list_sessions(request: Request) -> list[dict[str, Any]]:
    """Every session, least recently used first."""
    return _engine(request).sessions.list()


@router.delete("/sessions/{session_id}")
def delete_session(request: Request, session_id: str) -> dict[str, Any]:
    """Delete a session and free its KV cache."""
    return _engine(request).delete_session(check_session_id(session_id))


@router.post("/sessions/expire")
def expire_sessions(request: Request, body: ExpireRequest | None = None) -> dict[str, Any]:
    """Expire sessions idle for ``idle_s`` (default: the configured session_timeout_s)."""
    return _engine(request).expire_sessions(body.idle_s if body else None)


@router.get("/stats")
def stats(request: Request) -> dict[str, Any]:
    """Memory, queue, throughput, sessions, expert shares, model and config."""
    return engine_stats(_engine(request))


@router.post("/perplexity")
def perplexity(request: Request, body: PerplexityRequest) -> dict[str, Any]:
    """Held-out scoring through the loaded model."""
    return _engine(request).perplexity(body.texts)


@router.post("/experts/reset")
def reset_experts(request: Request) -> dict[str, Any]:
    """Zero the expert activation counters."""
    _engine(request).reset_expert_counts()
    return {"reset": True}


def _faults(request: Request) -> Faults:
    """The worker's fault injection; 404 (as for an unknown route) unless it started with it enabled."""
    faults: Faults | None = getattr(request.app.state, "faults", None)
    if faults is None:
        raise StarletteHTTPException(404, "Not Found")
    return faults


@router.get("/faults")
def get_faults(request: Request) -> dict[str, Any]:
    """The injected faults and what they did so far (leaked bytes, failed requests)."""
    return _faults(request).to_dict()


@router.post("/faults")
def set_faults(request: Request, changes: Any = Body(...)) -> dict[str, Any]:  # noqa: B008
    """Set faults: ``leak_mb_per_min``, ``step_delay_ms``, ``fail_percent`` (fields left out keep their value)."""
    faults = _faults(request)
    if not isinstance(changes, dict):
        raise InvalidRequest("the body must be a JSON object of faults", None)
    return faults.update(changes)


@router.delete("/faults")
def clear_faults(request: Request) -> dict[str, Any]:
    """No faults any more; the leaked memory is freed."""
    return _faults(request).reset()
