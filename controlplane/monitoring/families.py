"""Prometheus families built from the table of series (``series.py``): one family per declared export, labelled by
the source's labels (a GPU's DCGM labels, the host, the worker) and the series' other id parts (``pid``, ``expert``).

Used by ``gpu_prometheus.py`` (GPU and host series of the collector's last snapshot) and ``prometheus.py`` (worker
series the metrics service kept); neither names a series or a family itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import series as table

__all__ = ["TableFamilies"]


class TableFamilies:
    """The families of one scope (``gpu``, ``host`` or ``worker``), filled from flat ``{series name: value}`` dicts."""

    def __init__(self, scope: str, labels: Sequence[str]) -> None:
        self.scope = scope
        self._own = table.SCOPES[scope]  # the id part the source's labels stand for
        self._families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for entry, export in table.exports(scope):
            names = [*labels, *(part for part in entry.parts if part != self._own)]
            kind = CounterMetricFamily if export.type == "counter" else GaugeMetricFamily
            self._families[export.name] = kind(export.name, export.help, labels=names)

    def add(self, values: Mapping[str, float], labels: Sequence[str]) -> None:
        """Add every series of ``values`` this scope declares, with the source's label values ``labels``; others are
        ignored (a series no entry declares is not exported)."""
        for name, value in values.items():
            found = table.match(name)
            if found is None or found[0].scope != self.scope:
                continue
            entry, parts = found
            extra = [str(parts[part]) for part in entry.parts if part != self._own]
            for export in entry.prometheus:
                self._families[export.name].add_metric([*labels, *extra], float(value) * export.scale)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())

    def __getitem__(self, name: str) -> Metric:
        return self._families[name]
