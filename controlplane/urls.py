"""URL routes: dashboard pages, the REST API under /api/v1/, its schema, health checks."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from controlplane import health
from controlplane.api.metrics import PrometheusView
from controlplane.views import (
    accounts,
    alerts,
    deployments,
    drift,
    inventory,
    jobs,
    live,
    overview,
    registry,
    rollouts,
    workers,
)

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", PrometheusView.as_view(), name="prometheus"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", overview.overview, name="overview"),
    # registry
    path("models/", registry.model_list, name="model-list"),
    path("models/new/", registry.model_create, name="model-create"),
    path("models/<int:pk>/", registry.model_detail, name="model-detail"),
    path("models/<int:pk>/edit/", registry.model_edit, name="model-edit"),
    path("models/<int:pk>/delete/", registry.model_delete, name="model-delete"),
    # inventory
    path("nodes/", inventory.node_list, name="node-list"),
    path("nodes/new/", inventory.node_form, name="node-create"),
    path("nodes/<int:pk>/", inventory.node_detail, name="node-detail"),
    path("nodes/<int:pk>/edit/", inventory.node_form, name="node-edit"),
    path("gpus/new/", inventory.gpu_form, name="gpu-create"),
    path("gpus/<int:pk>/edit/", inventory.gpu_form, name="gpu-edit"),
    path("<str:kind>s/<int:pk>/delete/", inventory.inventory_delete, name="inventory-delete"),
    # deployments
    path("deployments/", deployments.deployment_list, name="deployment-list"),
    path("deployments/new/", deployments.deployment_create, name="deployment-create"),
    path("deployments/<int:pk>/", deployments.deployment_detail, name="deployment-detail"),
    path("deployments/<int:pk>/edit/", deployments.deployment_edit, name="deployment-edit"),
    path("deployments/<int:pk>/rollback/", deployments.deployment_rollback, name="deployment-rollback"),
    re_path(
        r"^deployments/(?P<pk>\d+)/(?P<action>restart|start|stop)/$",
        workers.worker_action,
        name="deployment-worker-action",
    ),
    path("sessions/", workers.session_list, name="session-list"),
    path("sessions/<int:pk>/<str:session_id>/end/", workers.session_end, name="session-end"),
    path("usage/", workers.usage, name="usage"),
    path("deployments/<int:pk>/rollouts/new/", rollouts.rollout_create, name="rollout-create"),
    path("rollouts/<int:pk>/", rollouts.rollout_detail, name="rollout-detail"),
    re_path(
        r"^rollouts/(?P<pk>\d+)/(?P<action>promote|pause|resume|rollback|abort)/$",
        rollouts.rollout_action,
        name="rollout-action",
    ),
    path("live/", live.live, name="live"),
    path("drift/", drift.drift_page, name="drift"),
    path("drift/<int:pk>/", drift.drift_detail, name="drift-detail"),
    path("drift/run/<int:pk>/", drift.drift_run, name="drift-run"),
    # alerts
    path("alerts/", alerts.alert_list, name="alert-list"),
    path("alerts/<int:pk>/", alerts.alert_detail, name="alert-detail"),
    path("alerts/<int:pk>/chart.png", alerts.alert_chart, name="alert-chart"),
    path("alerts/<int:pk>/acknowledge/", alerts.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/<int:pk>/resolve/", alerts.alert_resolve, name="alert-resolve"),
    path("alerts/notifications/<int:pk>/retry/", alerts.notification_retry, name="notification-retry"),
    path("alerts/rules/", alerts.rule_list, name="alert-rule-list"),
    path("alerts/rules/new/", alerts.rule_form, name="alert-rule-create"),
    path("alerts/rules/<int:pk>/", alerts.rule_detail, name="alert-rule-detail"),
    path("alerts/rules/<int:pk>/edit/", alerts.rule_form, name="alert-rule-edit"),
    path("alerts/rules/<int:pk>/delete/", alerts.rule_delete, name="alert-rule-delete"),
    # jobs
    path("jobs/", jobs.job_list, name="job-list"),
    path("jobs/<slug:name>/", jobs.job_detail, name="job-detail"),
    path("jobs/<slug:name>/run/", jobs.job_run, name="job-run"),
    # people
    path("audit/", accounts.audit_list, name="audit-list"),
    path("tokens/", accounts.token_list, name="token-list"),
    path("tokens/<int:pk>/revoke/", accounts.token_revoke, name="token-revoke"),
    path("users/", accounts.user_list, name="user-list"),
    path("users/new/", accounts.user_form, name="user-create"),
    path("users/<int:pk>/", accounts.user_form, name="user-edit"),
    # API and the OpenAI-compatible gateway
    path("api/v1/", include("controlplane.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("admin/", admin.site.urls),
]
