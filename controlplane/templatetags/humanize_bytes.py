"""Template filters for figures: ``bytes`` (GiB/MiB/KiB)."""

from django import template

from controlplane.services.fit import format_bytes

register = template.Library()


@register.filter(name="bytes")
def bytes_filter(value):
    if value in (None, ""):
        return "—"
    try:
        return format_bytes(float(value))
    except (TypeError, ValueError):
        return value
