"""Settings come from the environment; a bad value stops start-up with a message naming the variable."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from controlplane import conf

ROOT = Path(__file__).resolve().parents[2]


def start(env: dict, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    environment.update({"VAR_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *(args or ("check",))],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "nosuchdb://x"),
        ("REDIS_URL", "http://localhost:6379"),
        ("EMAIL_URL", "carrier-pigeon://coop"),
        ("EMAIL_PORT", "twenty-five"),
        ("MAX_REQUEST_BYTES", "12"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path, name, value):
    env = {name: value}
    if name == "EMAIL_PORT":
        env["EMAIL_HOST"] = "smtp.example.org"
    result = start(env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


def test_the_secret_key_is_generated_once_and_kept_private(tmp_path):
    assert start({}, tmp_path=tmp_path).returncode == 0
    key_file = tmp_path / "secret_key"
    key = key_file.read_text()
    assert len(key) >= 50 and oct(key_file.stat().st_mode & 0o777) == "0o600"
    start({}, tmp_path=tmp_path)
    assert key_file.read_text() == key


def test_production_settings_pass_the_deploy_check(tmp_path):
    env = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECURE_HTTPS": "1",
        "ALLOWED_HOSTS": "llm.example.org",
    }
    result = start(env, "check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_typed_helpers(monkeypatch, tmp_path):
    monkeypatch.setenv("X_INT", "5")
    assert conf.env_int("X_INT", 1, minimum=1) == 5
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="X_INT=0 is below the minimum of 1"):
        conf.env_int("X_INT", 1, minimum=1)
    monkeypatch.setenv("X_BOOL", "Yes")
    assert conf.env_bool("X_BOOL") is True
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert conf.env_list("X_LIST", []) == ["a", "b", "c"]
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert conf.env_secret("X_SECRET") == "s3cret"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE"):
        conf.env_secret("X_SECRET")


def test_email_urls(monkeypatch, tmp_path):
    monkeypatch.setenv("E", "smtp://user:p%40ss@mail.example.org:587?tls=1")
    settings = conf.env_email("E", tmp_path)
    assert settings["EMAIL_HOST"] == "mail.example.org" and settings["EMAIL_PORT"] == 587
    assert settings["EMAIL_HOST_PASSWORD"] == "p@ss" and settings["EMAIL_USE_TLS"] is True
    monkeypatch.setenv("E", "smtps://mail.example.org")
    assert conf.env_email("E", tmp_path)["EMAIL_PORT"] == 465
    monkeypatch.delenv("E")
    assert conf.env_email("E", tmp_path)["EMAIL_FILE_PATH"] == str(tmp_path)


def test_the_var_directory_and_the_database_are_the_owners_alone(tmp_path):
    var = tmp_path / "var"
    assert start({}, tmp_path=var).returncode == 0
    assert oct(var.stat().st_mode & 0o777) == "0o700"
    assert oct((var / "controlplane.sqlite3").stat().st_mode & 0o777) == "0o600"
    # an existing world-readable layout is narrowed on the next start
    var.chmod(0o755)
    (var / "controlplane.sqlite3").chmod(0o644)
    assert start({}, tmp_path=var).returncode == 0
    assert oct(var.stat().st_mode & 0o777) == "0o700"
    assert oct((var / "controlplane.sqlite3").stat().st_mode & 0o777) == "0o600"


def test_a_shared_sticky_directory_is_left_as_it_is(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    conf.private_dir(shared)
    assert oct(shared.stat().st_mode & 0o7777) == "0o1777"
