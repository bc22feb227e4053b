"""Client telemetry into the fleet's counters (docs/protocol.md#client-telemetry).

The protocol core validates, folds and clamps a report (socketsrv/protocol/telemetry.py) and
returns a :class:`~socketsrv.protocol.session.CountTelemetry` effect; the connection hands it
here. Nothing else reads a report: it is trusted for these counters only.
"""

from __future__ import annotations

from socketsrv.metrics import Metrics
from socketsrv.protocol.session import CountTelemetry


def count_telemetry(metrics: Metrics, effect: CountTelemetry) -> None:
    """Add an accepted report to the ``herald_client_*`` counters; count every outcome."""
    metrics.commands.labels(op="telemetry").inc()
    metrics.client_telemetry_reports.labels(result=effect.result.value).inc()
    report = effect.report
    if report is None:
        return
    for code, count in report.reconnects:
        metrics.client_reconnects.labels(code=code).inc(count)
    if report.recovered:
        metrics.client_recoveries.labels(result="recovered").inc(report.recovered)
    if report.recovery_failed:
        metrics.client_recoveries.labels(result="failed").inc(report.recovery_failed)
    if report.gaps:
        metrics.client_gaps_repaired.inc(report.gaps)
    if report.deaf:
        metrics.client_deaf_reconnects.inc(report.deaf)
    if report.disconnected_ms:
        metrics.client_disconnected_seconds.inc(report.disconnected_ms / 1000)
    if report.delayed_ms:
        metrics.client_delayed_seconds.inc(report.delayed_ms / 1000)
    if report.ignored_keys:
        metrics.client_telemetry_ignored_keys.inc(report.ignored_keys)
