"""A small PNG chart of an alert's metric around the moment it fired, for the e-mail and the alert page.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state), so it is safe in any thread.
"""

from __future__ import annotations

import io
from datetime import datetime

__all__ = ["render_chart"]

WIDTH_PX, HEIGHT_PX, DPI = 600, 200, 100


def _x_values(points: list) -> tuple[list, bool]:
    """Times when every x is an ISO timestamp; the numbers when every x is one; else the positions."""
    try:
        return [datetime.fromisoformat(str(x)) for x, _ in points], True
    except ValueError:
        pass
    if all(isinstance(x, int | float) and not isinstance(x, bool) for x, _ in points):
        return [x for x, _ in points], False
    return list(range(len(points))), False


def render_chart(
    series: list,
    *,
    label: str = "",
    threshold: float | None = None,
    fired_at: datetime | None = None,
) -> bytes | None:
    """A 600×200 PNG of ``series`` (``[[x, value], …]``) with the threshold and the firing moment marked;
    None when there is nothing to draw."""
    points = [(x, float(v)) for x, v in series or [] if v is not None]
    if not points:
        return None
    # Not a cycle: matplotlib costs about a second to import, and only an e-mail with a chart needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs, timed = _x_values(points)
    ys = [v for _, v in points]
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(xs, ys, color="#1565c0", linewidth=1.6, marker="o" if len(points) < 40 else None, markersize=3)
    if threshold is not None:
        axes.axhline(threshold, color="#c62828", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        axes.legend(loc="upper left", fontsize=7, frameon=False)
    if fired_at is not None and timed:
        axes.axvline(fired_at, color="#b26a00", linewidth=1)  # type: ignore[arg-type]  # matplotlib converts datetimes
    axes.set_ylabel(label, fontsize=7)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if timed:
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # heavy, as above

        locator = AutoDateLocator(maxticks=6)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.xaxis.get_offset_text().set_fontsize(7)
    figure.subplots_adjust(left=0.09, right=0.985, top=0.95, bottom=0.16)  # fixed: tight_layout costs a draw
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
