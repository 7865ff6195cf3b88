"""Filter sets for list endpoints.

Every one derives from :class:`FilterSet`: a reference to another object is filtered by its id (an id no object has
lists nothing, rather than failing as a choice that is not available), and a parameter given with no value is refused
unless it is free text (``?status=`` is not a status).
"""

from __future__ import annotations

import django_filters
import django_filters.rest_framework
from django import forms
from django.db import models
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from controlplane.models import GPU, AuditEvent, Deployment, ModelVersion, Node

__all__ = ["FilterBackend", "FilterSet", "IdFilter"]


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(django_filters.Filter):
    """An object's id: an integer; no object with that id matches nothing."""

    field_class = forms.IntegerField

    def filter(self, qs, value):
        if value is not None and not 0 < value < 2**63:  # no id is negative or wider than 64 bits
            return qs.none()
        return super().filter(qs, value)


class FilterSet(django_filters.rest_framework.FilterSet):
    FILTER_DEFAULTS = {
        **django_filters.rest_framework.FilterSet.FILTER_DEFAULTS,
        models.ForeignKey: {"filter_class": IdFilter},
        models.OneToOneField: {"filter_class": IdFilter},
    }

    def is_valid(self) -> bool:
        valid = super().is_valid()
        data = self.data or {}
        for name, declared in self.filters.items():
            value = data.get(name)
            if value == "" and not isinstance(declared, django_filters.CharFilter):
                self.form.add_error(name, "must not be empty: leave the parameter out to not filter on it")
                valid = False
            elif (
                isinstance(declared, django_filters.BooleanFilter)
                and value is not None
                and value.lower() not in ("true", "false")
            ):
                self.form.add_error(name, "must be true or false")
                valid = False
        return valid


class FilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend with :class:`FilterSet` as the base of the filter sets made from ``filterset_fields``."""

    filterset_base = FilterSet


class ModelVersionFilter(FilterSet):
    class Meta:
        model = ModelVersion
        fields = ["name", "version", "format", "precision", "status"]


class NodeFilter(FilterSet):
    class Meta:
        model = Node
        fields = ["hostname", "role", "status", "is_local"]


class GPUFilter(FilterSet):
    class Meta:
        model = GPU
        fields = ["node", "uuid", "name"]


class DeploymentFilter(FilterSet):
    class Meta:
        model = Deployment
        fields = ["name", "node", "status", "desired_state"]


class AuditEventFilter(FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")
    actor = django_filters.CharFilter(field_name="actor_name")

    class Meta:
        model = AuditEvent
        fields = ["action", "object_type", "object_id", "source", "actor", "since", "until"]
