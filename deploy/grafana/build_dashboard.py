"""Writes deploy/grafana/loa-dashboard.json (run: python deploy/grafana/build_dashboard.py).

The dashboard is generated so every panel uses the same selectors; edit this file, not the JSON.
tests/deploy/test_dashboard.py checks the JSON is current, valid and names only real metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "loa-dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "[$__rate_interval]"


def sel(extra: str = "") -> str:
    return "{" + 'job=~"$job"' + ("," + extra if extra else "") + "}"


FAILED = sel('outcome="failed"')
DELIVERED = sel('outcome="delivered"')
REJECTED = sel('outcome="rejected"')


def ts(
    title: str,
    targets: list[tuple[str, str]],
    unit: str = "short",
    *,
    x: int = 0,
    stack: bool = False,
    desc: str = "",
) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"stacking": {"mode": "normal" if stack else "none"}},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi"},
        },
        "targets": [
            {"refId": chr(65 + i), "expr": e, "legendFormat": legend}
            for i, (e, legend) in enumerate(targets)
        ],
        "gridPos": {"h": 8, "w": 12, "x": x, "y": 0},
    }


def stat(title: str, expr: str, unit: str = "short", *, x: int = 0) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
        "targets": [{"refId": "A", "expr": expr}],
        "gridPos": {"h": 4, "w": 4, "x": x, "y": 0},
    }


def row(title: str) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
    }


def quantiles(metric: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, priority) (rate({metric}_bucket{sel()}{RI})))",
            f"p{round(q * 100)} {{{{priority}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def layout() -> list[list[dict[str, Any]]]:
    failed_ratio = (
        f"sum(rate(loa_receipts_total{FAILED}[5m]))"
        f" / clamp_min(sum(rate(loa_receipts_total{sel()}[5m])), 1e-9)"
    )
    return [
        [row("At a glance")],
        [
            stat("Workers up", f"sum(up{sel()})"),
            stat("Orders in progress", f"sum(loa_fanout_orders_in_progress{sel()})", x=4),
            stat("Tasks / s", f"sum(rate(loa_tasks_emitted_total{sel()}[1m]))", "ops", x=8),
            stat("Receipts / s", f"sum(rate(loa_receipts_total{sel()}[1m]))", "ops", x=12),
            stat("Failed deliveries (5m)", failed_ratio, "percentunit", x=16),
            stat(
                "Rejected alerts (1h)",
                f"sum(increase(loa_inbound_records_total{REJECTED}[1h]))",
                x=20,
            ),
        ],
        [row("Ingest")],
        [
            ts(
                "Inbound records by outcome",
                [(f"sum by (outcome) (rate(loa_inbound_records_total{sel()}{RI}))", "{{outcome}}")],
                "ops",
                stack=True,
            ),
            ts(
                "Rejections by reason",
                [
                    (
                        f"sum by (reason) (increase(loa_inbound_records_total{REJECTED}{RI}))",
                        "{{reason}}",
                    )
                ],
                x=12,
                stack=True,
            ),
        ],
        [
            ts(
                "Accepted alerts by priority and status",
                [
                    (
                        "sum by (priority, status) "
                        f"(increase(loa_alerts_accepted_total{sel()}{RI}))",
                        "{{priority}} {{status}}",
                    )
                ],
                stack=True,
            ),
            ts(
                "Recipients targeted per second by priority",
                [
                    (
                        f"sum by (priority) (rate(loa_recipients_targeted_total{sel()}{RI}))",
                        "{{priority}}",
                    )
                ],
                "ops",
                x=12,
            ),
        ],
        [row("Fan-out progress")],
        [
            ts(
                "Targeted, emitted, suppressed, delivered, failed (cumulative since restart)",
                [
                    (f"sum(loa_recipients_targeted_total{sel()})", "targeted"),
                    (f"sum(loa_tasks_emitted_total{sel()})", "emitted"),
                    (f"sum(loa_tasks_suppressed_total{sel()})", "suppressed"),
                    (f"sum(loa_receipts_total{DELIVERED})", "delivered"),
                    (f"sum(loa_receipts_total{FAILED})", "failed"),
                ],
                desc="Per-alert detail: `loa status ALERT --watch`.",
            ),
            ts(
                "Tasks emitted per second by channel and priority",
                [
                    (
                        f"sum by (channel, priority) (rate(loa_tasks_emitted_total{sel()}{RI}))",
                        "{{priority}} {{channel}}",
                    )
                ],
                "ops",
                x=12,
                stack=True,
            ),
        ],
        [
            ts(
                "Suppressed by reason",
                [
                    (
                        f"sum by (reason) (rate(loa_tasks_suppressed_total{sel()}{RI}))",
                        "{{reason}}",
                    )
                ],
                "ops",
                stack=True,
            ),
            ts(
                "Throttle wait (seconds per second) by channel",
                [
                    (
                        f"sum by (channel) (rate(loa_throttle_wait_seconds_total{sel()}{RI}))",
                        "{{channel}}",
                    )
                ],
                "s",
                x=12,
                desc="Above 0.5 for 5 minutes fires LoaChannelSaturated.",
            ),
        ],
        [row("Latency")],
        [
            ts("Fan-out duration per order", quantiles("loa_fanout_duration_seconds"), "s"),
            ts(
                "Time to first task (from the order written by ingest)",
                quantiles("loa_fanout_time_to_first_task_seconds"),
                "s",
                x=12,
            ),
        ],
        [
            ts(
                "Decision to first task (SLO: extreme within 10 s, LoaFirstTaskSloMissed)",
                quantiles("loa_decision_to_first_task_seconds"),
                "s",
            ),
            ts(
                "Decision to last task (an order partition's whole fan-out)",
                quantiles("loa_decision_to_last_task_seconds"),
                "s",
                x=12,
            ),
        ],
        [row("Delivery")],
        [
            ts(
                "Receipts per second by channel and outcome",
                [
                    (
                        f"sum by (channel, outcome) (rate(loa_receipts_total{sel()}{RI}))",
                        "{{channel}} {{outcome}}",
                    )
                ],
                "ops",
                stack=True,
            ),
            ts(
                "Unreadable receipts and failed orders",
                [
                    (f"sum(rate(loa_receipts_invalid_total{sel()}{RI}))", "invalid receipts"),
                    (f"sum(rate(loa_fanout_orders_failed_total{sel()}{RI}))", "failed orders"),
                ],
                "ops",
                x=12,
            ),
        ],
        [row("Delivery workers (loa deliver --metrics-port)")],
        [
            ts(
                "Provider calls settled per second by channel and outcome",
                [
                    (
                        "sum by (channel, outcome) (rate(loa_delivery_sends_total" + RI + "))",
                        "{{channel}} {{outcome}}",
                    )
                ],
                "ops",
                stack=True,
            ),
            ts(
                "Failures and retries by reason",
                [
                    (
                        "sum by (channel, reason) (rate(loa_delivery_failures_total" + RI + "))",
                        "failed {{channel}} {{reason}}",
                    ),
                    (
                        "sum by (channel, reason) (rate(loa_delivery_retries_total" + RI + "))",
                        "retry {{channel}} {{reason}}",
                    ),
                    (
                        "sum by (channel) (rate(loa_delivery_fallbacks_total" + RI + "))",
                        "fallback from {{channel}}",
                    ),
                ],
                "ops",
                x=12,
            ),
        ],
        [
            ts(
                "Provider call latency",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, channel) "
                        f"(rate(loa_delivery_send_seconds_bucket{RI})))",
                        f"p{int(q * 100)} {{{{channel}}}}",
                    )
                    for q in (0.5, 0.99)
                ],
                "s",
            ),
            ts(
                "Provider calls in flight",
                [("sum by (channel) (loa_delivery_in_flight)", "{{channel}}")],
                x=12,
            ),
        ],
        [row("Kafka and directory")],
        [
            ts(
                "Consumer lag by topic",
                [
                    (
                        "max by (topic) (loa_consumer_lag_records"
                        + sel('topic!~".*directory.*"')
                        + ")",
                        "{{topic}}",
                    ),
                    (
                        "sum by (topic) (loa_consumer_lag_records"
                        + sel('topic=~".*directory.*"')
                        + ")",
                        "{{topic}}",
                    ),
                ],
                desc="Group lag is the same on every worker (max); directory replay lag is per "
                "worker (sum).",
            ),
            ts(
                "Directory subscribers by partition",
                [
                    (f"sum by (partition) (loa_directory_subscribers{sel()})", "p{{partition}}"),
                    (f"sum(loa_directory_pending_changes{sel()})", "pending changes"),
                ],
                x=12,
                stack=True,
            ),
        ],
    ]


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for line in layout():
        for panel in line:
            panel["gridPos"]["y"] = y
            panel["id"] = len(panels) + 1
            panels.append(panel)
        y += max(p["gridPos"]["h"] for p in line)
    return {
        "title": "Loa — alert fan-out",
        "uid": "loa-fanout",
        "description": "Is every alert reaching people, and why not. Metrics: streams/metrics.py.",
        "tags": ["loa", "kafka", "alerts"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Data source",
                },
                {
                    "name": "job",
                    "type": "query",
                    "label": "Job",
                    "datasource": DS,
                    "definition": "label_values(loa_inbound_records_total, job)",
                    "query": {
                        "query": "label_values(loa_inbound_records_total, job)",
                        "refId": "job",
                    },
                    "includeAll": True,
                    "multi": True,
                    "refresh": 2,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
