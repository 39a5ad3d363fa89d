"""The delivery worker's metrics (``loa_delivery_*``), on an injected registry.

:class:`HotMetrics` keeps the children every call touches, looked up once per label set.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from streams.records import CHANNELS

__all__ = ["DeliveryMetrics", "HotMetrics"]

_SEND_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class DeliveryMetrics:
    """The delivery worker's metrics, on an injected registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Declare every metric. Why this long: one declaration per metric with its help text
        (what an SRE reads in ``/metrics``), and the label sets made up front so each series
        exists from the start."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sends = PromCounter(
            "loa_delivery_sends_total",
            "Tasks settled for good by this delivery worker, by channel and outcome "
            "(delivered, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.failures = PromCounter(
            "loa_delivery_failures_total",
            "Tasks that failed for good, by channel and reason (http_<status>, expired...).",
            ["channel", "reason"],
            registry=r,
        )
        self.retries = PromCounter(
            "loa_delivery_retries_total",
            "Failed attempts scheduled for another attempt, by channel and reason.",
            ["channel", "reason"],
            registry=r,
        )
        self.retries_scheduled = PromCounter(
            "loa_delivery_retries_scheduled_total",
            "Retry copies written to a retry-tier topic, by channel and tier (its delay).",
            ["channel", "tier"],
            registry=r,
        )
        self.fallbacks = PromCounter(
            "loa_delivery_fallbacks_total",
            "Tasks moved to the recipient's next channel after failing on this one.",
            ["channel"],
            registry=r,
        )
        self.latency = Histogram(
            "loa_delivery_send_seconds",
            "Duration of one provider call, by channel.",
            ["channel"],
            buckets=_SEND_SECONDS,
            registry=r,
        )
        self.in_flight = Gauge(
            "loa_delivery_in_flight", "Provider calls in flight.", ["channel"], registry=r
        )
        self.retry_held = Gauge(
            "loa_delivery_retry_held",
            "Retry copies held in memory until their due time, by tier.",
            ["tier"],
            registry=r,
        )
        self.unsettled = Gauge(
            "loa_delivery_unsettled_tasks",
            "Fetched tasks not yet settled (their offsets not committed): buffered, in "
            "flight or held for a retry.",
            registry=r,
        )
        self.circuit_state = Gauge(
            "loa_delivery_circuit_state",
            "Circuit breaker of each provider endpoint: 0 closed, 1 half-open, 2 open.",
            ["endpoint"],
            registry=r,
        )
        self.circuit_opens = PromCounter(
            "loa_delivery_circuit_opens_total",
            "Times the circuit breaker of a provider endpoint opened.",
            ["endpoint"],
            registry=r,
        )
        self.calls_refused = PromCounter(
            "loa_delivery_calls_refused_total",
            "Calls not made because the endpoint's circuit was open or its Retry-After not "
            "over (the task went to a retry tier), by endpoint and reason.",
            ["endpoint", "reason"],
            registry=r,
        )
        self.recoveries = PromCounter(
            "loa_delivery_recoveries_total",
            "Times the worker lost its group membership or its producer at a commit and went "
            "back to the committed offsets with a new producer (a starved event loop, a fence).",
            registry=r,
        )
        self.served = Gauge(
            "loa_delivery_channel_served",
            "1 for each channel this delivery worker delivers (every channel without a "
            "--channel filter) while it runs: alert rules page on a channel nobody serves.",
            ["channel"],
            registry=r,
        )
        self.near_expiry = PromCounter(
            "loa_delivery_retries_near_expiry_total",
            "Retries scheduled less than NEAR_EXPIRY_S (600 s) before their task stops being "
            "sent (its alert's expires or the priority's retry limit), by channel.",
            ["channel"],
            registry=r,
        )
        for channel in CHANNELS:
            for outcome in ("delivered", "failed"):
                self.sends.labels(channel, outcome)
            self.in_flight.labels(channel)
            self.near_expiry.labels(channel)
            self.failures.labels(channel, "expired")
            self.retries.labels(channel, "unknown")


class HotMetrics:
    """The metric children every call touches, looked up once per label set: a
    ``labels()`` lookup costs microseconds, several per call at thousands of calls a second."""

    def __init__(self, metrics: DeliveryMetrics) -> None:
        self.metrics = metrics
        self._in_flight: dict[str, Any] = {}
        self._latency: dict[str, Any] = {}
        self._sends: dict[tuple[str, str], Any] = {}
        #: (state, opened) last published per endpoint
        self.circuit: dict[str, tuple[int, int]] = {}

    def in_flight(self, channel: str) -> Any:
        child = self._in_flight.get(channel)
        if child is None:
            child = self._in_flight[channel] = self.metrics.in_flight.labels(channel)
        return child

    def latency(self, channel: str) -> Any:
        child = self._latency.get(channel)
        if child is None:
            child = self._latency[channel] = self.metrics.latency.labels(channel)
        return child

    def sends(self, channel: str, outcome: str) -> Any:
        child = self._sends.get((channel, outcome))
        if child is None:
            child = self._sends[(channel, outcome)] = self.metrics.sends.labels(channel, outcome)
        return child
