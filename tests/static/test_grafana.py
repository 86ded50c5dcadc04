"""The Grafana dashboard and its provisioning: wired to the compose Prometheus, querying only what the code exports.

No Grafana runs here. The checks hold the files to each other and to the
code: the compose mounts, the provisioned datasource and dashboard path,
each panel's datasource, and every metric and label a panel or alert
queries against the metrics `operators/runtime/metrics.py` defines.
tests/e2e/test_metrics.py does the same against a real run's /metrics.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml
from prometheus_client.metrics import MetricWrapperBase

from operators.runtime import metrics
from tests.monitoring import (
    GRAFANA_DIR,
    PROMETHEUS_CONFIG,
    ROOT,
    Exported,
    alert_rules,
    dashboards,
    missing,
    panels,
    queries,
)
from tests.static.test_container_files import published_ports, service, service_env, volume_mounts

# What issue 19 asks the dashboard to show, by the metric each panel needs.
REQUIRED = {
    "input rate": "loginflow_messages_read_total",
    "consumer lag": "loginflow_consumer_lag_messages",
    "watermark": "loginflow_partition_watermark_seconds",
    "watermark lag": "loginflow_partition_watermark_lag_seconds",
    "closing watermark": "loginflow_closing_watermark_seconds",
    "windows open": "loginflow_open_windows",
    "windows revisable": "loginflow_revisable_windows",
    "DLQ by reason": "loginflow_rejects_total",
    "late events": "loginflow_late_events_total",
    "window_closed counts": "loginflow_counts_for_closed_windows_total",
    "commit latency": "loginflow_transaction_commit_seconds_bucket",
}


def exported_by_the_code() -> Exported:
    """Each sample name the metrics module's collectors can export, with its labels."""
    found: dict[str, frozenset[str]] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        (family,) = collector.describe()
        # prometheus_client keeps the label names only privately; describe() lists none.
        labels = frozenset(collector._labelnames)  # noqa: SLF001
        suffixes = {"counter": {"_total": labels}, "gauge": {"": labels}}.get(family.type)
        if family.type == "histogram":
            suffixes = {"_bucket": labels | {"le"}, "_count": labels, "_sum": labels}
        assert suffixes is not None, f"{family.name}: a {family.type}; teach this check its sample names"
        found.update({family.name + suffix: names for suffix, names in suffixes.items()})
    return found


def provisioning(kind: str) -> dict[str, Any]:
    (path,) = (GRAFANA_DIR / "provisioning" / kind).glob("*.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data["apiVersion"] == 1
    return data


def mounted_at(container_path: str) -> PurePosixPath:
    """The repo path the grafana service mounts at `container_path`, read-only."""
    for spec in service("grafana")["volumes"]:
        source, target, *mode = spec.split(":")
        if target == container_path:
            assert mode == ["ro"], f"mount {spec!r} read-only"
            assert (ROOT / source).exists(), source
            return PurePosixPath(source)
    raise AssertionError(f"grafana mounts nothing at {container_path}")


def test_grafana_is_pinned_published_locally_and_starts_after_prometheus() -> None:
    grafana = service("grafana")
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"]), grafana["image"]
    assert ("127.0.0.1", 3000, 3000) in published_ports("grafana")
    assert "prometheus" in grafana["depends_on"]
    assert volume_mounts("grafana")["/var/lib/grafana"] == "grafana-data"


def test_the_provisioned_datasource_is_the_compose_prometheus() -> None:
    mounted = mounted_at("/etc/grafana/provisioning/datasources")
    assert mounted == PurePosixPath("./deploy/grafana/provisioning/datasources")
    (source,) = provisioning("datasources")["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    url = urlsplit(source["url"])
    prometheus_port = {container for _ip, _host, container in published_ports("prometheus")}
    assert url.hostname == "prometheus" and url.port in prometheus_port, source["url"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert source["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]


def test_the_dashboard_provider_loads_the_mounted_dashboards() -> None:
    mounted_at("/etc/grafana/provisioning/dashboards")
    (provider,) = provisioning("dashboards")["providers"]
    assert provider["type"] == "file"
    assert mounted_at(provider["options"]["path"]) == PurePosixPath("./deploy/grafana/dashboards")
    home = PurePosixPath(service_env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == PurePosixPath(provider["options"]["path"]) and home.name in dashboards()


def test_every_panel_uses_the_provisioned_datasource_and_has_a_query() -> None:
    (source,) = provisioning("datasources")["datasources"]
    expected = {"type": "prometheus", "uid": source["uid"]}
    for name, dashboard in dashboards().items():
        assert dashboard["uid"] and dashboard["title"], name
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == expected, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == expected and target["expr"].strip(), panel["title"]
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"] == expected, variable["name"]


def test_the_dashboard_shows_what_operations_needs() -> None:
    queried = {name for refs in queries().values() for name in refs.names}
    assert {what: name for what, name in REQUIRED.items() if name not in queried} == {}


def test_the_alerts_panel_sees_every_alert() -> None:
    (selector,) = (s for refs in queries().values() for s in refs.selectors if s.name == "ALERTS")
    (pattern,) = (value for label, op, value in selector.matchers if label == "alertname" and op == "=~")
    assert all(re.fullmatch(pattern, rule["alert"]) for rule in alert_rules())


def test_dashboards_and_alerts_query_only_what_the_code_defines() -> None:
    assert missing(exported_by_the_code()) == []
