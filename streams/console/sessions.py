"""Console sessions, CSRF tokens and the login rate limit: pure state with an injected clock.

Where it sits: inside the ``loa console`` process, in front of every ``/api/`` handler. Sessions
live in this process's memory only (a restart logs everyone out, which is the safe direction):
a random 256-bit id in an HttpOnly, Secure, SameSite=Strict cookie, an idle timeout, and one
CSRF token per session that every state-changing request must echo in ``X-CSRF-Token``.

The login limiter counts *failed* logins per user name and per client address in a sliding
window; over either limit the next attempt is refused (429 with ``Retry-After``) before any
password is checked, so a guesser learns nothing and costs no argon2 time.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field, replace

__all__ = ["LoginLimiter", "Session", "Sessions"]

#: Tracked names and addresses past which expired ones are dropped.
_PRUNE_AT = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser."""

    #: the cookie value: 256 random bits, URL-safe base64
    id: str
    user: str
    agency: str
    #: echoed by the browser in ``X-CSRF-Token`` on every state-changing request
    csrf: str
    #: monotonic time of the last request
    seen: float


class Sessions:
    """Sessions by id, each ending after ``idle_s`` without a request."""

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._by_id: dict[str, Session] = {}

    def open(self, user: str, agency: str, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), user, agency, secrets.token_urlsafe(32), now)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session of ``session_id`` (touched: its idle time restarts), else None."""
        self._expire(now)
        session = self._by_id.get(session_id or "")
        if session is None:
            return None
        session = replace(session, seen=now)
        self._by_id[session.id] = session
        return session

    def close(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)

    def close_user(self, user: str) -> None:
        """End every session of ``user`` (disabled, roles changed)."""
        for sid in [s.id for s in self._by_id.values() if s.user == user]:
            del self._by_id[sid]

    def __len__(self) -> int:
        return len(self._by_id)

    def _expire(self, now: float) -> None:
        stale = [sid for sid, s in self._by_id.items() if now - s.seen > self._idle_s]
        for sid in stale:
            del self._by_id[sid]

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        """Constant-time comparison: the token is a secret of the session."""
        return token is not None and hmac.compare_digest(session.csrf.encode(), token.encode())


@dataclass
class _Window:
    times: deque[float] = field(default_factory=deque)


class LoginLimiter:
    """Failed logins per user name (``per_user``) and per address (``per_address``) within
    ``window_s``; :meth:`wait` says how long until the next attempt may be checked."""

    def __init__(self, per_user: int, per_address: int, window_s: float) -> None:
        self._limits = {"user": per_user, "address": per_address}
        self._window_s = window_s
        self._failures: dict[tuple[str, str], _Window] = {}

    def wait(self, user: str, address: str, now: float) -> float:
        """Seconds until an attempt for ``user`` from ``address`` may be checked (0: now)."""
        waits = [
            self._wait(("user", user.casefold()), now),
            self._wait(("address", address), now),
        ]
        return max(waits)

    def failed(self, user: str, address: str, now: float) -> None:
        if len(self._failures) >= _PRUNE_AT:
            self._prune(now)
        for key in (("user", user.casefold()), ("address", address)):
            self._failures.setdefault(key, _Window()).times.append(now)

    def _prune(self, now: float) -> None:
        """Forget names and addresses whose failures all left the window (a guesser trying
        many names must not grow this without bound)."""
        stale = [k for k, w in self._failures.items() if now - w.times[-1] >= self._window_s]
        for key in stale:
            del self._failures[key]

    def succeeded(self, user: str) -> None:
        """A good password clears the user's count (not the address's: one address may try
        many names, and one success must not reset that)."""
        self._failures.pop(("user", user.casefold()), None)

    def _wait(self, key: tuple[str, str], now: float) -> float:
        window = self._failures.get(key)
        if window is None:
            return 0.0
        while window.times and now - window.times[0] >= self._window_s:
            window.times.popleft()
        if not window.times:
            del self._failures[key]
            return 0.0
        if len(window.times) < self._limits[key[0]]:
            return 0.0
        # the oldest failures must leave the window until one more attempt fits
        excess = len(window.times) - self._limits[key[0]]
        return window.times[excess] + self._window_s - now
