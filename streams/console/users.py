"""Console users: who may log in, for which agency, with which roles.

Where it sits: beside the agency registry. The compacted topic ``<prefix>.console.users`` (key =
user name, value = :meth:`User.to_json`) *is* the store: ``loa console users ...`` writes whole
records, the console follows the topic live (a disabled user's next request is refused). A
password is stored only as an argon2id hash (``argon2-cffi``, its RFC 9106 "low memory"
parameters); it never travels on the command line (``--password-file`` or a prompt).

:func:`verify_login` answers the same for an unknown user, a disabled one and a wrong password,
and spends the same argon2 time on each (an unknown name is checked against a dummy hash), so a
login neither says nor times which names exist.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from streams.kafkaio.clients import latest_values, make_producer, start_all
from streams.settings.model import Settings

__all__ = [
    "Role",
    "User",
    "decode_user",
    "hash_password",
    "read_users",
    "verify_login",
    "write_users",
]

_HASHER = PasswordHasher()  # argon2id, argon2-cffi's RFC 9106 low-memory profile
#: What an unknown user's password is checked against (same cost as a real one).
_DUMMY_HASH = _HASHER.hash("loa-console-no-such-user")
#: A user name: short, printable, no spaces (it appears in audit records and log lines).
USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


class Role(StrEnum):
    AUTHOR = "author"
    APPROVER = "approver"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    agency: str
    roles: tuple[Role, ...]
    #: argon2id hash (PHC string)
    password_hash: str
    disabled: bool = False
    lang: str = "vi"
    updated_at: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "user": self.name,
                "agency": self.agency,
                "roles": [r.value for r in self.roles],
                "hash": self.password_hash,
                "disabled": self.disabled,
                "lang": self.lang,
                "updated_at": self.updated_at or datetime.now(UTC).isoformat(),
            }
        )

    def public(self) -> dict[str, Any]:
        """What ``loa console users list`` shows (never the hash)."""
        return {
            "user": self.name,
            "agency": self.agency,
            "roles": [r.value for r in self.roles],
            "disabled": self.disabled,
            "lang": self.lang,
        }


def decode_user(key: bytes, value: bytes) -> User:
    """A record of the users topic; ValueError for anything else (the replica drops it)."""
    doc = orjson.loads(value)
    if not isinstance(doc, dict) or doc.get("user") != key.decode():
        raise ValueError("the record's user is not its key")
    roles = tuple(Role(r) for r in doc["roles"])
    if not isinstance(doc["hash"], str) or not doc["hash"].startswith("$argon2id$"):
        raise ValueError("not an argon2id hash")
    if doc.get("lang", "vi") not in ("vi", "en"):
        raise ValueError("lang must be vi or en")
    return User(
        str(doc["user"]),
        str(doc["agency"]),
        roles,
        doc["hash"],
        bool(doc.get("disabled", False)),
        str(doc.get("lang", "vi")),
        str(doc.get("updated_at", "")),
    )


def hash_password(password: str) -> str:
    """argon2id hash of ``password``; ValueError when it is too short or too long."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return _HASHER.hash(password)


def verify_login(users: Mapping[str, User], name: str, password: str) -> User | None:
    """The user if ``name`` exists, is enabled and ``password`` is theirs; else None (one
    answer for every refusal, and one argon2 verification each time)."""
    user = users.get(name) if USER_NAME.fullmatch(name) else None
    digest = user.password_hash if user is not None else _DUMMY_HASH
    ok = False
    with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
        ok = _HASHER.verify(digest, password[:MAX_PASSWORD])
    if user is None or user.disabled or not ok:
        return None
    return user


async def write_users(settings: Settings, users: Iterable[User]) -> int:
    """Write each user's whole record to the users topic (acks=all); the count."""
    producer = make_producer(settings)
    await start_all(producer)
    try:
        count = 0
        for user in users:
            await producer.send_and_wait(
                settings.console_users_topic, user.to_json(), key=user.name.encode()
            )
            count += 1
        return count
    finally:
        await producer.stop()


async def read_users(settings: Settings) -> dict[str, User]:
    """The users as the topic holds them now (for the CLI; the console follows it live)."""
    users: dict[str, User] = {}
    for doc in await latest_values(settings, settings.console_users_topic, [0]):
        name = str(doc.get("user", ""))
        try:
            users[name] = decode_user(name.encode(), orjson.dumps(doc))
        except (ValueError, KeyError, TypeError):
            continue  # a broken record is no user (the console drops it the same way)
    return users
