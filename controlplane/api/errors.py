"""One error shape for the API: JSON that names the field and the problem."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from controlplane.middleware import too_large_response
from controlplane.services.errors import Conflict, InvalidInput

logger = logging.getLogger("django.request")


def exception_handler(exc, context):
    """DRF's handler, extended: Django ``ValidationError`` → 400 with field errors, ``Conflict`` → 409,
    an over-size body → 413, and anything unexpected → 500 in JSON (logged with its traceback) rather than
    Django's HTML page."""
    response = _known(exc, context)
    if response is None:
        request = context.get("request")
        logger.error("Internal Server Error: %s", request.path if request else "?", exc_info=exc)
        response = Response(
            {"detail": "Internal server error.", "code": "server_error"}, status=status.HTTP_500_INTERNAL_SERVER_ERROR
        )
    return response


def _known(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return too_large_response(context["request"].path if context.get("request") else "")
    if isinstance(exc, InvalidInput):
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_errors(exc))
    elif isinstance(exc, Conflict):
        return Response({"detail": str(exc), "code": "conflict"}, status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    return drf_exception_handler(exc, context)


def _django_errors(exc: DjangoValidationError):
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): [m for e in errors for m in e.messages]
            for field, errors in exc.error_dict.items()
        }
    return {"non_field_errors": exc.messages}
