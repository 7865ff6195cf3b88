from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "controlplane"
    label = "controlplane"
    verbose_name = "LLM control plane"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from controlplane import (
            scheduler,  # noqa: F401  (registers the scheduler with the runtime and /readyz)
            supervisor,  # noqa: F401  (registers the supervisor as a runtime service)
        )
        from controlplane.api import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from controlplane.gateway import recorder  # noqa: F401  (registers the request recorder)
