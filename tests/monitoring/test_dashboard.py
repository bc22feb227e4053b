"""monitoring/ only names metrics that socketsrv.metrics, qasite.core.metrics or the prober
(launch/prober.py) export, and its queries parse.

A metric renamed in socketsrv/metrics.py, qasite/core/metrics.py or launch/prober.py and not
in the Grafana
dashboard, the alert rules or their unit tests turns a panel blank or an alert silent without
any error from Prometheus; these tests turn it red instead. The PromQL of the dashboard is
parsed by promtool, which ./herald test fetches into .venv/tools.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from launch.prober import build_probe_metrics
from qasite.core import metrics as qa_metrics
from socketsrv.metrics import build_metrics, render

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
DASHBOARD = MONITORING / "grafana" / "herald.json"
RULE_FILES = (MONITORING / "alerts.yml", MONITORING / "alerts.test.yml")

HERALD_METRIC = re.compile(r"\bherald_[a-z0-9_]*[a-z0-9]\b")

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def exported_series_names() -> set[str]:
    """Every series name a scrape of the fleet, the Q&A core or the prober can show: counters
    as ``_total``, histograms by parts."""
    registries = (
        build_metrics(CollectorRegistry()).registry,
        qa_metrics.build_metrics(CollectorRegistry()).registry,
        build_probe_metrics().registry,
    )
    names: set[str] = set()
    for family in (family for registry in registries for family in registry.collect()):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every PromQL string of the dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            variable_query = key == "query" and "label_values" in str(value)
            if isinstance(value, str) and (key == "expr" or variable_query):
                yield value
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def assert_only_exported_metrics(where: str, text: str) -> None:
    used = set(HERALD_METRIC.findall(text))
    unknown = sorted(used - exported_series_names())
    assert not unknown, (
        f"{where} uses metrics that socketsrv.metrics, qasite.core.metrics and launch.prober"
        f" do not export: {unknown}"
    )


def find_promtool() -> str:
    in_venv = Path(sys.prefix) / "tools" / "promtool"
    found = str(in_venv) if in_venv.exists() else shutil.which("promtool")
    if found is None:
        pytest.fail(f"promtool not found in {in_venv.parent} or on PATH: run ./herald lint once")
    return found


def test_the_exported_names_include_counter_and_histogram_series() -> None:
    names = exported_series_names()
    assert "herald_disconnects_total" in names
    assert "herald_fanout_duration_seconds_bucket" in names
    assert "herald_connections_open" in names
    assert "herald_qa_http_requests_total" in names
    assert "herald_qa_http_request_duration_seconds_bucket" in names
    assert "herald_qa_outbox_lag_seconds" in names
    assert "herald_bus_recoveries_total" in names
    assert "herald_bus_recovery_seconds_bucket" in names
    assert "herald_probe_latency_seconds_bucket" in names
    assert "herald_probe_missed_total" in names


def test_a_name_neither_service_exports_is_reported() -> None:
    with pytest.raises(AssertionError, match="herald_qa_outbox_lag_total"):
        assert_only_exported_metrics("a rule", "max(herald_qa_outbox_lag_total) > 60")


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    queries = list(dashboard_queries(load_dashboard()))
    assert len(queries) > 20
    assert_only_exported_metrics(str(DASHBOARD), "\n".join(queries))


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda path: path.name)
def test_every_metric_the_alert_rules_and_their_tests_use_is_exported(rule_file: Path) -> None:
    assert_only_exported_metrics(str(rule_file), rule_file.read_text())


def test_every_dashboard_panel_but_rows_has_a_query() -> None:
    panels = load_dashboard()["panels"]
    empty = [
        panel["title"]
        for panel in panels
        if panel["type"] != "row" and not list(dashboard_queries(panel.get("targets", [])))
    ]
    assert not empty
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def row_panels(title: str) -> list[dict[str, Any]]:
    """The panels under the row *title*, up to the next row (rows here are not collapsed)."""
    panels: list[dict[str, Any]] = load_dashboard()["panels"]
    start = next(i for i, panel in enumerate(panels) if panel["title"] == title)
    assert panels[start]["type"] == "row"
    rest = panels[start + 1 :]
    end = next((i for i, panel in enumerate(rest) if panel["type"] == "row"), len(rest))
    return rest[:end]


def test_the_by_namespace_row_shows_publications_deliveries_and_subscriptions_by_kind() -> None:
    panels = row_panels("By namespace")
    queries = {panel["title"]: list(dashboard_queries(panel["targets"])) for panel in panels}
    assert list(queries) == [
        "Publications by namespace /s",
        "Deliveries by namespace /s",
        "Subscriptions by namespace",
    ]
    used = [set(HERALD_METRIC.findall(" ".join(exprs))) for exprs in queries.values()]
    assert used == [
        {"herald_namespace_publications_received_total", "herald_qa_namespace_publications_total"},
        {"herald_namespace_frames_delivered_total"},
        {"herald_namespace_subscriptions_open"},
    ]
    for expr in (expr for exprs in queries.values() for expr in exprs):
        assert expr.startswith("sum by (namespace) (")
        assert 'namespace=~"$namespace"' in expr
    # Each series carries the label the panels group by, and the variable lists its values.
    metrics = build_metrics(CollectorRegistry())
    qa = qa_metrics.build_metrics(CollectorRegistry())
    for metric in (
        metrics.namespace_publications,
        metrics.namespace_deliveries,
        metrics.namespace_subscriptions,
        qa.namespace_published,
    ):
        assert metric._labelnames == ("namespace",)
    (variable,) = [v for v in load_dashboard()["templating"]["list"] if v["name"] == "namespace"]
    assert "herald_namespace_subscriptions_open" in variable["query"]["query"]


def test_every_query_of_the_dashboard_parses_as_promql(tmp_path: Path) -> None:
    # promtool parses rule files, so each query becomes a recording rule; Grafana's own
    # variables become what Grafana would substitute.
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for number, query in enumerate(dashboard_queries(load_dashboard()["panels"])):
        promql = query.replace("$__rate_interval", "1m")
        lines += [
            f"      - record: dashboard:query_{number}",
            f"        expr: {json.dumps(promql)}",
        ]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")

    result = subprocess.run(
        [find_promtool(), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}{result.stderr}"


def test_what_prometheus_scrapes_passes_promtool_check_metrics() -> None:
    metrics = build_metrics(CollectorRegistry())
    metrics.disconnects.labels(code="4001").inc()
    metrics.fanout_duration.observe(0.002)
    metrics.bus_shard_connections.set(3)
    metrics.bus_recoveries.labels(reason="sunsubscribe").inc()
    metrics.bus_recovery_duration.observe(0.3)
    metrics.namespace_publications.labels("question").inc()
    metrics.namespace_deliveries.labels("question").inc(3)
    metrics.namespace_subscriptions.labels("tag").set(2)
    result = subprocess.run(
        [find_promtool(), "check", "metrics"],
        input=render(metrics, None),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_what_prometheus_scrapes_from_the_qa_core_passes_promtool_check_metrics() -> None:
    metrics = qa_metrics.build_metrics(CollectorRegistry())
    metrics.http_requests.labels("/api/questions/{question_id}", "GET", "404").inc()
    metrics.http_request_duration.labels("/api/questions/{question_id}").observe(0.004)
    metrics.outbox_lag.set(1.5)
    metrics.namespace_published.labels("question").inc()
    result = subprocess.run(
        [find_promtool(), "check", "metrics"],
        input=qa_metrics.render(metrics),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_what_prometheus_scrapes_from_the_prober_passes_promtool_check_metrics() -> None:
    metrics = build_probe_metrics()
    metrics.latency.observe(0.03)
    metrics.missed.labels(reason="deadline").inc(3)
    metrics.sent.inc()
    metrics.disconnects.labels(code="4000").inc()
    result = subprocess.run(
        [find_promtool(), "check", "metrics"],
        input=generate_latest(metrics.registry),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
