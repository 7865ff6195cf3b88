"""REST API viewsets. Each declares what it serves and who may change it; the rules live in the services."""

from __future__ import annotations

from typing import Protocol

from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.choices import AuditSource, Role
from controlplane.drift import checks as driftchecks
from controlplane.models import (
    GPU,
    ApiToken,
    AuditEvent,
    Deployment,
    DriftCheck,
    GoldenSet,
    ModelVersion,
    Node,
    Rollout,
    User,
    WorkerEvent,
)
from controlplane.rollouts import machine as rollouts
from controlplane.services import accounts, audit, deployments, inventory, registry
from controlplane.services import golden as quality
from controlplane.services.errors import InvalidInput
from controlplane.services.serving import cache_stats
from controlplane.workers import actions as workers

from . import filters, serializers
from .params import parse_id, parse_when


class _View(Protocol):
    request: Request


class ActorMixin:
    @property
    def actor(self: _View) -> audit.Actor:
        return audit.Actor(self.request.user, AuditSource.API)


class ModelVersionViewSet(ActorMixin, viewsets.ModelViewSet):
    """Model versions. Registering measures the artifact; only status, description and baseline can change."""

    queryset = ModelVersion.objects.select_related("created_by")
    serializer_class = serializers.ModelVersionSerializer
    filterset_class = filters.ModelVersionFilter
    ordering_fields = ["name", "created_at", "size_bytes"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_class(self):
        if self.action == "partial_update":
            return serializers.ModelVersionUpdateSerializer
        return super().get_serializer_class()

    def perform_create(self, serializer):
        serializer.instance = registry.register_model_version(self.actor, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = registry.update_model_version(
            self.actor, serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        registry.delete_model_version(self.actor, instance)

    def update(self, request, *args, **kwargs):
        response = super().update(request, *args, **kwargs)
        response.data = serializers.ModelVersionSerializer(self.get_object()).data
        return response


class InventoryViewSet(ActorMixin, viewsets.ModelViewSet):
    def perform_create(self, serializer):
        serializer.instance = inventory.create(self.actor, self.queryset.model, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = inventory.update(self.actor, serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        inventory.delete(self.actor, instance)


class NodeViewSet(InventoryViewSet):
    """Nodes (hosts). The local node registers itself on start with its real figures."""

    queryset = Node.objects.prefetch_related("gpus")
    serializer_class = serializers.NodeSerializer
    filterset_class = filters.NodeFilter


class GPUViewSet(InventoryViewSet):
    """GPUs, as NVML discovers them on the local node or as entered for remote nodes."""

    queryset = GPU.objects.select_related("node")
    serializer_class = serializers.GPUSerializer
    filterset_class = filters.GPUFilter


class DeploymentViewSet(ActorMixin, viewsets.ModelViewSet):
    """Deployments. Every change of model version or config writes a new immutable revision."""

    queryset = Deployment.objects.select_related("current_revision__model_version", "node", "created_by")
    serializer_class = serializers.DeploymentSerializer
    filterset_class = filters.DeploymentFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = deployments.create_deployment(self.actor, **data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = deployments.update_deployment(self.actor, serializer.instance, **data)

    @extend_schema(responses=serializers.DeploymentRevisionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def revisions(self, request, pk=None):
        deployment = self.get_object()
        queryset = deployment.revisions.select_related("model_version", "created_by")
        page = self.paginate_queryset(queryset)
        data = serializers.DeploymentRevisionSerializer(page, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(request=serializers.RollbackSerializer, responses=serializers.DeploymentSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        deployment = self.get_object()
        body = serializers.RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        deployment = deployments.rollback_deployment(
            self.actor, deployment, body.validated_data["revision"], body.validated_data.get("comment", "")
        )
        return Response(self.get_serializer(deployment).data)

    @extend_schema(
        parameters=[OpenApiParameter("from", int, required=True), OpenApiParameter("to", int, required=False)],
        responses=inline_serializer(
            "RevisionDiff",
            {
                "from": drf_serializers.IntegerField(),
                "to": drf_serializers.IntegerField(),
                "changes": drf_serializers.ListField(child=drf_serializers.DictField()),
            },
        ),
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        """What changed between two revisions (``to`` defaults to the current one)."""
        deployment = self.get_object()
        numbers = {}
        for key, default in (("from", None), ("to", deployment.current_revision.number)):
            raw = request.query_params.get(key, default)
            number = parse_id(None if raw is None else str(raw), key, "a revision number")
            if number is None:
                raise InvalidInput.field(key, "must be a revision number")
            numbers[key] = number
        found = {r.number: r for r in deployment.revisions.filter(number__in=numbers.values())}
        for key, number in numbers.items():
            if number not in found:
                raise InvalidInput.field(key, f"deployment {deployment.name} has no revision {number}")
        older, newer = found[numbers["from"]], found[numbers["to"]]
        return Response({"from": older.number, "to": newer.number, "changes": deployments.revision_diff(older, newer)})

    @extend_schema(request=None, responses={202: serializers.RestartSerializer})
    @action(detail=True, methods=["post"])
    def restart(self, request, pk=None):
        """Restart the worker. ``restart.mode`` says how: ``rolling`` (a new worker starts beside the running one and
        takes over when ready; no request is dropped) or ``stop_start`` (a second copy does not fit: requests fail
        until the model is loaded again); ``restart.detail`` says why. Progress shows in ``status_detail``."""
        deployment = self.get_object()
        plan = workers.request_restart(self.actor, deployment)
        data = {**self.get_serializer(deployment).data, "restart": plan.as_dict()}
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: serializers.DeploymentSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        deployment = workers.set_running(self.actor, self.get_object(), True)
        return Response(self.get_serializer(deployment).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: serializers.DeploymentSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        deployment = workers.set_running(self.actor, self.get_object(), False)
        return Response(self.get_serializer(deployment).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def worker(self, request, pk=None):
        """The worker's state as the supervisor sees it, and its live config and stats as it reports them."""
        return Response(workers.live_state(self.get_object()))

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def cache(self, request, pk=None):
        """Response-cache hits, misses and bytes for this deployment."""
        return Response(cache_stats(self.get_object().pk))

    @extend_schema(methods=["get"], responses=serializers.RolloutSerializer(many=True))
    @extend_schema(
        methods=["post"], request=serializers.RolloutCreateSerializer, responses={201: serializers.RolloutSerializer}
    )
    @action(detail=True, methods=["get", "post"], url_path="rollouts")
    def rollouts(self, request, pk=None):
        """GET: this deployment's rollouts. POST: start one (operator)."""
        deployment = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(deployment.rollouts.select_related("target_model_version"))
            return self.get_paginated_response(serializers.RolloutSerializer(page, many=True).data)
        body = serializers.RolloutCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rollout = rollouts.create_rollout(self.actor, deployment, **body.validated_data)
        return Response(serializers.RolloutSerializer(rollout).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=serializers.DriftRunSerializer, responses={201: serializers.DriftCheckSerializer(many=True)})
    @action(detail=True, methods=["post"], url_path="drift-checks", pagination_class=None)  # a plain list
    def drift_checks(self, request, pk=None):
        """Run drift checks on this deployment now (operator)."""
        deployment = self.get_object()
        body = serializers.DriftRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        checks = driftchecks.run_checks(deployment, body.validated_data.get("kinds"), trigger="manual")
        audit.record(self.actor, "drift_check.run", deployment, after={check.kind: check.verdict for check in checks})
        return Response(serializers.DriftCheckSerializer(checks, many=True).data, status=status.HTTP_201_CREATED)


class DriftCheckViewSet(viewsets.ReadOnlyModelViewSet):
    """Drift checks with their statistic, threshold, verdict and the data they used."""

    queryset = DriftCheck.objects.select_related("deployment", "model_version")
    serializer_class = serializers.DriftCheckSerializer
    filterset_fields = ["deployment", "kind", "verdict", "trigger"]


class RolloutViewSet(ActorMixin, viewsets.ReadOnlyModelViewSet):
    """Rollouts and their manual controls. Illegal transitions (promoting a rolled-back rollout…) get 409."""

    queryset = Rollout.objects.select_related(
        "deployment", "target_model_version", "base_revision", "result_revision", "created_by"
    )
    serializer_class = serializers.RolloutSerializer
    filterset_fields = ["deployment", "status", "strategy"]
    role_for_action = {name: Role.OPERATOR for name in ("promote", "pause", "resume", "rollback", "abort")}

    def _act(self, request, change):
        body = serializers.RolloutActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rollout = change(self.get_object(), body.validated_data["reason"])
        return Response(serializers.RolloutSerializer(rollout).data)

    @extend_schema(request=serializers.RolloutActionSerializer, responses=serializers.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        return self._act(request, lambda r, reason: rollouts.promote(self.actor, r, reason))

    @extend_schema(request=serializers.RolloutActionSerializer, responses=serializers.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(request, lambda r, reason: rollouts.pause(self.actor, r))

    @extend_schema(request=serializers.RolloutActionSerializer, responses=serializers.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(request, lambda r, reason: rollouts.resume(self.actor, r))

    @extend_schema(request=serializers.RolloutActionSerializer, responses=serializers.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        return self._act(request, lambda r, reason: rollouts.rollback(self.actor, r, reason))

    @extend_schema(request=serializers.RolloutActionSerializer, responses=serializers.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None):
        return self._act(request, lambda r, reason: rollouts.abort(self.actor, r))

    @extend_schema(responses=serializers.RolloutEventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        rollout = self.get_object()
        return Response(serializers.RolloutEventSerializer(rollout.events.all(), many=True).data)


class WorkerEventViewSet(viewsets.ReadOnlyModelViewSet):
    """What happened to workers: starts, exits (with exit code and log tail), restarts, configs applied, swaps."""

    queryset = WorkerEvent.objects.select_related("deployment")
    serializer_class = serializers.WorkerEventSerializer
    filterset_fields = ["deployment", "kind"]


class SessionViewSet(ActorMixin, viewsets.ViewSet):
    """Live conversations on the workers. The id is ``<deployment id>:<session id>``; DELETE ends one."""

    role_for_action = {"destroy": Role.OPERATOR}

    @extend_schema(responses=OpenApiTypes.OBJECT, parameters=[OpenApiParameter("deployment", int)])
    def list(self, request):
        queryset = Deployment.objects.exclude(worker_url="")
        deployment_id = parse_id(request.query_params.get("deployment"), "deployment", "a deployment id")
        if deployment_id is not None:
            queryset = queryset.filter(pk=deployment_id)
        sessions, errors = workers.list_sessions(queryset)
        return Response({"count": len(sessions), "results": sessions, "unreachable": errors})

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "id", str, OpenApiParameter.PATH, pattern=r"^[0-9]+:[^/.]+$", description="<deployment id>:<session id>"
            )
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def destroy(self, request, pk=None):
        raw_id, _, session_id = (pk or "").partition(":")
        if not raw_id or not session_id:
            raise InvalidInput.field("id", "must be <deployment id>:<session id>")
        deployment_id = parse_id(raw_id, "id", "<deployment id>:<session id>")
        deployment = Deployment.objects.filter(pk=deployment_id).first()
        if deployment is None:
            raise exceptions.NotFound(f"There is no deployment with id {raw_id}.")
        try:
            return Response(workers.end_session(self.actor, deployment, session_id))
        except InvalidInput as exc:  # the worker has no such session: the object named by the path is not there
            if "session" not in exc.errors:
                raise
            raise exceptions.NotFound(f"{deployment.name} has no session {session_id!r}.") from None


class UsageViewSet(viewsets.ViewSet):
    """Requests and tokens per API token or per deployment, from the gateway's records."""

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", str, enum=["token", "deployment"]),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="ISO 8601; default: 24 hours ago"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def list(self, request):
        since = parse_when(request.query_params.get("since"), "since")
        rows = workers.usage_summary(since=since, group_by=request.query_params.get("group_by", "token"))
        return Response({"count": len(rows), "results": rows})


class GoldenSetViewSet(ActorMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Golden sets per model version: prompts with reference texts, for quality drift checks and rollout gates.
    The newest set of a version is the one used; sets are replaced by uploading a new one, not edited."""

    queryset = GoldenSet.objects.select_related("model_version", "created_by")
    serializer_class = serializers.GoldenSetSerializer
    filterset_fields = ["model_version"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = quality.create_golden_set(self.actor, data["model_version"], data["name"], data["items"])

    def perform_destroy(self, instance):
        audit.record(self.actor, "golden_set.delete", instance, before={"name": instance.name})
        instance.delete()


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log: read-only."""

    queryset = AuditEvent.objects.all()
    serializer_class = serializers.AuditEventSerializer
    filterset_class = filters.AuditEventFilter
    ordering_fields = ["at"]


class ApiTokenViewSet(
    ActorMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Personal API tokens. Everyone manages their own; admins manage everyone's. DELETE revokes."""

    serializer_class = serializers.ApiTokenSerializer
    role_for_action = {"create": Role.VIEWER, "destroy": Role.VIEWER}  # own tokens; the queryset limits the rest

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return ApiToken.objects.none()
        queryset = ApiToken.objects.select_related("user")
        if self.request.user.has_role(Role.ADMIN):
            return queryset
        return queryset.filter(Q(user=self.request.user))

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        owner = data.pop("user", request.user)
        if owner != request.user and not request.user.has_role(Role.ADMIN):
            return Response(
                {"user": ["Only admins can create tokens for other users."]}, status=status.HTTP_403_FORBIDDEN
            )
        token, raw = accounts.issue_token(self.actor, owner, **data)
        body = {**self.get_serializer(token).data, "token": raw}
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        accounts.revoke_token(self.actor, instance)


class UserViewSet(ActorMixin, viewsets.ModelViewSet):
    """Users and their roles (admins only)."""

    queryset = User.objects.order_by("username")
    serializer_class = serializers.UserSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    role_for_action = {action: Role.ADMIN for action in ("list", "retrieve", "create", "partial_update")}

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        if "password" not in data:
            raise InvalidInput.field("password", "This field is required.")
        serializer.instance = accounts.create_user(self.actor, **data)

    def perform_update(self, serializer):
        serializer.instance = accounts.update_user(self.actor, serializer.instance, **serializer.validated_data)


@extend_schema_serializer(many=False, component_name="Me")
class _MeSchema(serializers.UserSerializer):
    """The signed-in user: one object, though the route is a list route."""


class MeViewSet(viewsets.ViewSet):
    """The signed-in user and their role."""

    @extend_schema(responses=_MeSchema)
    def list(self, request):
        return Response(serializers.UserSerializer(request.user).data)
