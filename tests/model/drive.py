"""Random message sequences for the lifecycle model tests, and their Loa JSON form.

A sequence is a list of :class:`Step` draws; :func:`build` turns each into a
:class:`~tests.model.lifecycle.Message` against the messages sent before it (references pick
earlier messages by index, right or with one part wrong), so the same draws replay the same
story against the model, the decision function and the worker. Imports nothing from
``streams``: the system under test is driven only through its inputs (JSON alerts) and read
through its outputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from tests.model.lifecycle import Agency, Message, Model, Outcome

__all__ = ["AGENCIES", "Step", "build", "play", "render", "sequences"]

_EVERY = frozenset({"Actual", "Exercise", "Test"})
#: The registry the tests load (deploy/agencies and deploy/agencies/testing), as the README
#: states it: the national authority may Update and Cancel any agency's lineage within its
#: jurisdiction; provinces only their own; the test agency (national, every status) only its own.
AGENCIES = {
    "nchmf.gov.vn": Agency(
        "nchmf.gov.vn", ("VN",), _EVERY, ((frozenset({"*"}), frozenset({"Update", "Cancel"})),)
    ),
    "ubnd.quangninh.gov.vn": Agency("ubnd.quangninh.gov.vn", ("VN-22",), _EVERY),
    "pctt.quangngai.gov.vn": Agency("pctt.quangngai.gov.vn", ("VN-51",), _EVERY),
    "test.agency.vn": Agency("test.agency.vn", ("VN",), _EVERY | {"Draft", "System"}),
}
SENDERS = tuple(AGENCIES)
STATUSES = ("Actual", "Actual", "Actual", "Exercise", "Test", "Draft", "System")
CODES = ("VN-22", "VN-51", "VN-01", "VN")
BASE = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
#: Examples per run: small in ``make test``; ``LOA_MODEL_EXAMPLES`` raises it (``make model``).
EXAMPLES = int(os.environ.get("LOA_MODEL_EXAMPLES", "0") or 0)


@dataclass(frozen=True)
class Step:
    kind: str  # Alert, Update, Cancel, Ack, Republish
    sender: str
    status: str
    area: tuple[str, ...]
    ref: str  # right, sent, sender, identifier, two, none
    a: int
    b: int
    expired: bool
    same_status: bool
    #: Area inside the sender's jurisdiction (else ``area`` as drawn).
    own_area: bool = True
    #: Refer to a message the model accepted (else to any message sent).
    to_accepted: bool = True
    #: An Update, Cancel or Ack sent by the sender of the message it refers to.
    by_target_sender: bool = False


steps = st.builds(
    Step,
    kind=st.sampled_from(("Alert", "Alert", "Update", "Update", "Cancel", "Ack", "Republish")),
    sender=st.sampled_from(SENDERS),
    status=st.sampled_from(STATUSES),
    area=st.lists(st.sampled_from(CODES), min_size=1, max_size=2, unique=True).map(tuple),
    ref=st.sampled_from(("right",) * 8 + ("sent", "sender", "two", "none")),
    a=st.integers(0, 1_000),
    b=st.integers(0, 1_000),
    expired=st.just(False),
    same_status=st.integers(0, 5).map(lambda n: n > 0),
    own_area=st.integers(0, 4).map(lambda n: n > 0),
    to_accepted=st.integers(0, 5).map(lambda n: n > 0),
    by_target_sender=st.booleans(),
)


def sequences(max_size: int = 24, min_size: int = 1) -> st.SearchStrategy[list[Step]]:
    # one expired message in about twenty: drawn apart so the flag stays rare
    rare = st.integers(0, 39).map(lambda n: n == 39)
    return st.lists(
        st.tuples(steps, rare).map(lambda pair: _with_expired(*pair)),
        min_size=min_size,
        max_size=max_size,
    )


def _with_expired(step: Step, expired: bool) -> Step:
    return Step(**{**step.__dict__, "expired": expired})


def build(step: Step, history: list[Message], accepted: list[Message], tag: str) -> Message:
    """The message ``step`` stands for, after the messages in ``history`` (of which the model
    accepted ``accepted``: references mostly pick among those, so later rules are reached)."""
    n = len(history)
    pool = accepted if step.to_accepted and accepted else history
    if step.kind == "Republish" and history:
        earlier = pool[step.a % len(pool)]
        status = earlier.status if step.same_status else step.status
        return Message(**{**earlier.__dict__, "status": status})
    kind = "Alert" if step.kind == "Republish" else step.kind
    status, sender = step.status, step.sender
    if kind != "Alert" and step.to_accepted and not accepted:
        kind, status = "Alert", "Actual"  # a story needs something to change first
    references: tuple[tuple[str, str, int], ...] = ()
    if kind != "Alert" and history:
        target = pool[step.a % len(pool)]
        if step.by_target_sender:
            sender = target.sender
        if step.same_status:  # mostly refer within one status, so the later rules are reached
            status = target.status
        triple = (target.sender, target.identifier, target.sent)
        if step.ref == "sent":
            triple = (target.sender, target.identifier, target.sent + 1)
        elif step.ref == "sender":
            others = [s for s in SENDERS if s != target.sender]
            triple = (others[step.b % len(others)], target.identifier, target.sent)
        references = (triple,)
        if step.ref == "two":
            other = pool[step.b % len(pool)]
            references = (triple, (other.sender, other.identifier, other.sent))
        elif step.ref == "none":
            references = ()
    elif kind != "Alert":
        references = ((step.sender, f"{tag}-nothing", 0),)
    return Message(
        sender=sender,
        identifier=f"{tag}-{n}",
        sent=n,
        status=status,
        msg_type=kind,
        references=references,
        area=_area(step, sender) if kind in ("Alert", "Update") else (),
        expired=step.expired and kind in ("Alert", "Update"),
    )


def play(story: list[Step], model: Model, tag: str) -> Iterator[tuple[Message, Outcome]]:
    """Each message of ``story`` with the model's decision on it (the model's state moves on)."""
    history: list[Message] = []
    accepted: list[Message] = []
    for step in story:
        m = build(step, history, accepted, tag)
        history.append(m)
        expected = model.decide(m)
        if expected.code == "accepted":
            accepted.append(m)
        yield m, expected


def _area(step: Step, sender: str) -> tuple[str, ...]:
    if not step.own_area:
        return step.area
    own = AGENCIES[sender].jurisdiction
    return tuple(code for code in step.area if any(code.startswith(p) for p in own)) or own


def sent_text(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


def render(m: Message) -> dict[str, Any]:
    """The Loa JSON alert for ``m``."""
    doc: dict[str, Any] = {
        "identifier": m.identifier,
        "sender": m.sender,
        "sent": sent_text(m.sent),
        "status": m.status,
        "msgType": m.msg_type,
        "scope": "Public",
    }
    if m.references:
        doc["references"] = " ".join(f"{s},{i},{sent_text(t)}" for s, i, t in m.references)
    if m.msg_type in ("Alert", "Update"):
        doc["info"] = [
            {
                "language": "vi-VN",
                "category": ["Met"],
                "event": "Mưa lớn",
                "urgency": "Expected",
                "severity": "Severe",
                "certainty": "Likely",
                "headline": f"Mưa lớn ({m.identifier})",
                "expires": "2020-01-01T00:00:00+00:00"
                if m.expired
                else "2030-01-01T00:00:00+00:00",
                "area": [{"areaDesc": "vùng", "regions": list(m.area)}],
            }
        ]
    return doc
