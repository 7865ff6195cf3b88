"""Typed helpers that read settings from the environment.

Each helper returns the default when the variable is unset or empty and raises ``ImproperlyConfigured`` naming the
variable when its value cannot be used, so a bad value stops start-up with a message instead of a surprise later.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import overload
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "env_bool",
    "env_email",
    "env_float",
    "env_int",
    "env_list",
    "env_secret",
    "env_str",
    "persistent_secret_key",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...


def env_str(name: str, default: str | None = None) -> str | None:
    """A string, or ``default`` when unset."""
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use 1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer within ``[minimum, maximum]``."""
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    _check_bounds(name, number, minimum, maximum)
    return number


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A float within ``[minimum, maximum]``."""
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    _check_bounds(name, number, minimum, maximum)
    return number


def _check_bounds(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}")


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blanks are dropped."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name: str) -> str | None:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (as Docker and Kubernetes secrets mount them)."""
    value = _raw(name)
    if value is not None:
        return value
    path = _raw(f"{name}_FILE")
    if path is None:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (0700): created so, or narrowed if this process owns it.
    A shared directory (sticky, as /tmp) is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX and stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read (0600), created empty if missing. SQLite gives the database's
    -wal and -shm files the database file's own mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if each.exists() and each.stat().st_uid == os.getuid() and stat.S_IMODE(each.stat().st_mode) & 0o077:
            each.chmod(0o600)
    return path


def persistent_secret_key(path: Path) -> str:
    """The secret key kept in ``path``, generated on first use with owner-only permissions."""
    if path.exists():
        key = path.read_text().strip()
        if len(key) >= 50:
            return key
    private_dir(path.parent)
    key = secrets.token_urlsafe(64)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def env_email(name: str, default_dir: Path) -> dict[str, object]:
    """E-mail settings from a URL such as ``smtp://user:pass@host:587?tls=1``, ``smtps://…``, ``file:///dir``
    or ``console:``. Unset: messages are written as files under ``default_dir``."""
    value = _raw(name)
    if value is None:
        return {"EMAIL_BACKEND": "controlplane.alerts.mailfiles.EmlFileBackend", "EMAIL_FILE_PATH": str(default_dir)}
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme == "console":
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if scheme == "file":
        return {"EMAIL_BACKEND": "controlplane.alerts.mailfiles.EmlFileBackend", "EMAIL_FILE_PATH": unquote(parts.path)}
    if scheme not in {"smtp", "smtps"}:
        raise ImproperlyConfigured(f"{name} has scheme {scheme!r}: use smtp://, smtps://, file:// or console:")
    if not parts.hostname:
        raise ImproperlyConfigured(f"{name} has no host: use smtp://user:password@host:port")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    try:
        port = parts.port or (465 if scheme == "smtps" else 25)
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a port that is not a number") from None
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_SSL": scheme == "smtps",
        "EMAIL_USE_TLS": query.get("tls", "0").lower() in _TRUE,
        "EMAIL_TIMEOUT": int(query.get("timeout", "10")) if query.get("timeout", "10").isdigit() else 10,
    }
