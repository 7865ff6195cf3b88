from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "controlplane"
    label = "controlplane"
    verbose_name = "LLM control plane"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlplane import runtime
        from controlplane.api import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from controlplane.gateway import recorder  # noqa: F401  (registers the request recorder)
        from controlplane.jobs import scheduler  # noqa: F401  (registers the scheduler with the runtime and /readyz)
        from controlplane.monitoring import redis_watch  # noqa: F401  (registers the Redis watch when REDIS_URL is set)
        from controlplane.workers import supervisor  # noqa: F401  (registers the supervisor as a runtime service)

        def metrics_service():  # imported when `serve` starts (numpy, scipy, NVML), not by every command
            from controlplane.monitoring.service import create_service

            return create_service()

        runtime.register(metrics_service, order=20)
