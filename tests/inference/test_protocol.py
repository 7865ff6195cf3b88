"""The worker contract (inference/protocol.py) and what is derived from it on the worker's side: the flags and
their --help, the live config and its schema, the stats reply."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from inference import protocol
from inference.__main__ import _build_parser
from inference.engine import Engine
from inference.protocol import (
    LIVE_KEYS,
    SETTINGS,
    ConfigError,
    Setting,
    StartupConfig,
    StatsReply,
    WorkerConfig,
    config_from_flags,
    reply_keys,
    to_argv,
)
from inference.report import engine_stats


def _serve_parser() -> argparse.ArgumentParser:
    sub = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["serve"]


def test_every_setting_has_a_type_a_bound_or_choices_a_unit_or_none_a_doc_and_how_it_applies() -> None:
    for name, spec in SETTINGS.items():
        assert spec.doc.endswith((".", ")")) and spec.apply in ("live", "reload", "restart"), name
        assert spec.kind in (int, float, str, list) and spec.label, name
        assert spec.choices or spec.kind is list or spec.minimum is not None, f"{name} has no bound"
        assert spec.default is None or spec.problem(spec.default) is None, name


def test_the_live_config_is_exactly_the_live_settings_with_the_same_defaults() -> None:
    config = WorkerConfig()
    assert {f.name for f in dataclasses.fields(WorkerConfig)} == set(LIVE_KEYS)
    assert all(getattr(config, name) == SETTINGS[name].default for name in LIVE_KEYS)
    assert {f.name for f in dataclasses.fields(StartupConfig)} == set(SETTINGS) - LIVE_KEYS


def test_each_setting_has_its_flag_with_type_choices_and_help_from_the_contract() -> None:
    parser = _serve_parser()
    actions = {a.dest: a for a in parser._actions}
    help_text = parser.format_help()
    for name, spec in SETTINGS.items():
        action = actions[name]
        assert action.option_strings == [spec.flag]
        assert tuple(action.choices or ()) == spec.choices
        assert spec.doc.split()[0] in help_text
    assert "--max-batch-size SEQUENCES" in help_text and "From 1 to 1024 sequences. Default 32" in help_text


def test_a_config_survives_the_command_line_unchanged() -> None:
    config = {
        "precision": "bf16",
        "torch_threads": 3,
        "max_batch_size": 7,
        "max_wait_ms": 2.5,
        "scheduling": "static",
        "max_seq_len": 200,
        "session_timeout_s": 90.0,
        "router_weights": [1.0, 0.0, 2.5, 1.0],
        "cache_ttl_s": 300,  # not a worker setting: left out of the flags
    }
    argv = to_argv(config)
    assert "--cache-ttl-s" not in argv
    startup, live = config_from_flags(_serve_parser().parse_args(argv))
    assert startup == StartupConfig(precision="bf16", torch_threads=3)
    expected = WorkerConfig(
        max_batch_size=7,
        max_wait_ms=2.5,
        scheduling="static",
        max_seq_len=200,
        session_timeout_s=90.0,
        router_weights=[1.0, 0.0, 2.5, 1.0],
    )
    assert live == expected


@pytest.mark.parametrize(
    ("argv", "param", "message"),
    [
        (["--max-batch-size", "0"], "max_batch_size", "must be at least 1; got 0"),
        (["--router-weights", "1,-1"], "router_weights", "weight 1 must be from 0 to 1000"),
        (["--default-max-tokens", "99", "--max-tokens-limit", "10"], "default_max_tokens", "exceeds"),
    ],
)
def test_bad_flags_are_refused_naming_the_setting(argv: list[str], param: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_flags(_serve_parser().parse_args(argv))
    assert info.value.param == param


def test_a_setting_with_a_bad_declaration_is_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        Setting("x", int, 1, "A thing.", unit="parsecs", minimum=0)
    with pytest.raises(ValueError, match="default 5 must be at most 4"):
        Setting("x", int, 5, "A thing.", minimum=0, maximum=4)
    with pytest.raises(ValueError, match="nullable"):
        Setting("x", int, None, "A thing.", minimum=0)


def test_the_label_leaves_the_unit_out_and_the_help_says_how_a_change_applies() -> None:
    assert SETTINGS["session_timeout_s"].label == "Session timeout"
    assert SETTINGS["max_session_kv_bytes"].label == "Max session KV"
    assert SETTINGS["torch_threads"].help_text().endswith("Needs a new worker.")
    assert SETTINGS["precision"].help_text().endswith("Reloads the model.")


def test_the_stats_reply_has_exactly_the_fields_the_contract_declares(engine: Engine) -> None:
    assert set(engine_stats(engine)) == reply_keys(StatsReply)


def test_the_control_api_schema_is_the_contracts(engine: Engine) -> None:
    from inference.api_control import config_schema

    assert config_schema() == protocol.describe(WorkerConfig)


def test_the_settings_table_in_the_docs_is_the_contracts() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "worker.md").read_text()
    assert protocol.markdown_table() in docs
