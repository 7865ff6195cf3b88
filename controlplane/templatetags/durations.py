"""Template filter for measured durations: ``seconds`` (``850 µs``, ``12.3 ms``, ``4.56 s``)."""

from django import template

register = template.Library()


@register.filter(name="seconds")
def seconds_filter(value):
    if value in (None, ""):
        return "—"
    value = float(value)
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"
