"""Dashboard forms. They only shape input; the service functions check it, and their errors land on the fields."""

from __future__ import annotations

from django import forms

from controlplane.choices import DesiredState, ModelFormat, Precision, Role, TokenScope
from controlplane.models import GPU, ModelVersion, Node
from controlplane.services.deployment_config import CONFIG_FIELDS
from controlplane.services.errors import InvalidInput, flatten_errors


def apply_errors(form: forms.Form, exc: InvalidInput) -> None:
    """Put each service error on the form field it names (``config.max_batch_size`` → ``max_batch_size``)."""
    for path, message in flatten_errors(exc.errors):
        parts = path.split(".")
        field = next((p for p in reversed(parts) if p in form.fields), None)
        form.add_error(field, message if field else f"{path}: {message}")


class ModelVersionForm(forms.Form):
    name = forms.CharField(max_length=100)
    version = forms.CharField(max_length=50)
    artifact_path = forms.CharField(max_length=1024, help_text="A checkpoint directory inside the model directories.")
    format = forms.ChoiceField(choices=[("", "Detect from the artifact"), *ModelFormat.choices], required=False)
    precision = forms.ChoiceField(choices=Precision.choices, initial=Precision.FP32)
    baseline_quality = forms.FloatField(
        required=False, min_value=0, help_text="Held-out perplexity; empty: read from the checkpoint."
    )
    sha256 = forms.RegexField(r"^[0-9a-fA-F]{64}$", required=False, help_text="Optional: must match the artifact.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class ModelVersionEditForm(forms.ModelForm):
    class Meta:
        model = ModelVersion
        fields = ["status", "description", "baseline_quality"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class NodeForm(forms.ModelForm):
    class Meta:
        model = Node
        fields = ["hostname", "address", "cpu_cores", "memory_bytes", "role", "status"]


class GPUForm(forms.ModelForm):
    class Meta:
        model = GPU
        fields = ["node", "index", "uuid", "name", "memory_total_bytes", "driver_version", "cuda_version"]


def _config_form_field(name: str):
    """A form field for a config key, its label, unit, bounds and help taken from the worker contract."""
    spec = CONFIG_FIELDS[name]
    label = f"{spec.label} ({spec.unit})" if spec.unit and spec.unit != "share" else spec.label
    if spec.choices:
        choices = [("", "keep the current value"), *((c, c) for c in spec.choices)]
        return forms.ChoiceField(choices=choices, required=False, label=label, help_text=spec.help_text())
    if spec.kind is list:
        return forms.CharField(required=False, label=label, help_text=spec.help_text() + " Comma-separated.")
    field = forms.IntegerField if spec.kind is int else forms.FloatField
    placeholder = "automatic" if spec.default is None else f"default {spec.default:g}"
    attrs = {"placeholder": placeholder}
    if spec.minimum is not None:
        attrs["min"] = f"{spec.minimum:g}"
    if spec.maximum is not None:
        attrs["max"] = f"{spec.maximum:g}"
    if field is forms.FloatField:
        attrs["step"] = "any"
    return field(required=False, label=label, help_text=spec.help_text(), widget=field.widget(attrs=attrs))


class DeploymentForm(forms.Form):
    """Create or change a deployment. Config fields left empty keep their current (or default) values."""

    name = forms.CharField(max_length=100)
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.all())
    node = forms.ModelChoiceField(queryset=Node.objects.all())
    gpus = forms.ModelMultipleChoiceField(
        queryset=GPU.objects.select_related("node"),
        required=False,
        label="GPUs",
        help_text="None: the deployment runs on the CPU.",
    )
    desired_state = forms.ChoiceField(choices=DesiredState.choices, initial=DesiredState.RUNNING)
    comment = forms.CharField(max_length=500, required=False, help_text="Why; kept with the revision.")

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        for name in CONFIG_FIELDS:
            self.fields[name] = _config_form_field(name)
        if editing:
            del self.fields["name"]
            del self.fields["node"]

    def clean_router_weights(self):
        raw = (self.cleaned_data.get("router_weights") or "").strip()
        if not raw:
            return None
        try:
            return [float(part) for part in raw.replace(";", ",").split(",") if part.strip()]
        except ValueError:
            raise forms.ValidationError("must be numbers separated by commas") from None

    def config_changes(self) -> dict:
        changes = {}
        for name in CONFIG_FIELDS:
            value = self.cleaned_data.get(name)
            if value not in (None, ""):
                changes[name] = value
        return changes

    @staticmethod
    def initial_from(deployment) -> dict:
        config = deployment.config
        initial = {name: config.get(name) for name in CONFIG_FIELDS}
        if config.get("router_weights"):
            initial["router_weights"] = ", ".join(f"{w:g}" for w in config["router_weights"])
        initial.update(
            model_version=deployment.model_version,
            gpus=list(deployment.gpus.all()),
            desired_state=deployment.desired_state,
        )
        return initial


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    scope = forms.ChoiceField(choices=TokenScope.choices)
    expires_at = forms.DateTimeField(required=False, help_text="Optional, e.g. 2027-01-31 12:00.")
    rate_limit_per_minute = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)


class UserForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=Role.choices)
    password = forms.CharField(
        widget=forms.PasswordInput,
        required=False,
        help_text="Required for a new user; leave empty to keep the current one.",
    )
    is_active = forms.BooleanField(required=False, initial=True)
