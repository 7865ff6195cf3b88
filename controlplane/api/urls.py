"""The REST API router: kebab-case plural prefixes under /api/v1/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import alerts, jobs, metrics, views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("model-versions", views.ModelVersionViewSet, basename="model-version")
router.register("nodes", views.NodeViewSet, basename="node")
router.register("gpus", views.GPUViewSet, basename="gpu")
router.register("deployments", views.DeploymentViewSet, basename="deployment")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("tokens", views.ApiTokenViewSet, basename="api-token")
router.register("users", views.UserViewSet, basename="user")
router.register("me", views.MeViewSet, basename="me")
router.register("worker-events", views.WorkerEventViewSet, basename="worker-event")
router.register("sessions", views.SessionViewSet, basename="session")
router.register("usage", views.UsageViewSet, basename="usage")
router.register("rollouts", views.RolloutViewSet, basename="rollout")
router.register("golden-sets", views.GoldenSetViewSet, basename="golden-set")
router.register("drift-checks", views.DriftCheckViewSet, basename="drift-check")
router.register("alert-rules", alerts.AlertRuleViewSet, basename="alert-rule")
router.register("alerts", alerts.AlertViewSet, basename="alert")
router.register("notifications", alerts.NotificationViewSet, basename="notification")
router.register("jobs", jobs.JobViewSet, basename="job")
router.register("job-runs", jobs.JobRunViewSet, basename="job-run")
router.register("metrics", metrics.MetricsViewSet, basename="metrics")

urlpatterns = [path("", include(router.urls))]
