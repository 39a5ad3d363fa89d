"""Owned background tasks: every ``create_task`` result in Loa is kept and ended through here.

Where it sits: under every long-running part (directory follower, replicas, ownership, receipts).
A task is started by its owner, kept in an attribute, and ended with :func:`cancel_and_wait` when
the owner stops, so a task never outlives its owner unseen (a unit test scans ``streams/`` for
``create_task`` results that are dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (``None``: nothing to do)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
