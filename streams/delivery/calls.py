"""Provider calls in flight: the delivery worker's middle, between its buffer and its ledger.

Where it sits: :mod:`streams.delivery.worker` fetches tasks into a
:class:`~streams.delivery.policy.TaskBuffer` and hands it to :meth:`Calls.dispatch`, which
starts calls for the most urgent tasks while their channel has room; each call's answers join
:attr:`Calls.answers`, which the worker settles (:mod:`streams.delivery.ledger`).

- No head-of-line blocking: up to ``max_in_flight`` tasks per channel are in calls at once,
  each call under its own timeout; a task settles when its own call ends. A channel that sends
  several tasks per call (``batch``, :class:`~streams.delivery.channels.BatchChannel`) gets one
  call per up to ``batch`` buffered tasks, never waiting for a batch to fill.
- Before each call the endpoint's admission is asked (:class:`~streams.delivery.breaker.Endpoint`:
  the rate limit, a Retry-After, the circuit): a task it refuses waits in memory (a short
  Retry-After), stays in the buffer (the rate limit) or goes to a retry tier with no call (an
  open circuit, a long Retry-After).

Guarantee: every task taken from the buffer ends in exactly one of: put back, held, expired
(settled by the worker), refused (an answer with no call) or an answer of its call. A channel
that raises is a failed answer, never a lost task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiokafka import TopicPartition

from streams.delivery.breaker import Endpoint
from streams.delivery.channels import BatchChannel, Channel
from streams.delivery.metrics import DeliveryMetrics, HotMetrics
from streams.delivery.policy import Outcome, TaskBuffer
from streams.delivery.retry import RetryPolicy, expired, plain_task
from streams.settings.model import Settings

__all__ = ["Answer", "Calls", "Item", "Owner"]

log = logging.getLogger("streams.deliver")


@dataclass(slots=True)
class Item:
    """One fetched task: where it came from (to commit it) and what it asks."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    task: dict[str, Any]
    #: The ownership generation of ``tp`` when fetched (stale after a revoke).
    generation: int
    #: From a retry tier (its key was seen before; not a duplicate).
    retry: bool


#: ``(item, outcome, floor_s, called)``: an answer (or a refusal, ``called`` False) to settle.
Answer = tuple[Item, Outcome, float, bool]


class Owner(Protocol):
    """What :meth:`Calls.dispatch` asks of the worker that owns the tasks."""

    def current(self, item: Item) -> bool:
        """Is ``item``'s partition still this worker's (same generation)?"""
        ...

    def expire(self, item: Item, now: float) -> None:
        """Settle ``item`` as failed, reason ``expired`` (no call)."""
        ...

    def hold(self, item: Item, due: float) -> None:
        """Keep ``item`` in memory until ``due``."""
        ...


class Calls:
    """The calls in flight to one provider, their endpoints' admission and their answers."""

    def __init__(
        self,
        provider: Channel,
        settings: Settings,
        policy: RetryPolicy,
        metrics: DeliveryMetrics,
        *,
        max_in_flight: int,
        timeout_s: float,
        clock: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self.provider, self.settings, self.policy = provider, settings, policy
        self.metrics, self.hot = metrics, HotMetrics(metrics)
        self.max_in_flight, self.timeout_s = max_in_flight, timeout_s
        self.clock, self.rand = clock, rand
        #: tasks in calls, per channel
        self.in_flight: Counter[str] = Counter()
        #: answers and refusals not yet settled
        self.answers: list[Answer] = []
        self.endpoints: dict[str, Endpoint] = {}
        #: calls in flight and the tasks each is for
        self.calls: dict[asyncio.Task[None], list[Item]] = {}
        #: tasks per call: the channel's ``batch`` when it sends several at once, else 1
        self.batch = max(int(getattr(provider, "batch", 1)), 1)
        self._batched = cast(BatchChannel, provider)
        #: set whenever a call ends
        self.woken = asyncio.Event()
        #: the most urgent buffered task's channel has no room for another call
        self.full = False

    @property
    def total(self) -> int:
        """Tasks in calls, all channels."""
        return sum(self.in_flight.values())

    def on(self, partitions: set[TopicPartition]) -> bool:
        """Is a call in flight for a task of ``partitions``?"""
        return any(i.tp in partitions for items in self.calls.values() for i in items)

    def take_answers(self) -> list[Answer]:
        answers, self.answers = self.answers, []
        return answers

    def dispatch(
        self, group: asyncio.TaskGroup, buffer: TaskBuffer, budget: int | None, owner: Owner
    ) -> None:
        """Start calls for buffered tasks, most urgent first, while their channel has room: a
        call per task, or per up to ``batch`` tasks (never waiting to fill one: a call takes
        what is buffered now). ``budget``: tasks that may still be started at most."""
        self.full = False
        items: list[Item] = []
        endpoint = self.endpoint()
        try:
            while budget is None or self.total < budget:
                taken = buffer.take(1)
                if not taken:
                    return
                item: Item = taken[0]
                if not owner.current(item):
                    continue
                channel = str(item.task["channel"])
                if self.in_flight[channel] >= self.max_in_flight:
                    buffer.put_back(str(item.task["priority"]), item)
                    self.full = True
                    return
                now = self.clock()
                if expired(item.task, self.policy, now):
                    owner.expire(item, now)
                    continue
                if not items and not self._admitted(item, endpoint, now, buffer, owner):
                    if self.full:
                        return
                    continue
                items.append(item)
                self.in_flight[channel] += 1
                self.hot.in_flight(channel).inc()
                if len(items) >= self.batch:
                    self._start(group, items, endpoint)
                    items = []
        finally:
            if items:
                self._start(group, items, endpoint)

    def _admitted(
        self, item: Item, endpoint: Endpoint, now: float, buffer: TaskBuffer, owner: Owner
    ) -> bool:
        """Whether a new call may start with ``item``; if not, ``item`` is put back (the rate
        limit: :attr:`full` set), held in memory (a short Retry-After) or refused to a retry
        tier (an open circuit, a long Retry-After)."""
        if endpoint.paced_s(now) > 0:  # the rate limit: no call now, the order is kept
            buffer.put_back(str(item.task["priority"]), item)
            self.full = True
            return False
        refused = endpoint.admit(now)
        if refused is None:
            return True
        short = (refused.after_s or 0.0) <= self.policy.tiers_s[0]
        if refused.reason == "rate_limited" and short:
            # the provider named a short wait: wait in memory (the offset stays uncommitted,
            # so a crash loses nothing) rather than write a retry copy for every task
            # refused; longer waits go to a retry tier like an open circuit
            self.metrics.calls_refused.labels(endpoint.name, "rate_limited").inc()
            wait = (refused.after_s or 0.0) * (1.0 + 0.1 * self.rand())  # spread the restart
            owner.hold(item, now + wait)
            return False
        # no call: the task waits on a retry tier
        self.metrics.calls_refused.labels(endpoint.name, str(refused.reason)).inc()
        self.answers.append(
            (item, Outcome.retry(str(refused.reason)), refused.after_s or 0.0, False)
        )
        self.circuit_metrics(endpoint)
        return False

    def _start(self, group: asyncio.TaskGroup, items: list[Item], endpoint: Endpoint) -> None:
        # the TaskGroup owns the call (a bug in it fails the worker); kept for counting
        call = group.create_task(self._call(items, endpoint))
        self.calls[call] = items
        call.add_done_callback(self._forget)

    def _forget(self, call: asyncio.Task[None]) -> None:
        self.calls.pop(call, None)

    def endpoint(self) -> Endpoint:
        """The provider's endpoint (its URL's scheme, host and port; else its name)."""
        name = str(getattr(self.provider, "endpoint", None) or self.provider.name)
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            s = self.settings
            endpoint = self.endpoints[name] = Endpoint(
                name,
                failures=s.delivery_breaker_failures,
                cooldown_s=s.delivery_breaker_cooldown_s,
                max_retry_after_s=s.delivery_max_retry_after_s,
                rate=s.delivery_rate_per_endpoint,
            )
            self.circuit_metrics(endpoint)
        return endpoint

    def circuit_metrics(self, endpoint: Endpoint) -> None:
        seen = (int(endpoint.breaker.state), endpoint.breaker.opened)
        before = self.hot.circuit.get(endpoint.name)
        if before == seen:  # nothing changed: most calls
            return
        self.hot.circuit[endpoint.name] = seen
        self.metrics.circuit_state.labels(endpoint.name).set(int(endpoint.breaker.state))
        opened_before = before[1] if before is not None else 0
        if endpoint.breaker.opened > opened_before:  # the counter follows the breaker's count
            self.metrics.circuit_opens.labels(endpoint.name).inc(
                endpoint.breaker.opened - opened_before
            )

    async def _call(self, items: list[Item], endpoint: Endpoint) -> None:
        """One provider call (one task, or up to ``batch``) under its own timeout; its answers
        join :attr:`answers`."""
        started = time.perf_counter()
        # only a retry copy carries retry fields: a fresh task goes as it is (no copy)
        tasks = [plain_task(i.task) if i.retry else i.task for i in items]
        outcomes: list[Outcome]
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.batch == 1:
                    outcomes = [await self.provider.send(tasks[0])]
                else:
                    outcomes = await self._batched.send_many(tasks)
            if len(outcomes) != len(tasks):
                raise ValueError(f"{len(outcomes)} outcomes for {len(tasks)} tasks")
        except TimeoutError:
            outcomes = [Outcome.retry("timeout")] * len(items)
        except Exception as exc:  # a channel bug must not lose the task: a failure
            log.exception(
                "channel %s raised on %s", self.provider.name, tasks[0]["idempotency_key"]
            )
            outcomes = [Outcome.failed(f"error_{type(exc).__name__}"[:64])] * len(items)
        finally:
            elapsed = time.perf_counter() - started
            for item in items:
                channel = str(item.task["channel"])
                self.in_flight[channel] -= 1
                self.hot.in_flight(channel).dec()
            self.hot.latency(str(items[0].task["channel"])).observe(elapsed)
        if len(outcomes) == 1:
            endpoint.record(outcomes[0], self.clock())
        else:
            endpoint.record_call(outcomes, self.clock())
        self.circuit_metrics(endpoint)
        self.answers.extend(
            (item, outcome, 0.0, True) for item, outcome in zip(items, outcomes, strict=True)
        )
        self.woken.set()
