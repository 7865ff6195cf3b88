"""Errors that service functions raise; the API turns them into 400/409 JSON, the dashboard into form messages."""

from __future__ import annotations

__all__ = ["Conflict", "InvalidInput", "flatten_errors"]

ErrorTree = dict[str, "list[str] | ErrorTree"]


class InvalidInput(Exception):
    """Bad input. ``errors`` maps each field to its problems; nested configs nest (``{"config": {"x": [...]}}``)."""

    def __init__(self, errors: ErrorTree):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in flatten_errors(errors)))

    @classmethod
    def field(cls, name: str, message: str) -> InvalidInput:
        return cls({name: [message]})


class Conflict(Exception):
    """The request is valid but clashes with the current state (HTTP 409)."""


def flatten_errors(errors: ErrorTree, prefix: str = "") -> list[tuple[str, str]]:
    """``[("config.max_batch_size", "must be at least 1"), …]``."""
    flat: list[tuple[str, str]] = []
    for field, value in errors.items():
        name = f"{prefix}.{field}" if prefix else field
        if isinstance(value, dict):
            flat.extend(flatten_errors(value, name))
        else:
            flat.extend((name, str(message)) for message in value)
    return flat
