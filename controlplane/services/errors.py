"""Errors that service functions raise. Field problems use Django's ``ValidationError`` with a dict."""


class Conflict(Exception):
    """The request is valid but clashes with the current state (HTTP 409)."""
