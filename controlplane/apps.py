from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "controlplane"
    label = "controlplane"
    verbose_name = "LLM control plane"
    default_auto_field = "django.db.models.BigAutoField"
