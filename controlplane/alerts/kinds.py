"""Every alert kind a rule can have: the evaluated ones (``evaluators.EVALUATORS``) and the signalled ones declared
here (``SIGNALLED``): conditions other parts detect and report with ``service.signal`` (a drift verdict, a memory
leak, a failed job, a stopped scheduler, a rollout rolled back).

To add a signalled kind: a value in ``choices.AlertKind`` and one ``SIGNALLED.register(...)``; then call
``service.signal(kind, …)`` where the condition is detected.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from controlplane.choices import AlertKind, AlertSeverity, DriftKind
from controlplane.extensions import Registry

from .evaluators import EVALUATORS, Evaluator, check_kind
from .params import Param

__all__ = ["KINDS", "SIGNALLED", "Signalled", "format_threshold", "kind_entry"]


@dataclass(frozen=True)
class Signalled:
    """An alert kind reported by other parts. ``key_filter`` names the list parameter that narrows which keys (the
    drift check, the job's name) a rule covers: empty covers all. ``default_severity``: a ``default-<kind>`` rule is
    created on first use; disable it to silence the kind."""

    name: str
    doc: str
    params: tuple[Param, ...] = ()
    key_filter: str = ""
    default_severity: str | None = None
    unit: str = ""

    @property
    def label(self) -> str:
        """As rules and alerts show their kind (``choices.AlertKind``)."""
        return str(AlertKind(self.name).label)


def _check_signalled(entry: Signalled) -> None:
    check_kind(entry)
    if entry.name in EVALUATORS:
        raise ValueError("it is an evaluated kind already")
    if entry.key_filter and entry.key_filter not in {p.name for p in entry.params if p.kind is list}:
        raise ValueError(f"key_filter {entry.key_filter!r} is not one of its list parameters")


SIGNALLED = Registry[Signalled]("signalled alert kind", check=_check_signalled)

SIGNALLED.register(
    Signalled(
        AlertKind.DRIFT,
        "A drift check's verdict on a deployment (the key is the check); an ok verdict clears it.",
        (Param("checks", list, [], "Drift checks that alert (empty: all).", choices=tuple(DriftKind.values)),),
        key_filter="checks",
        default_severity=AlertSeverity.WARNING,
    )
)
SIGNALLED.register(
    Signalled(
        AlertKind.LEAK,
        "The leak watch found memory growing on a worker (the key is the memory kind).",
        default_severity=AlertSeverity.CRITICAL,
    )
)
SIGNALLED.register(
    Signalled(
        AlertKind.JOB_FAILURE,
        "A scheduled job failed (the key is the job's name); its next success clears it.",
        (Param("jobs", list, [], "Job names that alert (empty: all)."),),
        key_filter="jobs",
        default_severity=AlertSeverity.WARNING,
    )
)
SIGNALLED.register(
    Signalled(
        AlertKind.SCHEDULER_HEARTBEAT,
        "The scheduler stopped running jobs (checked by every serve process, delivered without the scheduler).",
        (Param("max_age_s", int, 300, "Fires when the scheduler's last heartbeat is older than this.", 30, 86_400),),
        default_severity=AlertSeverity.CRITICAL,
        unit="s",
    )
)
SIGNALLED.register(
    Signalled(
        AlertKind.REDIS_UNREACHABLE,
        "Redis (REDIS_URL) does not answer (checked every 10 s by every serve process; the key is the server).",
        default_severity=AlertSeverity.CRITICAL,
    )
)
SIGNALLED.register(
    Signalled(
        AlertKind.ROLLOUT,
        "A rollout was rolled back or failed (the key is the rollout).",
        default_severity=AlertSeverity.WARNING,
    )
)


def kind_entry(name: str) -> Evaluator | Signalled | None:
    """The entry of alert kind ``name``, evaluated or signalled; None for an unknown kind."""
    return EVALUATORS.get(name) or SIGNALLED.get(name)


class _Params(Mapping):
    """Kind → the parameters its rules take, read from both registries when asked (so a kind registered later,
    by a test say, is known at once)."""

    def __getitem__(self, name: str) -> tuple[Param, ...]:
        entry = kind_entry(name)
        if entry is None:
            raise KeyError(name)
        return entry.params

    def __iter__(self) -> Iterator[str]:
        return iter([*EVALUATORS.names(), *SIGNALLED.names()])

    def __len__(self) -> int:
        return len(EVALUATORS) + len(SIGNALLED)


KINDS: Mapping[str, tuple[Param, ...]] = _Params()

UNIT_FORMATS = {"s": "{:g} s", "share": "{:.2%}", "": "{:.4g}"}


def format_threshold(kind: str, value: float) -> str:
    """A threshold in its kind's unit: ``0.5 s``, ``2.00%``, ``3 restarts or exits``."""
    entry = kind_entry(kind)
    unit = entry.unit if entry is not None else ""
    return UNIT_FORMATS[unit].format(value) if unit in UNIT_FORMATS else f"{value:g} {unit}"
