"""The jobs in the REST API: the job table (from the registry, with last and next runs), each job's recent runs,
"run it now" (operators), and every run, filterable by job and outcome."""

from __future__ import annotations

from typing import cast

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.choices import AuditSource, Role
from controlplane.jobs import status as job_service
from controlplane.models import JobRun, User
from controlplane.services import audit

from .filters import FilterSet
from .serializers import StrictMixin


class JobRunSerializer(serializers.ModelSerializer):
    requested_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = JobRun
        fields = [
            "id",
            "job",
            "trigger",
            "outcome",
            "scheduled_for",
            "started_at",
            "finished_at",
            "duration_s",
            "result",
            "error",
            "traceback",
            "scheduler_id",
            "requested_by",
        ]
        read_only_fields = fields


class JobSerializer(serializers.Serializer):
    """A job: its line in the registry and what the database knows of its runs."""

    name = serializers.CharField()
    description = serializers.CharField(source="job.description")
    schedule = serializers.CharField(source="job.schedule")
    every_s = serializers.FloatField(source="job.every_s", allow_null=True)
    cron = serializers.CharField(source="job.cron", allow_null=True)
    coalesce = serializers.BooleanField(source="job.coalesce")
    misfire_grace_s = serializers.FloatField(source="job.misfire_grace_s", allow_null=True)
    max_runtime_s = serializers.FloatField(source="job.max_runtime_s")
    running = serializers.BooleanField()
    requested = serializers.BooleanField(help_text="A run-now request waits for the scheduler.")
    running_run = JobRunSerializer(allow_null=True)
    last_run = JobRunSerializer(allow_null=True)
    next_run_at = serializers.DateTimeField(allow_null=True, help_text="Null while no scheduler leads.")


class JobDetailSerializer(JobSerializer):
    recent_runs = serializers.SerializerMethodField()

    def get_recent_runs(self, status) -> list[dict]:
        runs = JobRun.objects.filter(job=status.name).select_related("requested_by")[:20]
        return cast("list[dict]", JobRunSerializer(runs, many=True).data)  # a ReturnList (many=True)


class RunNowSerializer(StrictMixin, serializers.Serializer):
    """No fields: the body is empty (or ``{}``)."""


class RunNowResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued", "ran"])
    request = serializers.IntegerField(allow_null=True, help_text="The run-now request the scheduler will take.")
    run = JobRunSerializer(allow_null=True, help_text="The run, when it ran inline (no scheduler was running).")


@extend_schema_serializer(many=False)
class JobListSerializer(serializers.Serializer):
    """Every job: not paginated (there are a handful)."""

    count = serializers.IntegerField()
    results = JobSerializer(many=True)


class JobViewSet(viewsets.ViewSet):
    """Scheduled jobs. They are declared in code (``controlplane/jobs/registry.py``); here they are read and run now."""

    lookup_field = "name"
    lookup_value_regex = "[a-z][a-z0-9_]*"
    role_for_action = {"run": Role.OPERATOR}

    def _status(self, name: str):
        try:
            return job_service.job_status(name)
        except LookupError:
            raise exceptions.NotFound(f"There is no job called {name!r}.") from None

    @extend_schema(responses=JobListSerializer)
    def list(self, request):
        rows = job_service.job_statuses()
        return Response({"count": len(rows), "results": JobSerializer(rows, many=True).data})

    @extend_schema(responses=JobDetailSerializer)
    def retrieve(self, request, name=None):
        return Response(JobDetailSerializer(self._status(name)).data)

    @extend_schema(
        request=RunNowSerializer,
        responses={200: RunNowResultSerializer, 202: RunNowResultSerializer},
        description="Run the job now: queued for the running scheduler (202), or run inline when none runs (200). "
        "409 when it is already running or already queued.",
    )
    @action(detail=True, methods=["post"])
    def run(self, request, name=None):
        self._status(name)
        RunNowSerializer(data=request.data or {}).is_valid(raise_exception=True)
        outcome = job_service.request_run(audit.Actor(request.user, AuditSource.API), name)
        if outcome.run is None:
            body = {"status": "queued", "request": outcome.request.pk, "run": None}
            return Response(body, status=status.HTTP_202_ACCEPTED)
        return Response({"status": "ran", "request": None, "run": JobRunSerializer(outcome.run).data})


class JobRunFilter(FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="gte")

    class Meta:
        model = JobRun
        fields = ["job", "outcome", "trigger", "since"]


class JobRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Every recorded run of every job, newest first (pruned after JOB_RUN_RETENTION_DAYS)."""

    queryset = JobRun.objects.select_related("requested_by")
    serializer_class = JobRunSerializer
    filterset_class = JobRunFilter
    ordering_fields = ["started_at", "duration_s"]
