"""The one table of metric series: every series the collector produces, its unit, its Prometheus family and its chart.

A series name is a dotted pattern with id parts in braces: ``gpu.{gpu}.util``, ``gpu.{gpu}.proc.{pid}.mem_used_bytes``,
``host.cpu_pct``, ``worker.{deployment}.rss_bytes``, ``worker.{deployment}.expert.{expert}.share``. Every part is a
number (GPU index, pid, deployment id, expert index). The node is not in the name: the sample store, the websocket
groups and the history API are per node, and ``/metrics`` labels every family with the host (``Hostname``) or the
worker (``deployment``) it comes from.

Everything else is derived from this table, so adding a series is one ``SERIES.register(...)`` here:

* ``/metrics`` (``prometheus.py``, ``gpu_prometheus.py``): one family per :class:`Export`, labelled by the id parts
  (``gpu`` -> the DCGM exporter's GPU labels, ``deployment`` -> ``deployment`` and ``model_name``, ``pid``,
  ``expert``); GPU families keep DCGM's names, worker families vLLM's, the rest ``lcp_*`` in base units;
* the live page (``page_table()``, sent with ``json_script``): which chart a series is drawn on, its legend, unit and
  scale;
* the websocket and the service's per-deployment filter (:func:`deployment_of`);
* the history API's check of series names (:func:`match`);
* the worker figures the service copies from ``/control/stats`` (entries with ``source="stats"``);
* the Grafana dashboard's test (every family a query reads is exported and declared here or a status family).

Entries are checked when registered (:mod:`controlplane.extensions`): a known unit, id parts from the known set,
Prometheus names that follow the naming rules (base units, ``_total`` counters, ``DCGM_FI_*`` only for GPU gauges),
a chart that exists and fits the unit, and a pattern that no other entry's names already match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from controlplane.extensions import Registry

__all__ = [
    "CHARTS",
    "ID_PARTS",
    "SCOPES",
    "SERIES",
    "UNITS",
    "Chart",
    "Export",
    "Series",
    "deployment_of",
    "exports",
    "markdown_table",
    "match",
    "page_table",
    "stats_fields",
]

UNITS = {
    "bytes": "bytes",
    "percent": "%, 0-100",
    "ratio": "0-1",
    "count": "a number of things (requests, sessions, CPUs, runnable tasks)",
    "tokens_per_second": "tokens/s",
    "seconds": "s",
    "celsius": "°C",
    "watts": "W",
    "megahertz": "MHz",
}
"""Known units (name -> how the docs write it)."""

ID_PARTS = ("gpu", "pid", "deployment", "expert")
"""Id parts a pattern may hold, each a number; each is a label on ``/metrics`` (``gpu`` as the DCGM GPU labels)."""

SCOPES = {"gpu": "gpu", "host": None, "worker": "deployment"}
"""First word of a series name -> the id part that must come second (host series have none)."""

SOURCES = {
    "nvml": "NVML",
    "host": "psutil",
    "stats": "the worker's /control/stats, copied as it is",
    "derived": "computed by the metrics service",
}

_PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")  # the Prometheus data model's rule
_LCP_NAME = re.compile(r"^lcp_[a-z0-9_]+$")
_DCGM_NAME = re.compile(r"^DCGM_FI_[A-Z0-9_]+$")
_SEGMENT = re.compile(r"^(?:[a-z][a-z0-9_]*|\{[a-z]+\})$")
_PLACEHOLDER = re.compile(r"\{([a-z]+)\}")


# --- charts on the live page ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chart:
    """A chart of the live page; its element is ``figure[data-chart=<name with hyphens>]``."""

    name: str
    title: str
    unit: str

    @property
    def dom_id(self) -> str:
        return self.name.replace("_", "-")


def _check_chart(chart: Chart) -> None:
    if chart.unit not in UNITS:
        raise ValueError(f"unit {chart.unit!r} is not one of {', '.join(UNITS)}")
    if not chart.title:
        raise ValueError("a chart needs a title")


CHARTS = Registry[Chart]("chart", _check_chart)
for _chart in (
    Chart("gpu_util", "GPU utilisation", "percent"),
    Chart("gpu_mem", "GPU memory used", "bytes"),
    Chart("worker_mem", "Worker memory", "bytes"),
    Chart("tokens", "Tokens per second", "tokens_per_second"),
    Chart("queue", "Queue and running batch", "count"),
    Chart("sessions", "Open sessions", "count"),
    Chart("experts", "Expert activation share", "percent"),
    Chart("host_cpu", "Host CPU", "percent"),
    Chart("host_mem", "Host memory", "bytes"),
):
    CHARTS.register(_chart)


# --- series -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Export:
    """One Prometheus family of a series: ``value * scale`` is exported under ``name``.

    ``name`` is the name as it appears in the text format (a counter's with ``_total``). ``lcp_*`` names are in base
    units; ``DCGM_FI_*`` names keep the DCGM exporter's name and unit (framebuffer memory in MiB, clocks in MHz), so
    dashboards written for DCGM work unchanged.
    """

    name: str
    help: str
    type: str = "gauge"
    scale: float = 1.0


@dataclass(frozen=True)
class Series:
    """One kind of series. ``legend`` is its line's label on ``chart``, with the pattern's id parts and ``{worker}``
    (the deployment's name)."""

    name: str
    pattern: str
    label: str
    unit: str
    source: str
    prometheus: tuple[Export, ...] = ()
    chart: str | None = None
    legend: str = ""

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.pattern))

    @property
    def scope(self) -> str:
        return self.pattern.split(".", 1)[0]

    @property
    def regex(self) -> str:
        """The pattern as a regular expression with one ``(\\d+)`` group per id part (Python and JavaScript)."""
        pieces = _PLACEHOLDER.split(self.pattern)  # literal, part, literal, part, ..., literal
        return "^" + "".join(r"(\d+)" if i % 2 else re.escape(p) for i, p in enumerate(pieces)) + "$"

    @property
    def chart_scale(self) -> float:
        """What a value is multiplied by on its chart (a 0-1 ratio drawn on a percent chart: 100)."""
        return 100.0 if self.chart and self.unit == "ratio" and CHARTS[self.chart].unit == "percent" else 1.0

    def example(self) -> str:
        """A name of this series, every id part 0."""
        return _PLACEHOLDER.sub("0", self.pattern)


def _check_export(entry: Series, export: Export) -> None:
    name = export.name
    if not _PROMETHEUS_NAME.match(name) or name.startswith("__"):
        raise ValueError(f"{name!r} is not a valid Prometheus metric name")
    if export.type not in ("gauge", "counter"):
        raise ValueError(f"{name}: type {export.type!r} is neither gauge nor counter")
    if (export.type == "counter") != name.endswith("_total"):
        raise ValueError(f"{name}: counters, and only counters, end in _total")
    if not export.help:
        raise ValueError(f"{name}: give a help text")
    if _DCGM_NAME.match(name):
        if entry.scope != "gpu" or export.type != "gauge":
            raise ValueError(f"{name}: DCGM names are for GPU gauges only")
        return
    if not _LCP_NAME.match(name):
        raise ValueError(f"{name}: names are lcp_ and lower-case words (or a DCGM exporter name for a GPU)")
    if entry.unit == "bytes" and not (name.endswith("_bytes") and export.scale == 1.0):
        raise ValueError(f"{name}: a series in bytes is exported in bytes, named *_bytes")
    if name.endswith("_bytes") and entry.unit != "bytes":
        raise ValueError(f"{name}: only a series in bytes may be named *_bytes")
    if entry.unit == "seconds" and not name.endswith("_seconds"):
        raise ValueError(f"{name}: a series in seconds is named *_seconds")
    if entry.unit == "percent" and not (name.endswith("_ratio") and export.scale == 0.01):
        raise ValueError(f"{name}: a percentage is exported as a 0-1 *_ratio (scale 0.01), the base unit")


def _check_series(entry: Series) -> None:
    if entry.unit not in UNITS:
        raise ValueError(f"unit {entry.unit!r} is not one of {', '.join(UNITS)}")
    if entry.source not in SOURCES:
        raise ValueError(f"source {entry.source!r} is not one of {', '.join(SOURCES)}")
    if not entry.label:
        raise ValueError("give a label")
    segments = entry.pattern.split(".")
    if not all(_SEGMENT.match(s) for s in segments):
        raise ValueError(f"pattern {entry.pattern!r}: dotted lower-case words and {{id}} parts")
    parts = entry.parts
    unknown = [p for p in parts if p not in ID_PARTS]
    if unknown or len(set(parts)) != len(parts):
        raise ValueError(f"pattern {entry.pattern!r}: id parts are {', '.join(ID_PARTS)}, each at most once")
    if entry.scope not in SCOPES:
        raise ValueError(f"pattern {entry.pattern!r} starts with one of {', '.join(SCOPES)}")
    scope_part = SCOPES[entry.scope]
    expected_second = f"{{{scope_part}}}" if scope_part else None
    if (segments[1] if len(segments) > 1 else None) != expected_second and scope_part:
        raise ValueError(f"pattern {entry.pattern!r}: {entry.scope} series are {entry.scope}.{{{scope_part}}}.…")
    if not scope_part and parts:
        raise ValueError(f"pattern {entry.pattern!r}: host series have no id parts")
    if entry.source == "stats" and (len(segments) != 3 or parts != ("deployment",)):
        raise ValueError("a stats series is worker.{deployment}.<the /control/stats field>")
    for export in entry.prometheus:
        _check_export(entry, export)
    taken = {e.name for other in SERIES for e in other.prometheus}
    names = [e.name for e in entry.prometheus]
    if len(set(names)) != len(names) or taken & set(names):
        raise ValueError(f"Prometheus names {', '.join(sorted(taken & set(names)) or names)} are taken already")
    if entry.chart is not None:
        chart = CHARTS.get(entry.chart)
        if chart is None:
            raise ValueError(f"chart {entry.chart!r} is not one of {', '.join(CHARTS.names())}")
        if chart.unit != entry.unit and (entry.unit, chart.unit) != ("ratio", "percent"):
            raise ValueError(f"a series in {entry.unit} cannot go on the {chart.unit} chart {chart.name}")
        allowed = set(parts) | ({"worker"} if "deployment" in parts else set())
        if not entry.legend or not set(_PLACEHOLDER.findall(entry.legend)) <= allowed:
            raise ValueError(f"legend {entry.legend!r}: give one, using only {{{'}, {'.join(sorted(allowed))}}}")
    if not entry.prometheus and entry.chart is None:
        raise ValueError("a series nothing exports or draws: give it a Prometheus family or a chart")
    mine = re.compile(entry.regex)
    for other in SERIES:
        if mine.match(other.example()) or re.match(other.regex, entry.example()):
            raise ValueError(f"pattern {entry.pattern!r} overlaps {other.name} ({other.pattern})")


SERIES = Registry[Series]("series", _check_series)

MiB = 1024 * 1024


def _gauge(name: str, text: str, scale: float = 1.0) -> Export:
    return Export(name, text, "gauge", scale)


def _counter(name: str, text: str) -> Export:
    return Export(name, text, "counter")


def _register(*entries: Series) -> None:
    for entry in entries:
        SERIES.register(entry)


# GPUs (NVML), named on /metrics as NVIDIA's DCGM exporter names them.
_register(
    Series(
        "gpu_util",
        "gpu.{gpu}.util",
        "GPU utilisation",
        "percent",
        "nvml",
        (_gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),),
        chart="gpu_util",
        legend="GPU {gpu}",
    ),
    Series(
        "gpu_mem_util",
        "gpu.{gpu}.mem_util",
        "GPU memory-controller busy time",
        "percent",
        "nvml",
        (_gauge("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %)."),),
    ),
    Series(
        "gpu_mem_used",
        "gpu.{gpu}.mem_used_bytes",
        "GPU memory used",
        "bytes",
        "nvml",
        (
            _gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", 1 / MiB),
            _gauge("lcp_gpu_memory_used_bytes", "GPU memory used (total minus free), in bytes."),
        ),
        chart="gpu_mem",
        legend="GPU {gpu}",
    ),
    Series(
        "gpu_mem_free",
        "gpu.{gpu}.mem_free_bytes",
        "GPU memory free",
        "bytes",
        "nvml",
        (
            _gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", 1 / MiB),
            _gauge("lcp_gpu_memory_free_bytes", "GPU memory free, in bytes."),
        ),
    ),
    Series(
        "gpu_mem_total",
        "gpu.{gpu}.mem_total_bytes",
        "GPU memory installed",
        "bytes",
        "nvml",
        (_gauge("lcp_gpu_memory_total_bytes", "GPU memory installed, in bytes."),),
    ),
    Series(
        "gpu_temperature",
        "gpu.{gpu}.temperature_c",
        "GPU temperature",
        "celsius",
        "nvml",
        (_gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),),
    ),
    Series(
        "gpu_power",
        "gpu.{gpu}.power_w",
        "GPU power draw",
        "watts",
        "nvml",
        (_gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),),
    ),
    Series(
        "gpu_power_limit",
        "gpu.{gpu}.power_limit_w",
        "GPU power limit",
        "watts",
        "nvml",
        (_gauge("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "Power limit the driver enforces (in W)."),),
    ),
    Series(
        "gpu_sm_clock",
        "gpu.{gpu}.sm_clock_mhz",
        "GPU SM clock",
        "megahertz",
        "nvml",
        (_gauge("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)."),),
    ),
    Series(
        "gpu_mem_clock",
        "gpu.{gpu}.mem_clock_mhz",
        "GPU memory clock",
        "megahertz",
        "nvml",
        (_gauge("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz)."),),
    ),
    Series(
        "gpu_process_mem",
        "gpu.{gpu}.proc.{pid}.mem_used_bytes",
        "GPU memory of one process",
        "bytes",
        "nvml",
        (_gauge("lcp_gpu_process_memory_used_bytes", "GPU memory used by one process on one GPU, in bytes."),),
    ),
)

# The host (psutil).
_register(
    Series(
        "host_cpu",
        "host.cpu_pct",
        "Host CPU busy",
        "percent",
        "host",
        (_gauge("lcp_host_cpu_usage_ratio", "Busy share of all host CPUs since the previous reading (0-1).", 0.01),),
        chart="host_cpu",
        legend="busy",
    ),
    Series(
        "host_cpus",
        "host.cpu_count",
        "Host CPUs",
        "count",
        "host",
        (_gauge("lcp_host_cpus", "Logical CPUs of the host."),),
    ),
    Series(
        "host_load1",
        "host.load1",
        "Host load, 1 min",
        "count",
        "host",
        (_gauge("lcp_host_load1", "Host load average over 1 minute."),),
    ),
    Series(
        "host_load5",
        "host.load5",
        "Host load, 5 min",
        "count",
        "host",
        (_gauge("lcp_host_load5", "Host load average over 5 minutes."),),
    ),
    Series(
        "host_load15",
        "host.load15",
        "Host load, 15 min",
        "count",
        "host",
        (_gauge("lcp_host_load15", "Host load average over 15 minutes."),),
    ),
    Series(
        "host_mem_total",
        "host.mem_total_bytes",
        "Host memory installed",
        "bytes",
        "host",
        (_gauge("lcp_host_memory_total_bytes", "Host physical memory, in bytes."),),
        chart="host_mem",
        legend="total",
    ),
    Series(
        "host_mem_available",
        "host.mem_available_bytes",
        "Host memory available",
        "bytes",
        "host",
        (_gauge("lcp_host_memory_available_bytes", "Host memory available without swapping, bytes."),),
    ),
    Series(
        "host_mem_used",
        "host.mem_used_bytes",
        "Host memory used",
        "bytes",
        "host",
        (_gauge("lcp_host_memory_used_bytes", "Host memory in use (total minus available), in bytes."),),
        chart="host_mem",
        legend="used",
    ),
    Series(
        "host_swap_total",
        "host.swap_total_bytes",
        "Host swap",
        "bytes",
        "host",
        (_gauge("lcp_host_swap_total_bytes", "Host swap space, in bytes."),),
    ),
    Series(
        "host_swap_used",
        "host.swap_used_bytes",
        "Host swap used",
        "bytes",
        "host",
        (_gauge("lcp_host_swap_used_bytes", "Host swap in use, in bytes."),),
    ),
)

# Workers: their /control/stats, named on /metrics in vLLM's style.
_register(
    Series(
        "worker_rss",
        "worker.{deployment}.rss_bytes",
        "Worker resident memory",
        "bytes",
        "stats",
        (_gauge("lcp_worker_resident_memory_bytes", "Resident memory of the worker process."),),
        chart="worker_mem",
        legend="{worker} RSS",
    ),
    Series(
        "worker_torch_allocated",
        "worker.{deployment}.torch_allocated_bytes",
        "Worker torch allocated",
        "bytes",
        "stats",
        (_gauge("lcp_worker_torch_allocated_bytes", "Memory held by torch tensors."),),
        chart="worker_mem",
        legend="{worker} torch allocated",
    ),
    Series(
        "worker_torch_reserved",
        "worker.{deployment}.torch_reserved_bytes",
        "Worker torch reserved",
        "bytes",
        "stats",
        (_gauge("lcp_worker_torch_reserved_bytes", "Memory reserved by torch's allocator."),),
    ),
    Series(
        "worker_kv_cache",
        "worker.{deployment}.kv_cache_bytes",
        "Worker KV cache",
        "bytes",
        "stats",
        (_gauge("lcp_worker_kv_cache_bytes", "KV-cache bytes: the batch pool plus open sessions."),),
        chart="worker_mem",
        legend="{worker} KV cache",
    ),
    Series(
        "worker_weights",
        "worker.{deployment}.weight_bytes",
        "Worker model weights",
        "bytes",
        "stats",
        (_gauge("lcp_worker_weight_bytes", "Bytes of the loaded model's weights."),),
    ),
    Series(
        "worker_gpu_mem",
        "worker.{deployment}.gpu_mem_bytes",
        "Worker GPU memory (NVML, its pid on every GPU)",
        "bytes",
        "derived",
        (_gauge("lcp_worker_gpu_memory_used_bytes", "GPU memory of the worker process (NVML)."),),
        chart="worker_mem",
        legend="{worker} GPU memory",
    ),
    Series(
        "worker_sessions",
        "worker.{deployment}.sessions",
        "Open sessions",
        "count",
        "stats",
        (_gauge("lcp_worker_sessions", "Open sessions (each holds its KV cache until it ends or expires)."),),
        chart="sessions",
        legend="{worker}",
    ),
    Series(
        "worker_waiting",
        "worker.{deployment}.queue_depth",
        "Requests waiting",
        "count",
        "stats",
        (_gauge("lcp_worker_num_requests_waiting", "Requests waiting for a batch slot."),),
        chart="queue",
        legend="{worker} waiting",
    ),
    Series(
        "worker_running",
        "worker.{deployment}.running",
        "Requests running",
        "count",
        "stats",
        (_gauge("lcp_worker_num_requests_running", "Sequences in the running batch."),),
        chart="queue",
        legend="{worker} running",
    ),
    Series(
        "worker_tokens_per_s",
        "worker.{deployment}.tokens_per_s",
        "Tokens generated per second",
        "tokens_per_second",
        "stats",
        (_gauge("lcp_worker_generation_tokens_per_second", "Tokens generated per second, last 10 s."),),
        chart="tokens",
        legend="{worker}",
    ),
    Series(
        "worker_batch_size_mean",
        "worker.{deployment}.batch_size_mean",
        "Mean batch size over the last tick",
        "count",
        "derived",
        (_gauge("lcp_worker_batch_size_mean", "Mean sequences per forward pass over the last collector tick."),),
    ),
    Series(
        "worker_requests",
        "worker.{deployment}.requests_total",
        "Requests finished",
        "count",
        "stats",
        (_counter("lcp_worker_requests_total", "Requests the worker finished."),),
    ),
    Series(
        "worker_errors",
        "worker.{deployment}.errors_total",
        "Requests that failed",
        "count",
        "stats",
        (_counter("lcp_worker_request_errors_total", "Requests that ended in an error."),),
    ),
    Series(
        "worker_rejected",
        "worker.{deployment}.rejected_total",
        "Requests rejected",
        "count",
        "stats",
        (_counter("lcp_worker_requests_rejected_total", "Requests refused because the queue was full."),),
    ),
    Series(
        "worker_prompt_tokens",
        "worker.{deployment}.prompt_tokens_total",
        "Prompt tokens",
        "count",
        "stats",
        (_counter("lcp_worker_prompt_tokens_total", "Prompt tokens processed."),),
    ),
    Series(
        "worker_generation_tokens",
        "worker.{deployment}.generation_tokens_total",
        "Generated tokens",
        "count",
        "stats",
        (_counter("lcp_worker_generation_tokens_total", "Tokens generated."),),
    ),
    Series(
        "worker_expert_share",
        "worker.{deployment}.expert.{expert}.share",
        "Expert activation share",
        "ratio",
        "derived",
        (
            _gauge(
                "lcp_worker_expert_activation_share",
                "Share of routed token-slots each expert received since the model loaded (all MoE layers).",
            ),
        ),
        chart="experts",
        legend="{worker} expert {expert}",
    ),
)


# --- reading the table ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _compiled() -> tuple[tuple[re.Pattern[str], Series], ...]:
    return tuple((re.compile(entry.regex), entry) for entry in SERIES)


def _clear() -> None:
    """Forget the compiled table (after a test registers or removes an entry)."""
    _compiled.cache_clear()
    match.cache_clear()


@lru_cache(maxsize=8192)
def match(name: str) -> tuple[Series, dict[str, int]] | None:
    """The entry a series name belongs to and its id parts (``{"gpu": 0, "pid": 4242}``), or None."""
    for regex, entry in _compiled():
        found = regex.match(name)
        if found:
            return entry, {part: int(value) for part, value in zip(entry.parts, found.groups(), strict=True)}
    return None


def deployment_of(name: str) -> int | None:
    """The deployment a series belongs to (its ``{deployment}`` part), or None (GPU, host or unknown series)."""
    found = match(name)
    return found[1].get("deployment") if found else None


def stats_fields() -> tuple[str, ...]:
    """The ``/control/stats`` fields the service copies into ``worker.{id}.{field}``."""
    return tuple(entry.pattern.rsplit(".", 1)[1] for entry in SERIES if entry.source == "stats")


def exports(scope: str | None = None) -> list[tuple[Series, Export]]:
    """Every Prometheus family the table declares (of one scope: gpu, host, worker), in table order."""
    return [(entry, export) for entry in SERIES if scope in (None, entry.scope) for export in entry.prometheus]


def page_table() -> dict:
    """What the live page needs (``json_script`` in templates/live.html): the charts in order and the series on them."""
    return {
        "charts": [{"id": c.dom_id, "name": c.name, "title": c.title, "unit": c.unit} for c in CHARTS],
        "series": [
            {
                "name": entry.name,
                "pattern": entry.pattern,
                "regex": entry.regex,
                "parts": list(entry.parts),
                "label": entry.label,
                "unit": entry.unit,
                "chart": CHARTS[entry.chart].dom_id if entry.chart else None,
                "legend": entry.legend,
                "scale": entry.chart_scale,
            }
            for entry in SERIES
        ],
    }


def markdown_table() -> str:
    """The table as docs/monitoring.md shows it (a test checks the docs carry exactly this)."""
    lines = ["| series | unit | from | Prometheus | live chart |", "|---|---|---|---|---|"]
    for entry in SERIES:
        scales = {1 / MiB: " (MiB)", 0.01: " (0-1)"}
        families = ", ".join(f"`{e.name}`{scales.get(e.scale, '')}" for e in entry.prometheus)
        chart = CHARTS[entry.chart].title if entry.chart else ""
        source = SOURCES[entry.source]
        lines.append(f"| `{entry.pattern}` {entry.label} | {UNITS[entry.unit]} | {source} | {families} | {chart} |")
    return "\n".join(lines)
