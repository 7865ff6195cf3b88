"""The REST API router: kebab-case plural prefixes under /api/v1/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import jobs, views

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
router.register("jobs", jobs.JobViewSet, basename="job")
router.register("job-runs", jobs.JobRunViewSet, basename="job-run")

urlpatterns = [path("", include(router.urls))]
