"""Readiness of a worker: which owned partitions of which stateful parts are served.

Where it sits: every stateful part (directory, fan-out queue, receipts, replicas) reports the
state of each partition it owns here as it moves through assign → restore → serve → revoke; the
worker's HTTP endpoint answers ``/ready`` from :meth:`Readiness.ready` and ``/metrics`` counts
restore failures. Pure bookkeeping: no I/O, no clock, safe to call from the event loop only.

Guarantee: ``ready`` is true only when the worker has been told it is started and every
partition it owns is ``serving``; a partition whose restore failed stays ``failed`` (with the
error text) until a retry brings it to ``serving`` or the partition is revoked.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["PartitionState", "Readiness", "ReadinessReport"]


class PartitionState(StrEnum):
    RESTORING = "restoring"
    SERVING = "serving"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """What ``/ready`` shows: the verdict and the partitions that are not serving yet."""

    #: True when started and every owned partition is serving.
    ready: bool
    #: ``"<component>/<partition>" -> state`` for every owned partition that is not serving.
    pending: dict[str, str]
    #: ``"<component>/<partition>" -> error`` for every partition whose last restore failed.
    errors: dict[str, str]


class Readiness:
    """Partition states per component; one instance per worker process."""

    def __init__(self) -> None:
        self._started = False
        self._states: dict[tuple[str, int], PartitionState] = {}
        self._errors: dict[tuple[str, int], str] = {}

    def started(self, value: bool = True) -> None:
        """The worker's services are up (``False`` again while it stops)."""
        self._started = value

    def restoring(self, component: str, partition: int) -> None:
        self._states[(component, partition)] = PartitionState.RESTORING

    def serving(self, component: str, partition: int) -> None:
        self._states[(component, partition)] = PartitionState.SERVING
        self._errors.pop((component, partition), None)

    def failed(self, component: str, partition: int, error: str) -> None:
        self._states[(component, partition)] = PartitionState.FAILED
        self._errors[(component, partition)] = error

    def revoked(self, component: str, partition: int) -> None:
        self._states.pop((component, partition), None)
        self._errors.pop((component, partition), None)

    def state(self, component: str, partition: int) -> PartitionState | None:
        return self._states.get((component, partition))

    @property
    def ready(self) -> bool:
        return self._started and all(s is PartitionState.SERVING for s in self._states.values())

    def report(self) -> ReadinessReport:
        pending = {
            f"{c}/{p}": s.value
            for (c, p), s in sorted(self._states.items())
            if s is not PartitionState.SERVING
        }
        errors = {f"{c}/{p}": e for (c, p), e in sorted(self._errors.items())}
        return ReadinessReport(ready=self.ready, pending=pending, errors=errors)
