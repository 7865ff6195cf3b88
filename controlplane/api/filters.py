"""Filter sets for list endpoints."""

import django_filters

from controlplane.models import GPU, AuditEvent, Deployment, ModelVersion, Node


class ModelVersionFilter(django_filters.FilterSet):
    class Meta:
        model = ModelVersion
        fields = ["name", "version", "format", "precision", "status"]


class NodeFilter(django_filters.FilterSet):
    class Meta:
        model = Node
        fields = ["hostname", "role", "status", "is_local"]


class GPUFilter(django_filters.FilterSet):
    class Meta:
        model = GPU
        fields = ["node", "uuid", "name"]


class DeploymentFilter(django_filters.FilterSet):
    class Meta:
        model = Deployment
        fields = ["name", "node", "status", "desired_state"]


class AuditEventFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")
    actor = django_filters.CharFilter(field_name="actor_name")

    class Meta:
        model = AuditEvent
        fields = ["action", "object_type", "object_id", "source", "actor", "since", "until"]
