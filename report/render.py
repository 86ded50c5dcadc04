"""The report page: plotly figures with plotly.js inlined, in a jinja2 template with autoescape on.

The page works offline: plotly.js is written into it once, every figure only
carries its data, and nothing is loaded from anywhere else.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2
import plotly.graph_objects as go
import plotly.offline
from markupsafe import Markup

from report.aggregate import TopKey, UserSpread, WindowPoint
from report.read import TopicRead

TEMPLATE = Path(__file__).with_name("page.html.j2")
CHART_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass(frozen=True)
class Spread:
    """Users ranked by distinct values of another field, from one two-field slice (None: not in SLICES)."""

    slice: str | None
    users: list[UserSpread]
    min_count: int = 1
    """The slice's minimum count: a pair is in it for a window only once it counts that often there."""


@dataclass
class Page:
    """Everything the page shows."""

    generated_at: datetime
    brokers: str
    reads: list[TopicRead]
    window_seconds: int
    range_from: datetime | None
    range_to: datetime | None
    top_n: int
    slice_fields: dict[str, tuple[str, ...]]
    series: dict[str, list[WindowPoint]]
    top: dict[str, list[TopKey]]
    devices: Spread
    ips: Spread
    dlq_reasons: list[tuple[str, int]]
    late_windows: list[tuple[str, int]]
    unreadable: int = 0
    windows: tuple[datetime, datetime] | None = None
    """The first window start and the last window end among the records shown."""
    notes: list[str] = field(default_factory=list)


def _label(text: str) -> str:
    # Plotly reads a few HTML tags in labels; a key value must show as typed.
    return html.escape(text, quote=False)


def _chart(figure: go.Figure, div_id: str, height: int = 300) -> Markup:
    figure.update_layout(height=height, margin={"l": 50, "r": 50, "t": 30, "b": 40}, template="plotly_white")
    # Plotly escapes <, > and / inside its JSON, so a key value cannot close the script.
    return Markup(figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CHART_CONFIG))  # noqa: S704


def window_chart(slice_name: str, points: Sequence[WindowPoint], div_id: str) -> Markup:
    """Bars of records per window and a line of the summed counts, on their own axes."""
    starts = [point.window_start for point in points]
    figure = go.Figure()
    figure.add_bar(x=starts, y=[point.records for point in points], name="records (keys)")
    figure.add_scatter(
        x=starts, y=[point.total for point in points], name="summed count", yaxis="y2", mode="lines+markers"
    )
    figure.update_layout(
        title={"text": _label(slice_name), "font": {"size": 14}},
        yaxis={"title": {"text": "records"}, "rangemode": "tozero", "tickformat": ",d"},
        yaxis2={
            "title": {"text": "summed count"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "tickformat": ",d",
            "showgrid": False,
        },
        legend={"orientation": "h", "y": -0.2},
    )
    return _chart(figure, div_id)


def bar_chart(labels: Sequence[str], values: Sequence[int], div_id: str, *, horizontal: bool = False) -> Markup:
    """One bar per label; horizontal for long labels such as user ids."""
    shown = [_label(text) for text in labels]
    figure = go.Figure()
    if horizontal:
        figure.add_bar(x=list(values), y=shown, orientation="h")
        figure.update_layout(yaxis={"autorange": "reversed", "type": "category"})
    else:
        figure.add_bar(x=shown, y=list(values))
        figure.update_layout(xaxis={"type": "category"})
    return _chart(figure, div_id, height=max(260, 24 * len(labels) + 80) if horizontal else 300)


def charts(page: Page) -> dict[str, Markup]:
    """Every figure of the page by name."""
    figures = {
        f"slice-{index}": window_chart(name, points, f"chart-slice-{index}")
        for index, (name, points) in enumerate(page.series.items())
    }
    for name, spread in (("devices", page.devices), ("ips", page.ips)):
        if spread.users:
            users = spread.users
            figures[name] = bar_chart(
                [u.user for u in users], [u.distinct for u in users], f"chart-{name}", horizontal=True
            )
    if page.dlq_reasons:
        reasons, counts = zip(*page.dlq_reasons, strict=True)
        figures["dlq"] = bar_chart(reasons, counts, "chart-dlq")
    if page.late_windows:
        windows, counts = zip(*page.late_windows, strict=True)
        figures["late"] = bar_chart(windows, counts, "chart-late")
    return figures


def render(page: Page) -> str:
    """The whole page as one HTML document."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["utc"] = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "open"
    environment.filters["short"] = lambda moment: moment.strftime("%m-%d %H:%M")
    template = environment.get_template(TEMPLATE.name)
    return template.render(
        page=page,
        charts=charts(page),
        plotly_js=Markup(plotly.offline.get_plotlyjs()),  # noqa: S704 - the pinned library's own bundle
        slice_index={name: index for index, name in enumerate(page.series)},
    )
