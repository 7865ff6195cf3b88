"""Limit/offset pagination that refuses a limit or offset that is not a whole number (rather than ignoring it)."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 1000

    def paginate_queryset(self, queryset, request: Request, view=None):
        for name in (self.limit_query_param, self.offset_query_param):
            raw = request.query_params.get(name)
            if raw is not None and not (raw.lstrip("-").isascii() and raw.lstrip("-").isdigit()):
                raise ValidationError({name: ["must be a whole number"]})
        return super().paginate_queryset(queryset, request, view)
