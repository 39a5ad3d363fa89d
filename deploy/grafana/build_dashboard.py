"""Writes deploy/grafana/loa-dashboard.json (run: python deploy/grafana/build_dashboard.py).

The dashboard is generated so every panel uses the same selectors; edit this file, not the JSON.
tests/deploy/test_deploy.py checks the JSON is current, names only real metrics, parses as
PromQL, and passes loa-dashboard-lint (deploy/grafana/lint: Grafana's schema through its
foundation SDK, and the rules of Grafana's dashboard linter).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "loa-dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "[$__rate_interval]"


def sel(extra: str = "") -> str:
    return "{" + 'job=~"$job",instance=~"$instance"' + ("," + extra if extra else "") + "}"


#: Jobs and instances of Loa's workers and delivery workers (whatever the scrape jobs are named).
WORKER_SERIES = '{__name__=~"loa_inbound_records_total|loa_delivery_sends_total"'


def template(name: str, query: str) -> dict[str, Any]:
    """A multi-select query variable as Grafana's dashboard linter wants it."""
    return {
        "name": name,
        "type": "query",
        "label": name.capitalize(),
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": name},
        "includeAll": True,
        "allValue": ".+",
        "multi": True,
        "refresh": 2,
    }


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
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull"],
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [
            {"refId": chr(65 + i), "expr": e, "legendFormat": legend}
            for i, (e, legend) in enumerate(targets)
        ],
        "gridPos": {"h": 8, "w": 12, "x": x, "y": 0},
    }


def stat(title: str, expr: str, unit: str = "short", *, x: int = 0, desc: str) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"]},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "textMode": "auto",
            "wideLayout": True,
            "showPercentChange": False,
            "percentChangeColorMode": "standard",
            "orientation": "auto",
        },
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
        f"sum(rate(loa_receipts_total{FAILED}{RI}))"
        f" / clamp_min(sum(rate(loa_receipts_total{sel()}{RI})), 1e-9)"
    )
    return [
        [row("At a glance")],
        [
            stat(
                "Workers up",
                f"sum(up{sel()})",
                desc="Scrape targets answering (workers and "
                "delivery workers). Absent for 2 m fires LoaWorkersAbsent.",
            ),
            stat(
                "Orders in progress",
                f"sum(loa_fanout_orders_in_progress{sel()})",
                x=4,
                desc="Fan-out orders (alert version x directory partition) being emitted now.",
            ),
            stat(
                "Tasks / s",
                f"sum(rate(loa_tasks_emitted_total{sel()}{RI}))",
                "ops",
                x=8,
                desc="Send tasks committed to loa.sends.* per second, all channels.",
            ),
            stat(
                "Receipts / s",
                f"sum(rate(loa_receipts_total{sel()}{RI}))",
                "ops",
                x=12,
                desc="Delivery receipts folded per second (delivered and failed).",
            ),
            stat(
                "Failed deliveries",
                failed_ratio,
                "percentunit",
                x=16,
                desc="Share of receipts that are failures (including tasks that then fell back "
                "to the recipient's next channel).",
            ),
            stat(
                "Rejected alerts (1h)",
                f"sum(increase(loa_inbound_records_total{REJECTED}[1h]))",
                x=20,
                desc="Inbound alerts rejected in the last hour; reasons under Ingest.",
            ),
        ],
        [row("Ingest")],
        [
            ts(
                "Inbound records by outcome",
                [(f"sum by (outcome) (rate(loa_inbound_records_total{sel()}{RI}))", "{{outcome}}")],
                "ops",
                stack=True,
                desc="Every inbound record is decided once: accepted, duplicate or rejected.",
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
                desc="Rejection codes (schema, bad_signature, out_of_jurisdiction, internal...).",
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
                desc="Alerts accepted for fan-out, by Loa priority and CAP status.",
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
                desc="Recipients selected by finished fan-out orders.",
            ),
        ],
        [row("Fan-out progress")],
        [
            ts(
                "Targeted, emitted, suppressed, delivered, failed per second",
                [
                    (f"sum(rate(loa_recipients_targeted_total{sel()}{RI}))", "targeted"),
                    (f"sum(rate(loa_tasks_emitted_total{sel()}{RI}))", "emitted"),
                    (f"sum(rate(loa_tasks_suppressed_total{sel()}{RI}))", "suppressed"),
                    (f"sum(rate(loa_receipts_total{DELIVERED}{RI}))", "delivered"),
                    (f"sum(rate(loa_receipts_total{FAILED}{RI}))", "failed"),
                ],
                "ops",
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
                desc="Send tasks committed per second, by first channel and priority.",
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
                desc="Recipients left out: duplicate, cap, opted_out, expired, cancelled.",
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
            ts(
                "Fan-out duration per order",
                quantiles("loa_fanout_duration_seconds"),
                "s",
                desc="From an order's start to its last chunk committed, per priority.",
            ),
            ts(
                "Time to first task (from the order written by ingest)",
                quantiles("loa_fanout_time_to_first_task_seconds"),
                "s",
                x=12,
                desc="From the order on loa.fanout.orders to its first chunk committed.",
            ),
        ],
        [
            ts(
                "Decision to first task (SLO: extreme within 10 s, LoaFirstTaskSloMissed)",
                quantiles("loa_decision_to_first_task_seconds"),
                "s",
                desc="From ingest's decision to the first task committed, per priority.",
            ),
            ts(
                "Decision to last task (an order partition's whole fan-out)",
                quantiles("loa_decision_to_last_task_seconds"),
                "s",
                x=12,
                desc="From ingest's decision to the last task of an order partition.",
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
                desc="Receipts folded by the receipts agent (loa status counts the same).",
            ),
            ts(
                "Unreadable receipts and failed orders",
                [
                    (f"sum(rate(loa_receipts_invalid_total{sel()}{RI}))", "invalid receipts"),
                    (f"sum(rate(loa_fanout_orders_failed_total{sel()}{RI}))", "failed orders"),
                ],
                "ops",
                x=12,
                desc="Both should be 0: a failed order fires LoaFanoutOrderFailed.",
            ),
        ],
        [row("Delivery workers (loa deliver --metrics-port)")],
        [
            ts(
                "Provider calls settled per second by channel and outcome",
                [
                    (
                        f"sum by (channel, outcome) (rate(loa_delivery_sends_total{sel()}{RI}))",
                        "{{channel}} {{outcome}}",
                    )
                ],
                "ops",
                stack=True,
                desc="Tasks settled by loa deliver workers, by channel and outcome.",
            ),
            ts(
                "Failures and retries by reason",
                [
                    (
                        f"sum by (channel, reason) (rate(loa_delivery_failures_total{sel()}{RI}))",
                        "failed {{channel}} {{reason}}",
                    ),
                    (
                        f"sum by (channel, reason) (rate(loa_delivery_retries_total{sel()}{RI}))",
                        "retry {{channel}} {{reason}}",
                    ),
                    (
                        f"sum by (channel) (rate(loa_delivery_fallbacks_total{sel()}{RI}))",
                        "fallback from {{channel}}",
                    ),
                ],
                "ops",
                x=12,
                desc="Failures for good by reason, retried calls, and tasks moved to the "
                "recipient's next channel.",
            ),
        ],
        [
            ts(
                "Provider call latency",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, channel) "
                        f"(rate(loa_delivery_send_seconds_bucket{sel()}{RI})))",
                        f"p{int(q * 100)} {{{{channel}}}}",
                    )
                    for q in (0.5, 0.99)
                ],
                "s",
                desc="Duration of one provider call, by channel.",
            ),
            ts(
                "Provider calls in flight",
                [(f"sum by (channel) (loa_delivery_in_flight{sel()})", "{{channel}}")],
                x=12,
                desc="Bounded by --concurrency per delivery worker.",
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
                desc="Subscribers held in each partition's index, and changes not yet merged.",
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
        "editable": False,  # provisioned from this file: change it here, not in Grafana
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
                template("job", f"label_values({WORKER_SERIES}}}, job)"),
                template("instance", f'label_values({WORKER_SERIES},job=~"$job"}}, instance)'),
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
