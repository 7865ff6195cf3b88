"""What the control plane derives from the worker contract (inference/protocol.py): config validation and
defaults, form labels and bounds, the OpenAPI description of ``config``, the supervisor's command line and its set
of live keys. One place declares each setting; these tests prove the derived forms agree with it."""

from __future__ import annotations

import argparse

import pytest

from controlplane.choices import Role
from controlplane.forms import DeploymentForm
from controlplane.services.deployment_config import CONFIG_FIELDS, default_config, validate_config
from controlplane.services.errors import InvalidInput
from controlplane.workers.launch import live_config, worker_spec
from inference import protocol
from inference.__main__ import _build_parser


def test_every_worker_setting_is_a_deployment_config_key_declared_by_the_contract(model_version):
    defaults = default_config(model_version)
    for name, spec in protocol.SETTINGS.items():
        assert CONFIG_FIELDS[name] is spec
        assert defaults[name] == (model_version.precision if name == "precision" else spec.default)


@pytest.mark.parametrize("name", ["max_batch_size", "session_timeout_s", "max_queue", "max_wait_ms"])
def test_the_bounds_the_control_plane_enforces_are_the_contracts(name, model_version):
    spec = protocol.SETTINGS[name]
    too_big = spec.maximum * 2 if spec.kind is float else int(spec.maximum) + 1
    with pytest.raises(InvalidInput) as info:
        validate_config({name: too_big}, model_version)
    assert info.value.errors["config"][name] == [spec.problem(too_big)]
    assert validate_config({name: spec.maximum}, model_version)[name] == spec.maximum


def test_the_workers_cross_field_rules_are_checked_before_a_revision_is_written(model_version):
    with pytest.raises(InvalidInput) as info:
        validate_config({"default_max_tokens": 500, "max_tokens_limit": 100}, model_version)
    assert "exceeds max_tokens_limit=100" in info.value.errors["config"]["default_max_tokens"][0]


def test_form_fields_take_label_unit_bounds_and_help_from_the_contract(db):
    fields = DeploymentForm().fields
    assert fields["session_timeout_s"].label == "Session timeout (s)"
    assert fields["max_batch_size"].label == "Max batch size (sequences)"
    assert fields["max_batch_size"].widget.attrs["max"] == "1024"
    assert fields["max_batch_size"].help_text == protocol.SETTINGS["max_batch_size"].help_text()
    assert fields["cache_ttl_s"].label == "Response cache TTL (s)"


def test_the_api_schema_describes_config_with_the_contracts_bounds(clients):
    schema = clients[Role.VIEWER].get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    config = schema["components"]["schemas"]["Deployment"]["properties"]["config"]
    props = config["properties"]
    assert set(props) == set(CONFIG_FIELDS) and config["additionalProperties"] is False
    assert props["max_batch_size"]["minimum"] == 1 and props["max_batch_size"]["maximum"] == 1024
    assert props["scheduling"]["enum"] == ["continuous", "static"]
    assert "Applies live." in props["max_batch_size"]["description"]


def test_the_supervisors_command_line_gives_the_worker_the_deployments_config(deployment, actor):
    from controlplane.services import deployments

    deployments.update_deployment(
        actor, deployment, config={"max_batch_size": 9, "router_weights": [1, 0.5, 2, 1], "torch_threads": 2}
    )
    deployment.refresh_from_db()
    revision = deployment.current_revision
    argv = worker_spec(deployment, "demo", revision.model_version, revision.config, revision.number).command(9100)
    sub = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    args = sub.choices["serve"].parse_args(argv[argv.index("serve") + 1 :])
    startup, live = protocol.config_from_flags(args)
    assert startup.to_dict() == {k: revision.config[k] for k in ("precision", "torch_threads")}
    assert live.to_dict() == {k: revision.config[k] for k in protocol.LIVE_KEYS}
    assert set(live_config(revision.config)) == protocol.LIVE_KEYS
