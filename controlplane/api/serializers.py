"""Serializers: explicit fields; unknown keys are refused so that a typo is an error, not a silent no-op."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.choices import DriftKind, RolloutStrategy
from controlplane.models import (
    GPU,
    ApiToken,
    AuditEvent,
    Deployment,
    DeploymentRevision,
    DriftCheck,
    GoldenSet,
    InferenceRecord,
    ModelVersion,
    Node,
    Rollout,
    RolloutEvent,
    User,
    WorkerEvent,
)
from controlplane.services.deployment_config import config_schema

NUMBER_FIELDS = (serializers.IntegerField, serializers.FloatField, serializers.DecimalField)


class StrictMixin:
    """Refuse keys the serializer does not know, naming them; true/false where a number belongs (JSON booleans are
    not numbers, though Python's are) and a number where text belongs (DRF would turn it into text)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
            wrong = {
                key: ["A valid number is required."]
                for key, value in data.items()
                if isinstance(value, bool) and isinstance(self.fields[key], NUMBER_FIELDS)
            }
            wrong.update(
                (key, ["Not a valid string."])
                for key, value in data.items()
                if isinstance(value, int | float) and isinstance(self.fields[key], serializers.CharField)
            )
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


class ModelVersionSerializer(StrictMixin, serializers.ModelSerializer):
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$", required=False, help_text="Optional on create: must match the computed checksum."
    )
    baseline_quality = serializers.FloatField(required=False, allow_null=True, min_value=0)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "format",
            "artifact_path",
            "precision",
            "parameter_count",
            "size_bytes",
            "sha256",
            "architecture",
            "baseline_quality",
            "status",
            "description",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["parameter_count", "size_bytes", "architecture", "created_by", "created_at"]
        extra_kwargs = {"format": {"required": False}, "precision": {"required": False}}
        # (name, version) uniqueness is checked by the service with a clear message.
        validators: list[Any] = []


class ModelVersionUpdateSerializer(StrictMixin, serializers.ModelSerializer):
    baseline_quality = serializers.FloatField(required=False, allow_null=True, min_value=0)  # as when registered

    class Meta:
        model = ModelVersion
        fields = ["status", "description", "baseline_quality"]


class GPUSerializer(StrictMixin, serializers.ModelSerializer):
    class Meta:
        model = GPU
        fields = [
            "id",
            "node",
            "index",
            "uuid",
            "name",
            "memory_total_bytes",
            "driver_version",
            "cuda_version",
            "last_seen",
        ]
        read_only_fields = ["last_seen"]


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class LabelsField(serializers.JSONField):
    """Free-form labels: an object of string values."""


class NodeSerializer(StrictMixin, serializers.ModelSerializer):
    gpus = GPUSerializer(many=True, read_only=True)
    labels = LabelsField(required=False)

    class Meta:
        model = Node
        fields = [
            "id",
            "hostname",
            "address",
            "cpu_cores",
            "memory_bytes",
            "role",
            "status",
            "is_local",
            "labels",
            "last_seen",
            "created_at",
            "gpus",
        ]
        read_only_fields = ["is_local", "last_seen", "created_at"]

    def validate_labels(self, value):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise serializers.ValidationError("must be an object of string values")
        return value


@extend_schema_field(config_schema())
class ConfigField(serializers.JSONField):
    """A deployment's config: its OpenAPI description (every key's type, bounds, unit and doc) is derived from the
    worker contract (``inference/protocol.py``) and the control plane's own keys; the service validates it."""


class DeploymentRevisionSerializer(serializers.ModelSerializer):
    model_version_label: serializers.StringRelatedField[ModelVersion] = serializers.StringRelatedField(
        source="model_version"
    )
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = DeploymentRevision
        fields = [
            "number",
            "model_version",
            "model_version_label",
            "config",
            "comment",
            "restored_from",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class DeploymentSerializer(StrictMixin, serializers.ModelSerializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    gpus = serializers.PrimaryKeyRelatedField(queryset=GPU.objects.all(), many=True, required=False)
    config = ConfigField(required=False, help_text="Config keys to set; the rest keep their values.")
    comment = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=500)
    revision = serializers.IntegerField(source="current_revision.number", read_only=True)
    model_version_label = serializers.SerializerMethodField()
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "node",
            "gpus",
            "model_version",
            "model_version_label",
            "config",
            "desired_state",
            "status",
            "status_detail",
            "revision",
            "applied_revision",
            "worker_url",
            "worker_pid",
            "comment",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "status",
            "status_detail",
            "applied_revision",
            "worker_url",
            "worker_pid",
            "created_by",
            "created_at",
            "updated_at",
        ]
        validators: list[Any] = []

    def get_model_version_label(self, obj) -> str | None:
        return str(obj.model_version) if obj.current_revision_id else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["model_version"] = instance.current_revision.model_version_id if instance.current_revision_id else None
        data["config"] = instance.config
        return data

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None:  # placement by name and node is fixed once created
            fields["name"].read_only = True
            fields["node"].read_only = True
            fields["model_version"].required = False
        return fields


class RestartPlanSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=["rolling", "stop_start"])
    detail = serializers.CharField()


class RestartSerializer(DeploymentSerializer):
    """The deployment, and how its worker will be restarted."""

    restart = RestartPlanSerializer(read_only=True)

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "restart"]


class RollbackSerializer(StrictMixin, serializers.Serializer):
    revision = serializers.IntegerField(min_value=1)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=500)


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor_name",
            "source",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "before",
            "after",
            "message",
        ]
        read_only_fields = fields


class ApiTokenSerializer(StrictMixin, serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.all(), required=False)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "user",
            "name",
            "scope",
            "prefix",
            "rate_limit_per_minute",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
        extra_kwargs = {"rate_limit_per_minute": {"min_value": 1, "max_value": 1_000_000}}


class UserSerializer(StrictMixin, serializers.ModelSerializer):
    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"})
    effective_role = serializers.CharField(read_only=True)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "role",
            "effective_role",
            "is_active",
            "rate_limit_per_minute",
            "password",
            "date_joined",
            "last_login",
        ]
        read_only_fields = ["date_joined", "last_login"]
        extra_kwargs = {"rate_limit_per_minute": {"min_value": 1, "max_value": 1_000_000}}
        validators: list[Any] = []


class WorkerEventSerializer(serializers.ModelSerializer):
    deployment_name = serializers.CharField(source="deployment.name", read_only=True)

    class Meta:
        model = WorkerEvent
        fields = ["id", "deployment", "deployment_name", "at", "kind", "message", "exit_code", "log_tail", "details"]
        read_only_fields = fields


class RolloutEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = RolloutEvent
        fields = ["id", "at", "kind", "message", "data"]
        read_only_fields = fields


class RolloutSerializer(serializers.ModelSerializer):
    deployment_name = serializers.CharField(source="deployment.name", read_only=True)
    target_model_version_label: serializers.StringRelatedField[ModelVersion] = serializers.StringRelatedField(
        source="target_model_version"
    )
    base_revision = serializers.IntegerField(source="base_revision.number", read_only=True)
    result_revision = serializers.IntegerField(source="result_revision.number", read_only=True, default=None)
    weight = serializers.IntegerField(read_only=True)
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    traffic = serializers.SerializerMethodField(help_text="Requests served since the rollout began, per version.")

    def get_traffic(self, obj) -> dict:
        until = obj.finished_at
        rows = InferenceRecord.objects.filter(deployment_id=obj.deployment_id, at__gte=obj.created_at)
        if until is not None:
            rows = rows.filter(at__lte=until)
        counts = dict(rows.values_list("variant").annotate(n=Count("id")))
        return {"stable": counts.get("stable", 0), "canary": counts.get("canary", 0)}

    class Meta:
        model = Rollout
        fields = [
            "id",
            "deployment",
            "deployment_name",
            "strategy",
            "status",
            "target_model_version",
            "target_model_version_label",
            "target_config",
            "base_revision",
            "result_revision",
            "steps",
            "current_step",
            "weight",
            "bake_s",
            "step_started_at",
            "gates",
            "canary_url",
            "canary_pid",
            "canary_ready_at",
            "failed_gate",
            "reason",
            "figures",
            "traffic",
            "comment",
            "created_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class RolloutCreateSerializer(StrictMixin, serializers.Serializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), required=False)
    config = ConfigField(required=False, help_text="Config keys to change in the candidate.")
    strategy = serializers.ChoiceField(choices=RolloutStrategy.choices, default=RolloutStrategy.CANARY)
    steps = serializers.JSONField(
        required=False, help_text="Canary traffic per step in percent; default [10, 50, 100]."
    )
    bake_s = serializers.IntegerField(required=False, default=300, min_value=0, max_value=604_800)
    gates = serializers.JSONField(required=False, help_text="Gate thresholds to change from the defaults.")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class RolloutActionSerializer(StrictMixin, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class GoldenSetSerializer(StrictMixin, serializers.ModelSerializer):
    items = serializers.JSONField(help_text="A list of {prompt, reference} objects, or the same as JSON Lines text.")
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    item_count = serializers.SerializerMethodField()

    class Meta:
        model = GoldenSet
        fields = ["id", "model_version", "name", "items", "item_count", "baseline", "created_by", "created_at"]
        read_only_fields = ["baseline", "created_by", "created_at"]

    def get_item_count(self, obj) -> int:
        return len(obj.items)


class DriftCheckSerializer(serializers.ModelSerializer):
    deployment_name = serializers.CharField(source="deployment.name", read_only=True)
    model_version_label: serializers.StringRelatedField[ModelVersion] = serializers.StringRelatedField(
        source="model_version"
    )

    class Meta:
        model = DriftCheck
        fields = [
            "id",
            "deployment",
            "deployment_name",
            "kind",
            "verdict",
            "statistic",
            "threshold",
            "reason",
            "revision",
            "model_version",
            "model_version_label",
            "trigger",
            "started_at",
            "duration_s",
            "data",
        ]
        read_only_fields = fields


class DriftRunSerializer(StrictMixin, serializers.Serializer):
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=DriftKind.choices),
        required=False,
        allow_empty=False,
        min_length=1,
        help_text="Default: all kinds.",
    )
