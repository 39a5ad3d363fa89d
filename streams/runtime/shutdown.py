"""How a worker stops: bounded in time, leaving its consumer group, losing nothing.

Where it sits: around the Faust worker (``loa worker`` runs :class:`LoaWorker`). Faust's worker
(``mode.Worker``) stops the app's services on SIGTERM/SIGINT: the agents, Faust's consumer and
Loa's runtime (:meth:`streams.runtime.app.Runtime.stop`: the fan-out's open chunk transactions are
aborted as their tasks are cancelled, the producers stop). Two things are added here:

* **A deadline.** The first SIGTERM/SIGINT arms a watchdog thread; if the process has not
  exited after ``LOA_SHUTDOWN_TIMEOUT_S`` (the broker unreachable: an abort or a flush that
  waits on it), it exits with status 1. Nothing is lost: a transaction left open is aborted by
  the next owner of its partition (its producer, same transactional id, fences this one), which
  resumes after the last committed cursor; an inbound record whose decision was not committed
  is read again.
* **Leaving the group.** aiokafka does not send LeaveGroup for a static member
  (``LOA_INSTANCE_ID``), so the others would wait out the session timeout before taking its
  partitions. After the app stopped, with ``LOA_LEAVE_GROUP_ON_STOP`` (default), the worker
  removes its static member (:func:`streams.kafkaio.clients.leave_group`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import faust

from streams.kafkaio.clients import leave_group
from streams.settings.model import Settings

__all__ = ["LoaWorker", "Watchdog"]

log = logging.getLogger("loa")

#: Exit status of a worker whose stop hit LOA_SHUTDOWN_TIMEOUT_S.
EXIT_SHUTDOWN_TIMEOUT = 1


class Watchdog:
    """Ends the process ``timeout_s`` after :meth:`arm` unless it exited before."""

    def __init__(self, timeout_s: float, *, exit: Any = os._exit) -> None:
        self.timeout_s = timeout_s
        self._exit = exit
        self._timer: threading.Timer | None = None

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.timeout_s, self._fire)
            self._timer.daemon = True  # never keeps a process that exits on its own alive
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        log.error(
            "stop took over %.1f s (LOA_SHUTDOWN_TIMEOUT_S); exiting now, the next owner of "
            "this worker's partitions aborts what it left open",
            self.timeout_s,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit(EXIT_SHUTDOWN_TIMEOUT)


class LoaWorker(faust.Worker):
    """Faust's worker with a stop deadline and a static member that leaves its group."""

    def __init__(self, app: faust.App, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.loa_settings = settings
        self.watchdog = Watchdog(settings.shutdown_timeout_s)
        self._leave = False

    def _on_sigterm(self) -> None:
        self._stopping()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._stopping()
        super()._on_sigint()

    def _stopping(self) -> None:
        self.watchdog.arm()
        self._leave = self.loa_settings.leave_group_on_stop

    def stop_and_shutdown(self) -> None:
        self._stop_app_then_leave()
        super().stop_and_shutdown()

    def _stop_app_then_leave(self) -> None:
        # the app stops first (mode.Worker.stop_and_shutdown); leave once Faust's consumer is
        # stopped, or it would rejoin as the same static member at its next heartbeat
        if self._signal_stop_future and not self._signal_stop_future.done():
            self.loop.run_until_complete(self._signal_stop_future)
        elif not self._stopped.is_set():
            self.loop.run_until_complete(self.stop())
        instance = self.loa_settings.group_instance_id
        if self._leave and instance is not None:
            self.loop.run_until_complete(self._leave_group(instance))

    async def _leave_group(self, instance: str) -> None:
        s = self.loa_settings
        try:
            async with asyncio.timeout(max(s.shutdown_timeout_s / 2, 1.0)):
                await leave_group(s, s.app_id, instance)
            log.info("left consumer group %s as static member %s", s.app_id, instance)
        except Exception as exc:  # the session timeout moves the partitions instead
            log.warning("could not leave consumer group %s (%r)", s.app_id, exc)
