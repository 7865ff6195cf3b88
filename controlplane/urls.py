"""URL routes: dashboard pages, the REST API under /api/v1, health checks."""

from django.contrib import admin
from django.urls import path

from controlplane import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]
