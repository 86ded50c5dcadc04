"""What the Grafana dashboards and the Prometheus alert rules query, and what of it /metrics does not export.

Shared by the static checks (tests/static/test_alerts.py, test_grafana.py)
and the scrape of a real run (tests/e2e/test_metrics.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.promql import LabelUse, References, Selector, references

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST_FILE = PROMETHEUS_DIR / "alerts.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"

# Labels Prometheus adds to every scraped series: the target's, not the exporter's.
TARGET_LABELS = frozenset({"job", "instance"})
# Grafana's label_values(metric{matchers}, label): a variable's query, not PromQL.
LABEL_VALUES = re.compile(r"\s*label_values\(\s*(?P<selector>[^,]+?)\s*,\s*(?P<label>[A-Za-z_]\w*)\s*\)\s*")

Exported = Mapping[str, frozenset[str]]
"""Sample name -> the label names it is exported with."""


@cache
def alert_rules() -> tuple[dict[str, Any], ...]:
    data = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    return tuple(rule for group in data["groups"] for rule in group["rules"])


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def prometheus_made() -> Exported:
    """Series Prometheus makes itself, not any /metrics: `up` per target, `ALERTS` per firing alert."""
    alert_labels = {label for rule in alert_rules() for label in rule.get("labels", {})}
    return {"up": frozenset(), "ALERTS": frozenset({"alertname", "alertstate"} | alert_labels)}


def _variable_query(query: str) -> References:
    match = LABEL_VALUES.fullmatch(query)
    if match is None:
        return references(query)
    inner = references(match["selector"])
    (selector,) = inner.selectors
    return References(inner.selectors, (LabelUse(match["label"], frozenset({selector.name})),))


def queries() -> dict[str, References]:
    """Where each query is (`alerts.yml: Name`, `loginflow.json: panel title #A`) -> what it reads."""
    found = {f"{ALERTS_FILE.name}: {rule['alert']}": references(rule["expr"]) for rule in alert_rules()}
    for file_name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                found[f"{file_name}: {panel['title']} #{target['refId']}"] = references(target["expr"])
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                found[f"{file_name}: variable {variable['name']}"] = _variable_query(text)
    return found


def _has(exported: Exported, name: str, label: str) -> bool:
    return label in TARGET_LABELS or label in exported.get(name, frozenset())


def _selector_problems(where: str, selector: Selector, exported: Exported) -> Iterator[str]:
    if selector.name not in exported:
        yield f"{where}: no metric {selector.name}"
        return
    for label, _operator, _value in selector.matchers:
        if not _has(exported, selector.name, label):
            yield f"{where}: {selector.name} has no label {label!r}"


def missing(exported: Exported) -> list[str]:
    """Each name or label a dashboard or alert queries that `exported` (plus Prometheus's own) lacks."""
    known = {**exported, **prometheus_made()}
    problems: list[str] = []
    for where, refs in queries().items():
        for selector in refs.selectors:
            problems.extend(_selector_problems(where, selector, known))
        for use in refs.labels:
            problems.extend(
                f"{where}: groups or matches {name} by {use.label!r}, which it does not have"
                for name in sorted(use.metrics)
                if name in known and not _has(known, name, use.label)
            )
    return problems
