"""THE worker contract: what crosses the boundary between the control plane and a worker process.

Both sides import this module (it needs only the standard library). From it are derived:

- the worker's command-line flags and ``--help`` (``add_flags`` / ``config_from_flags``);
- the worker's live config (``WorkerConfig``, ``GET``/``PATCH /control/config``) and its schema
  (``GET /control/config/schema``);
- the control plane's validation of a deployment's config, its form labels and units, the API schema's description
  of ``config``, the supervisor's command line (``to_argv``) and its set of live keys (``LIVE_KEYS``);
- the shape of the worker's ``/control/stats`` and ``/control/status`` replies (``StatsReply``, ``StatusReply``) and
  its load phases (``Phase``).

Every setting has a type, bounds, a default, a unit, a one-line doc and how a change is applied:

- ``live``: ``PATCH /control/config`` applies it between two engine steps, nothing restarts;
- ``reload``: the worker loads the model again beside the old one and switches (``POST /control/swap``);
- ``restart``: a start-up flag; a new worker process starts beside the old one, then traffic switches.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Literal, TypedDict, TypeVar

__all__ = [
    "FAULT_INJECTION_FLAG",
    "LIVE",
    "LIVE_KEYS",
    "PRECISIONS",
    "RELOAD",
    "RESTART",
    "SCHEDULING_MODES",
    "SETTINGS",
    "ConfigError",
    "Phase",
    "Setting",
    "StartupConfig",
    "StatsReply",
    "StatusReply",
    "WorkerConfig",
    "add_flags",
    "check_bounds",
    "check_router_weights",
    "config_from_flags",
    "describe",
    "markdown_table",
    "reply_keys",
    "setting",
    "settings_of",
    "to_argv",
]

Apply = Literal["live", "reload", "restart", "control_plane"]
LIVE: Apply = "live"
RELOAD: Apply = "reload"
RESTART: Apply = "restart"
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
SCHEDULING_MODES = ("continuous", "static")
UNITS = ("", "bytes", "ms", "s", "tokens", "sequences", "requests", "sessions", "threads", "share")
MAX_ROUTER_WEIGHT = 1000.0
GiB = 1 << 30


class ConfigError(ValueError):
    """A configuration value is out of bounds or inconsistent; ``param`` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _num(x: float) -> str:
    """1048576 rather than 1.04858e+06; 0.01 rather than 0.010000."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


_KIND_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}


def _type_name(value: object) -> str:
    names = {bool: "a boolean", str: "a string", list: "a list", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Setting:
    """One setting of the contract: its name, type, default, bounds (inclusive), unit, doc and how it applies."""

    name: str
    kind: type
    default: Any
    doc: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    apply: Apply = LIVE
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KIND_NAMES:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of bool, int, float, str, list")
        if self.unit not in UNITS:
            raise ValueError(f"{self.name}: unit {self.unit!r} is not one of {UNITS}")
        if not self.doc.endswith((".", ")")):
            raise ValueError(f"{self.name}: the doc must be one sentence ending with a full stop")
        if self.default is None and not self.nullable:
            raise ValueError(f"{self.name}: a default of None needs nullable=True")
        if not self.label:
            object.__setattr__(self, "label", _label(self.name, self.unit))
        if self.default is not None and (problem := self.problem(self.default)):
            raise ValueError(f"{self.name}: the default {self.default!r} {problem}")

    @property
    def flag(self) -> str:
        """The worker's command-line flag for this setting."""
        return "--" + self.name.replace("_", "-")

    def problem(self, value: object) -> str | None:
        """None when ``value`` is acceptable; otherwise what is wrong, e.g. ``must be at most 1024; got 5000``."""
        if value is None:
            return None if self.nullable else "may not be null"
        kind = self.kind
        if kind is bool and not isinstance(value, bool):
            return f"must be true or false; got {_type_name(value)}"
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"must be an integer; got {_type_name(value)}"
        if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"must be a number; got {_type_name(value)}"
        if kind is str and not isinstance(value, str):
            return f"must be a string; got {_type_name(value)}"
        if kind is list and not isinstance(value, list):
            return f"must be a list; got {_type_name(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"must be at least {_num(self.minimum)}; got {value}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {_num(self.maximum)}; got {value}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}; got {value!r}"
        return None

    def coerce(self, value: Any) -> Any:
        """The stored form of an accepted value (an int given for a float setting becomes a float)."""
        if self.kind is float and value is not None and not isinstance(value, bool):
            return float(value)
        if self.kind is list and value is not None:
            return [float(v) for v in value]
        return value

    def describe(self) -> dict[str, Any]:
        """The JSON form: what the control API's schema, the REST API's docs and the dashboard show."""
        out: dict[str, Any] = {
            "type": self.kind.__name__,
            "default": self.default,
            "unit": self.unit,
            "doc": self.doc,
            "apply": self.apply,
            "label": self.label,
        }
        for key, value in (("minimum", self.minimum), ("maximum", self.maximum)):
            if value is not None:
                out[key] = value
        if self.choices:
            out["choices"] = list(self.choices)
        if self.nullable:
            out["nullable"] = True
        return out

    def help_text(self) -> str:
        """``--help`` and form help: the doc, the unit, the bounds, the default and how it applies."""
        parts = [self.doc]
        bounds = _bounds(self)
        if bounds:
            parts.append(bounds)
        numeric = isinstance(self.default, int | float) and not isinstance(self.default, bool)
        default = "none" if self.default is None else _num(self.default) if numeric else json.dumps(self.default)
        parts.append(f"Default {default}{' ' + self.unit if self.unit and self.default is not None else ''}.")
        parts.append(
            {LIVE: "Applies live.", RELOAD: "Reloads the model.", RESTART: "Needs a new worker."}.get(
                self.apply, "Used by the control plane."
            )
        )
        return " ".join(parts)


def _bounds(s: Setting) -> str:
    if s.choices:
        return f"One of {', '.join(s.choices)}."
    unit = f" {s.unit}" if s.unit else ""
    if s.minimum is not None and s.maximum is not None:
        return f"From {_num(s.minimum)} to {_num(s.maximum)}{unit}."
    if s.minimum is not None:
        return f"At least {_num(s.minimum)}{unit}."
    return ""


_UNIT_SUFFIXES = {"_ms": "ms", "_s": "s", "_bytes": "bytes"}


def _label(name: str, unit: str) -> str:
    """``session_timeout_s`` -> ``Session timeout``: the unit is shown beside the label, not inside it."""
    for suffix, suffix_unit in _UNIT_SUFFIXES.items():
        if name.endswith(suffix) and unit == suffix_unit:
            name = name[: -len(suffix)]
    words = name.replace("_", " ").replace("kv", "KV").replace("ttl", "TTL")
    return words[:1].upper() + words[1:]


def setting(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    unit: str = "",
    choices: tuple[str, ...] = (),
    kind: type | None = None,
    apply: Apply = LIVE,
    label: str = "",
) -> Any:
    """A dataclass field that declares a setting of the contract (its name is the field's name)."""
    spec = {
        "kind": kind or type(default),
        "default": default,
        "doc": doc,
        "unit": unit,
        "minimum": lo,
        "maximum": hi,
        "choices": choices,
        "nullable": default is None,
        "apply": apply,
        "label": label,
    }
    if isinstance(default, list):
        raise ValueError("a list default must be None (mutable defaults are shared)")
    return field(default=default, metadata={"setting": spec})


def settings_of(cls: type) -> dict[str, Setting]:
    """The settings a config dataclass declares, by name, in declaration order."""
    return {f.name: Setting(name=f.name, **f.metadata["setting"]) for f in fields(cls) if "setting" in f.metadata}


def check_bounds(obj: Any, skip: tuple[str, ...] = ()) -> None:
    """Raise ConfigError for the first setting of ``obj`` whose value breaks its type or bounds."""
    for name, spec in settings_of(type(obj)).items():
        if name not in skip and (problem := spec.problem(getattr(obj, name))):
            raise ConfigError(name, f"{name} {problem}")


def describe(cls: type) -> dict[str, dict[str, Any]]:
    """Setting name -> its JSON description, for a config dataclass."""
    return {name: spec.describe() for name, spec in settings_of(cls).items()}


def check_router_weights(weights: object, n_experts: int | None = None, top_k: int | None = None) -> list[float]:
    """Router weights for a model with ``n_experts`` experts choosing ``top_k`` (None: check the shape only):
    one finite weight from 0 to 1000 per expert, at least ``top_k`` above 0. Returns them as floats; raises
    ConfigError naming ``router_weights``."""

    def fail(message: str) -> ConfigError:
        return ConfigError("router_weights", f"router_weights {message}")

    if not isinstance(weights, list) or not weights:
        raise fail(f"must be a non-empty list of numbers; got {weights!r}")
    if n_experts is not None and len(weights) != n_experts:
        raise fail(f"needs one weight per expert: {n_experts} values; got {len(weights)}")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
            raise fail(f"weight {i} must be a finite number; got {w!r}")
        if not 0 <= w <= MAX_ROUTER_WEIGHT:
            raise fail(f"weight {i} must be from 0 to {MAX_ROUTER_WEIGHT:g}; got {w}")
    positive = sum(1 for w in weights if w > 0)
    if top_k is not None and positive < top_k:
        raise fail(f"needs at least top_k={top_k} experts with a weight above 0; {positive} have one")
    return [float(w) for w in weights]


C = TypeVar("C")


def _updated(obj: C, changes: Mapping[str, Any]) -> C:
    known = settings_of(type(obj))
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ConfigError(unknown[0], f"unknown config field(s): {', '.join(unknown)}")
    for name, value in changes.items():
        if problem := known[name].problem(value):
            raise ConfigError(name, f"{name} {problem}")
    return replace(obj, **{name: known[name].coerce(value) for name, value in changes.items()})  # type: ignore[type-var]


@dataclass
class StartupConfig:
    """Settings a worker takes when it starts: changing one loads the model again, or starts a new worker."""

    precision: str = setting("fp32", "Precision the worker runs the weights in.", choices=PRECISIONS, apply=RELOAD)
    torch_threads: int | None = setting(
        None,
        "CPU threads for torch's kernels (none: every core but one where the control plane runs on the same node).",
        lo=1,
        hi=1024,
        unit="threads",
        kind=int,
        apply=RESTART,
    )

    def __post_init__(self) -> None:
        check_bounds(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WorkerConfig:
    """Live-tunable serving settings (``GET``/``PATCH /control/config``)."""

    max_batch_size: int = setting(
        32, "Most sequences decoded together in one engine step.", lo=1, hi=1024, unit="sequences"
    )
    max_wait_ms: float = setting(
        0.0,
        "How long an idle engine holds a new batch open for more requests (0: never wait).",
        lo=0,
        hi=10_000,
        unit="ms",
    )
    max_queue: int = setting(
        256, "Requests that may wait for a batch slot; past it requests get 429.", lo=1, hi=1_000_000, unit="requests"
    )
    prefill_token_budget: int = setting(
        2048, "Most prompt tokens prefilled in one engine step.", lo=1, hi=1 << 24, unit="tokens"
    )
    scheduling: str = setting(
        "continuous",
        "continuous: requests join and leave the batch between steps; static: a batch runs until its longest ends.",
        choices=SCHEDULING_MODES,
    )
    max_tokens_limit: int = setting(1024, "Largest max_tokens a request may ask for.", lo=1, hi=1 << 20, unit="tokens")
    default_max_tokens: int = setting(64, "max_tokens used when a request gives none.", lo=1, hi=1 << 20, unit="tokens")
    max_seq_len: int | None = setting(
        None,
        "Longest prompt + completion (none: the model's context length; larger values are capped to it).",
        lo=16,
        hi=1 << 20,
        unit="tokens",
        kind=int,
    )
    session_timeout_s: float = setting(
        600.0, "Idle time after which a session expires and frees its KV cache.", lo=0.01, hi=30 * 86400.0, unit="s"
    )
    session_sweep_interval_s: float = setting(
        5.0, "How often the engine looks for expired sessions.", lo=0.01, hi=3600.0, unit="s"
    )
    max_sessions: int = setting(
        4096,
        "Most sessions kept; the least recently used idle ones are evicted.",
        lo=1,
        hi=10_000_000,
        unit="sessions",
    )
    max_session_kv_bytes: int = setting(
        1 * GiB,
        "KV-cache bytes idle sessions may hold; past it the least recently used drop their cache (not transcript).",
        lo=0,
        hi=1 << 44,
        unit="bytes",
    )
    stall_timeout_s: float = setting(
        30.0, "An engine step running longer than this turns /health to 503.", lo=0.01, hi=86400.0, unit="s"
    )
    drain_timeout_s: float = setting(
        300.0,
        "How long a swap, unload or shutdown waits for requests in flight to finish.",
        lo=0,
        hi=86400.0,
        unit="s",
    )
    max_body_bytes: int = setting(
        1 << 20, "Largest HTTP request body accepted (413 past it).", lo=1024, hi=1 << 30, unit="bytes"
    )
    router_weights: list[float] | None = setting(  # noqa: RUF009 - setting() returns a dataclasses.field
        None,
        "One multiplier per expert on the router's gate probabilities, 0 to 1000 (none: all 1; 0: never chosen).",
        kind=list,
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check types, bounds and cross-field rules; ConfigError quotes the offending values."""
        check_bounds(self)
        check_worker_rules(asdict(self))
        if self.router_weights is not None:
            self.router_weights = check_router_weights(self.router_weights)

    def updated(self, changes: Mapping[str, Any]) -> WorkerConfig:
        """A validated copy with ``changes`` applied; unknown keys raise ConfigError naming them."""
        return _updated(self, changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def check_worker_rules(config: Mapping[str, Any]) -> None:
    """Cross-field rules of a worker config (given as a dict, so the control plane checks the same rules)."""
    default, limit = config.get("default_max_tokens"), config.get("max_tokens_limit")
    if default is not None and limit is not None and default > limit:
        raise ConfigError("default_max_tokens", f"default_max_tokens={default} exceeds max_tokens_limit={limit}")
    wait, stall = config.get("max_wait_ms"), config.get("stall_timeout_s")
    if wait is not None and stall is not None and wait >= stall * 1000:
        raise ConfigError(
            "max_wait_ms",
            f"max_wait_ms={wait} must be below stall_timeout_s={stall} (in ms), "
            "or a held batch would look like a stalled engine",
        )


STARTUP_SETTINGS = settings_of(StartupConfig)
WORKER_SETTINGS = settings_of(WorkerConfig)
#: Every setting of a worker, start-up first: what a deployment's config holds for its worker.
SETTINGS: dict[str, Setting] = {**STARTUP_SETTINGS, **WORKER_SETTINGS}
#: Settings ``PATCH /control/config`` applies without a restart.
LIVE_KEYS = frozenset(name for name, s in SETTINGS.items() if s.apply == LIVE)


# --- command line ----------------------------------------------------------------------------------------------------
def _parse_list(text: str) -> list[float]:
    """``1,1,0.5`` or ``[1, 1, 0.5]`` -> floats (argparse reports a ValueError as a bad value)."""
    text = text.strip()
    values = json.loads(text) if text.startswith("[") else [float(part) for part in text.split(",") if part.strip()]
    if not isinstance(values, list):
        raise ValueError(text)
    return [float(v) for v in values]


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, with its type, choices and a help text built from the contract."""
    group = parser.add_argument_group("worker settings (see docs/worker.md)")
    for spec in SETTINGS.values():
        kind: Any = _parse_list if spec.kind is list else spec.kind
        group.add_argument(
            spec.flag,
            dest=spec.name,
            type=kind,
            default=None,
            choices=spec.choices or None,
            metavar=spec.unit.upper() if spec.unit and not spec.choices else None,
            help=spec.help_text().replace("%", "%%"),
        )


def config_from_flags(args: argparse.Namespace) -> tuple[StartupConfig, WorkerConfig]:
    """The start-up and live configs a worker's flags give (flags left out keep their defaults)."""
    given = {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}
    startup = {k: v for k, v in given.items() if k in STARTUP_SETTINGS}
    return _updated(StartupConfig(), startup), _updated(
        WorkerConfig(), {k: v for k, v in given.items() if k not in startup}
    )


def to_argv(config: Mapping[str, Any]) -> list[str]:
    """The flags that start a worker with ``config`` (keys that are not worker settings are left out)."""
    argv: list[str] = []
    for name, spec in SETTINGS.items():
        value = config.get(name)
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, list) else str(value)
        argv += [spec.flag, text]
    return argv


# The worker's start flag that turns on ``/control/faults`` (inference/faults.py); the control plane passes it only when
# its WORKER_FAULT_INJECTION setting is on.
FAULT_INJECTION_FLAG = "--enable-fault-injection"


# --- replies ---------------------------------------------------------------------------------------------------------
class Phase(StrEnum):
    """Where a worker is with its model: the ``phase`` of ``/control/status`` (and of its ``loading``)."""

    IDLE = "idle"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class LoadProgress(TypedDict):
    phase: str
    percent: float
    message: str
    path: str | None
    model_id: str | None
    started_at: float | None
    finished_at: float | None
    error: str | None


class StatusReply(TypedDict):
    """``GET /control/status``."""

    phase: str
    model: dict[str, Any] | None
    draining: list[str]
    loading: LoadProgress


class ExpertShares(TypedDict):
    layers: list[list[float]]
    total: list[float]
    tokens_routed: int


class StatsReply(TypedDict):
    """``GET /control/stats``: memory (bytes), queue, counters since start (``_total``), throughput, experts."""

    rss_bytes: int
    torch_allocated_bytes: int
    torch_reserved_bytes: int
    torch_memory_source: str
    weight_bytes: int
    kv_cache_bytes: int
    kv_pool_bytes: int
    sessions: int
    session_kv_bytes: int
    sessions_expired_total: int
    sessions_evicted_total: int
    session_kv_dropped_total: int
    session_freed_bytes_total: int
    session_kv_bytes_each: dict[str, int]
    queue_depth: int
    running: int
    requests_total: int
    errors_total: int
    rejected_total: int
    cancelled_total: int
    prompt_tokens_total: int
    generation_tokens_total: int
    batch_size_histogram: dict[str, int]
    tokens_per_s: float
    expert_activation_shares: ExpertShares | None
    model: dict[str, Any] | None
    device: str | None
    precision: str | None
    draining: list[str]
    loading: LoadProgress
    config: dict[str, Any]
    uptime_s: float


def markdown_table() -> str:
    """The settings as the Markdown table docs/worker.md shows (a test keeps the docs equal to it)."""
    rows = ["| flag / key | default | bounds | unit | a change | meaning |", "|---|---|---|---|---|---|"]
    applies = {LIVE: "applies live", RELOAD: "reloads the model", RESTART: "new worker"}
    for spec in SETTINGS.values():
        default = "none" if spec.default is None else f"`{json.dumps(spec.default)}`"
        bounds = " / ".join(spec.choices) if spec.choices else _bounds(spec).removeprefix("From ").rstrip(".")
        bounds = bounds.removesuffix(f" {spec.unit}") if spec.unit else bounds
        rows.append(
            f"| `{spec.flag}` `{spec.name}` | {default} | {bounds or '-'} | {spec.unit or '-'} | "
            f"{applies[spec.apply]} | {spec.doc} |"
        )
    return "\n".join(rows) + "\n"


def reply_keys(reply: Any) -> frozenset[str]:
    """The keys a reply TypedDict declares (the worker's replies are tested against them)."""
    return frozenset(reply.__required_keys__ | reply.__optional_keys__)
