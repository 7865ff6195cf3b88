"""Alert kinds are Registry entries: every kind rules can store has one (evaluated or signalled), a bad entry is
refused when registered, and evaluation runs whatever evaluator is registered for a rule's kind."""

import dataclasses

import pytest

from controlplane.alerts import evaluators, kinds, messages
from controlplane.alerts.evaluators import EVALUATORS, Evaluator, Observation
from controlplane.alerts.params import REQUIRED, Param
from controlplane.alerts.rules import KINDS, create_rule, default_rules, validate_parameters
from controlplane.alerts.service import evaluate_alert_rules
from controlplane.choices import AlertKind, AlertSeverity, AlertState
from controlplane.extensions import Registry, RegistryError
from controlplane.models import Alert
from controlplane.services import audit


def test_every_kind_a_rule_can_store_is_declared_once():
    assert sorted([*EVALUATORS.names(), *kinds.SIGNALLED.names()]) == sorted(AlertKind.values)
    assert set(KINDS) == set(AlertKind.values)


def test_default_rules_come_from_the_entries():
    assert default_rules()[AlertKind.SCHEDULER_HEARTBEAT] == AlertSeverity.CRITICAL
    assert AlertKind.LATENCY not in default_rules(), "a kind with a required threshold has no default rule"


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"name": "vibes"}, "choices.AlertKind"),
        ({"function": None}, "not callable"),
        ({"unit": ""}, "unit"),
        ({"doc": ""}, "doc"),
        ({"params": (Param("n", int, 5, "A count.", 10, 20),)}, "the default 5 must be at least 10"),
        ({"params": (Param("n", int, 1, "A count.", 10, 2),)}, "above maximum"),
        ({"params": (Param("m", str, "a", "A mode."),)}, "lists its choices"),
        ({"params": (Param("n", int, 1, "A."), Param("n", int, 2, "B."))}, "repeat"),
        ({"default_severity": "loud"}, "default_severity"),
    ],
)
def test_a_bad_evaluator_is_refused_when_registered(change, problem):
    entry = dataclasses.replace(EVALUATORS[AlertKind.WORKER_RESTART], **change)
    table = Registry[Evaluator]("alert evaluator", check=evaluators._check_evaluator)
    with pytest.raises(RegistryError, match=problem):
        table.register(entry)


def test_a_kind_with_a_required_parameter_cannot_have_a_default_rule():
    entry = dataclasses.replace(EVALUATORS[AlertKind.LATENCY], default_severity=AlertSeverity.WARNING)
    with pytest.raises(RegistryError, match="required parameter"):
        Registry[Evaluator]("alert evaluator", check=evaluators._check_evaluator).register(entry)


def test_a_signalled_kind_cannot_also_be_evaluated():
    entry = kinds.Signalled(AlertKind.LATENCY, "Latency, signalled.")
    with pytest.raises(RegistryError, match="evaluated kind already"):
        Registry[kinds.Signalled]("signalled", check=kinds._check_signalled).register(entry)


def test_thresholds_are_shown_in_their_kinds_unit():
    assert kinds.format_threshold(AlertKind.LATENCY, 0.5) == "0.5 s"
    assert kinds.format_threshold(AlertKind.ERROR_RATE, 0.02) == "2.00%"
    assert kinds.format_threshold(AlertKind.WORKER_RESTART, 3) == "3 restarts or exits"
    assert messages.format_threshold(Alert(kind=AlertKind.DRIFT, threshold=0.123456)) == "0.1235"


@pytest.fixture
def replace():
    """``replace(registry, entry)``: ``entry`` in place of the registered one of its name, for this test only."""
    saved = []

    def swap(registry, entry):
        saved.append((registry, list(registry)))
        registry.unregister(entry.name)
        registry.register(entry)

    yield swap
    for registry, entries in saved:
        for name in registry.names():
            registry.unregister(name)
        for entry in entries:
            registry.register(entry)


@pytest.mark.django_db
def test_evaluation_runs_the_evaluator_registered_for_the_rules_kind(replace, deployment, clock):
    seen = []

    def evaluate_always(rule, target, now):
        seen.append((rule.name, target.name))
        return Observation(deployment=target, key="", firing=True, title="always", threshold=rule.parameters["limit"])

    entry = Evaluator(
        AlertKind.LATENCY,
        "s",
        evaluate_always,
        (Param("limit", float, REQUIRED, "A limit.", 0, 10),),
        "A test's own evaluator.",
    )
    replace(EVALUATORS, entry)
    assert validate_parameters(AlertKind.LATENCY, {"limit": 2}) == {"limit": 2.0}
    create_rule(audit.SYSTEM, name="always", kind=AlertKind.LATENCY, parameters={"limit": 2})
    evaluate_alert_rules(now=clock.now)
    assert seen == [("always", deployment.name)]
    alert = Alert.objects.get(rule__name="always")
    assert alert.state == AlertState.FIRING and alert.title == "always" and alert.threshold == 2.0
