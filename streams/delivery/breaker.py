"""Per-endpoint call admission (pure): a circuit breaker and a Retry-After gate. No clock reads:
every method takes ``now`` (monotonic seconds).

Where it sits: the delivery worker asks :class:`Endpoint` before each provider call. A call it
refuses is not made; the task goes to a retry tier (:mod:`streams.delivery.retry`), so an outage
or a rate limit of one provider endpoint costs no request storm and holds up no other endpoint.

Circuit breaker (Nygard, *Release It!*; the states of resilience4j and Polly):

- ``closed``: calls go through; ``failures`` consecutive failed calls (connection refused or
  reset, timeout, 408, 5xx) open it. A success resets the count.
- ``open``: no call for ``cooldown_s``; then the next call is a probe (``half_open``).
- ``half_open``: ``probes`` calls in flight at most; a success closes the circuit, a failure
  opens it again for another ``cooldown_s``.

A 429 or Retry-After is not a failure of the endpoint: it closes the :class:`RetryAfterGate`
until the time the provider named, for every call to that endpoint (and only that endpoint).

A :class:`TokenBucket` paces calls to an endpoint under a configured rate
(``LOA_DELIVERY_RATE_PER_ENDPOINT``, with a second's worth of burst): the worker starts no call
while it is empty, so tasks keep their priority order in the buffer instead of churning.
"""

from __future__ import annotations

from enum import IntEnum

from streams.delivery.policy import Outcome

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "Endpoint",
    "RetryAfterGate",
    "TokenBucket",
    "is_endpoint_failure",
]


class CircuitState(IntEnum):
    """A circuit's state; the value is the ``loa_delivery_circuit_state`` gauge's."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


def is_endpoint_failure(outcome: Outcome) -> bool:
    """Whether ``outcome`` says the endpoint is unwell (not the task, not a rate limit)."""
    return outcome.status == "retry" and outcome.reason != "rate_limited"


class CircuitBreaker:
    """Open after ``failures`` consecutive failures, probe after ``cooldown_s``."""

    def __init__(self, failures: int, cooldown_s: float, probes: int = 1) -> None:
        self.failures, self.cooldown_s, self.probes = failures, cooldown_s, probes
        self.state = CircuitState.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = 0
        #: Times the circuit opened (a metric).
        self.opened = 0

    def allow(self, now: float) -> bool:
        """May a call start now? (A ``True`` in half-open takes one probe slot.)"""
        if self.state is CircuitState.OPEN and now >= self.opened_at + self.cooldown_s:
            self.state, self.probing = CircuitState.HALF_OPEN, 0
        if self.state is CircuitState.OPEN:
            return False
        if self.state is CircuitState.HALF_OPEN:
            if self.probing >= self.probes:
                return False
            self.probing += 1
        return True

    def retry_in(self, now: float) -> float:
        """Seconds until a refused call is worth asking again."""
        if self.state is CircuitState.OPEN:
            return max(self.opened_at + self.cooldown_s - now, 0.0)
        if self.state is CircuitState.HALF_OPEN:
            return self.cooldown_s  # a probe is deciding
        return 0.0

    def record(self, outcome: Outcome, now: float) -> None:
        """The answer of a call that :meth:`allow` let through."""
        if self.state is CircuitState.HALF_OPEN:
            self.probing = max(self.probing - 1, 0)
        if not is_endpoint_failure(outcome):
            if outcome.reason != "rate_limited":
                self.state, self.consecutive = CircuitState.CLOSED, 0
            return
        self.consecutive += 1
        if self.state is CircuitState.HALF_OPEN or (
            self.state is CircuitState.CLOSED and self.consecutive >= self.failures
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self.state, self.opened_at, self.probing = CircuitState.OPEN, now, 0
        self.opened += 1


class RetryAfterGate:
    """Closed until the latest time a provider's Retry-After named."""

    def __init__(self) -> None:
        self.not_before = 0.0

    def close_for(self, seconds: float, now: float) -> None:
        self.not_before = max(self.not_before, now + seconds)

    def wait_s(self, now: float) -> float:
        """Seconds until calls may go again (0: open)."""
        return max(self.not_before - now, 0.0)


class TokenBucket:
    """``rate`` calls per second with a burst of ``burst`` (a full bucket to start)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens: float = burst
        self.last: float | None = None

    def _refill(self, now: float) -> None:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def wait_s(self, now: float) -> float:
        """Seconds until a call may start (0: now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        """A call starts (call :meth:`wait_s` first)."""
        self._refill(now)
        self.tokens -= 1.0


class Endpoint:
    """One provider endpoint's admission: its breaker and its Retry-After gate."""

    def __init__(
        self,
        name: str,
        *,
        failures: int,
        cooldown_s: float,
        max_retry_after_s: float,
        rate: float = 0.0,
    ) -> None:
        self.name = name
        self.breaker = CircuitBreaker(failures, cooldown_s)
        self.gate = RetryAfterGate()
        self.max_retry_after_s = max_retry_after_s
        #: None: no rate limit of our own (the provider's 429s still pace us)
        self.bucket = TokenBucket(rate, max(rate, 1.0)) if rate > 0 else None

    def paced_s(self, now: float) -> float:
        """Seconds until the rate limit lets the next call start (0: now)."""
        return 0.0 if self.bucket is None else self.bucket.wait_s(now)

    def admit(self, now: float) -> Outcome | None:
        """None: call now; else the outcome of not calling (a retry with its floor in
        ``after_s``: the gate's time, or the circuit's cool-down)."""
        gate = self.gate.wait_s(now)
        if gate > 0:
            return Outcome.retry("rate_limited", gate)
        if not self.breaker.allow(now):
            return Outcome.retry("circuit_open", self.breaker.retry_in(now))
        if self.bucket is not None:
            self.bucket.take(now)
        return None

    def record(self, outcome: Outcome, now: float) -> None:
        self.breaker.record(outcome, now)
        if outcome.status == "retry" and outcome.after_s is not None:
            self.gate.close_for(min(outcome.after_s, self.max_retry_after_s), now)

    def record_call(self, outcomes: list[Outcome], now: float) -> None:
        """The answers of one call that carried several tasks (a bulk call): the breaker sees
        one answer per call, a failure only when no task got past the endpoint (a call the
        provider answered is a well endpoint, whatever it said of single messages); every
        Retry-After named closes the gate."""
        if not outcomes:
            return
        answered = [o for o in outcomes if o.status != "retry"]  # delivered or refused
        limited = [o for o in outcomes if not is_endpoint_failure(o)]
        self.breaker.record((answered or limited or outcomes)[0], now)
        for outcome in outcomes:
            if outcome.status == "retry" and outcome.after_s is not None:
                self.gate.close_for(min(outcome.after_s, self.max_retry_after_s), now)
