"""REST resources for alerting: rules (CRUD), alerts (read, acknowledge, resolve), notifications (read, retry).

Kept in their own module so the alerting API can be read in one place; the router in ``urls.py`` registers them.
"""

from __future__ import annotations

from typing import Any

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.alerts import delivery, rules, service
from controlplane.choices import Role
from controlplane.models import Alert, AlertRule, Deployment, Notification, NotificationAttempt, User

from .filters import FilterSet
from .serializers import StrictMixin
from .views import ActorMixin


class AlertRuleSerializer(StrictMixin, serializers.ModelSerializer):
    deployment = serializers.PrimaryKeyRelatedField(
        queryset=Deployment.objects.all(), required=False, allow_null=True, help_text="Empty: every deployment."
    )
    parameters = serializers.JSONField(required=False, help_text="Per kind; see docs/alerts.md. Replaced as a whole.")
    recipients = serializers.JSONField(required=False, help_text="E-mail addresses; empty: ONCALL_EMAILS.")
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "name",
            "kind",
            "deployment",
            "parameters",
            "severity",
            "for_s",
            "repeat_interval_s",
            "recipients",
            "enabled",
            "description",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_by", "created_at", "updated_at"]
        validators: list[Any] = []  # name uniqueness is checked by the service with a clear message

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None:
            fields["kind"].read_only = True  # a rule's kind is fixed; its parameters depend on it
        return fields


class NotificationAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = NotificationAttempt
        fields = ["number", "at", "transport", "recipients", "subject", "outcome", "error"]
        read_only_fields = fields


class NotificationSerializer(serializers.ModelSerializer):
    attempts = NotificationAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "alert",
            "event",
            "transport",
            "recipients",
            "subject",
            "status",
            "attempt_count",
            "next_attempt_at",
            "created_at",
            "finished_at",
            "last_error",
            "attempts",
        ]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    acknowledged_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    resolved_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "rule_name",
            "kind",
            "deployment",
            "deployment_name",
            "key",
            "state",
            "severity",
            "title",
            "summary",
            "values",
            "last_values",
            "threshold",
            "series",
            "series_label",
            "cause",
            "started_at",
            "last_seen_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "resolution",
            "last_notified_at",
            "notification_count",
        ]
        read_only_fields = fields


class AlertActionSerializer(StrictMixin, serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=500)


class AlertRuleFilter(FilterSet):
    class Meta:
        model = AlertRule
        fields = ["name", "kind", "deployment", "severity", "enabled"]


class AlertFilter(FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="gte")

    class Meta:
        model = Alert
        fields = ["state", "severity", "kind", "deployment", "rule", "since"]


class NotificationFilter(FilterSet):
    class Meta:
        model = Notification
        fields = ["status", "event", "alert"]


class AlertRuleViewSet(ActorMixin, viewsets.ModelViewSet):
    """Alert rules: what to watch, where, how loud, and whom to tell."""

    queryset = AlertRule.objects.select_related("created_by")
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilter
    ordering_fields = ["name", "kind", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = rules.create_rule(self.actor, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = rules.update_rule(self.actor, serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        rules.delete_rule(self.actor, instance)


class AlertViewSet(ActorMixin, viewsets.ReadOnlyModelViewSet):
    """Alerts, newest first. Operators acknowledge (stops reminders) and resolve them; illegal moves answer 409."""

    queryset = Alert.objects.select_related("acknowledged_by", "resolved_by")
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    ordering_fields = ["started_at", "severity", "state"]
    role_for_action = {"acknowledge": Role.OPERATOR, "resolve": Role.OPERATOR}

    def _act(self, request, change):
        body = AlertActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = change(self.actor, self.get_object(), body.validated_data.get("comment", ""))
        return Response(self.get_serializer(alert).data)

    @extend_schema(request=AlertActionSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self._act(request, service.acknowledge_alert)

    @extend_schema(request=AlertActionSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self._act(request, service.resolve_alert)


class NotificationViewSet(ActorMixin, viewsets.ReadOnlyModelViewSet):
    """Alert notifications (the e-mail outbox) with every delivery attempt; operators can retry a failed one."""

    queryset = Notification.objects.prefetch_related("attempts")
    serializer_class = NotificationSerializer
    filterset_class = NotificationFilter
    ordering_fields = ["created_at", "status"]
    role_for_action = {"retry": Role.OPERATOR}

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        notification = delivery.retry_notification(self.actor, self.get_object())
        return Response(self.get_serializer(Notification.objects.get(pk=notification.pk)).data)
