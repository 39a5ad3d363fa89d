"""The column-wise send-task encoder against tasks written field by field with orjson: every
combination of kind, channel, fallback list and language, ids of every decimal width."""

from __future__ import annotations

import itertools

import numpy as np
import orjson

from streams.directory.index import FALLBACKS, Selection
from streams.fanout.encode import KINDS, TaskEncoder
from streams.records import CHANNELS, LANGUAGES, FanoutOrder, Priority, TaskKind
from streams.schemas import validator


def test_every_enum_combination_and_id_width_encodes_as_the_documented_task() -> None:
    combos = list(
        itertools.product(
            range(len(KINDS)), range(len(CHANNELS)), range(len(FALLBACKS)), range(len(LANGUAGES))
        )
    )
    widths = [10**k for k in range(20)]  # 1, 10, ... 10**19: every decimal width 1..20
    ids = np.array(
        sorted(w + i for w in widths for i in range(len(combos) // len(widths) + 1)),
        dtype=np.uint64,
    )[: len(combos)]
    ids = np.sort(np.concatenate([ids, np.array([0, 2**64 - 1], dtype=np.uint64)]))
    picked = [combos[i % len(combos)] for i in range(len(ids))]
    kind, channel, fallback, language = (
        np.array(c, dtype=np.uint8) for c in zip(*picked, strict=True)
    )
    order = FanoutOrder(
        alert_id='gov.vn/"quoted" ủy ban',
        version=7,
        kind=TaskKind.UPDATE,
        priority=Priority.EXTREME,
        partition=0,
        targets=("VN",),
        test_only=False,
        expires="2026-12-07T00:00:00.5+07:00",
    )
    audience = Selection(ids=ids, channel=channel, language=language, fallback=fallback)

    encoded = list(TaskEncoder(order).encode(audience, 0, len(ids), kind))

    check = validator("send_task")
    assert len(encoded) == len(ids)
    for (key, value), rid, k, c, f, lang in zip(
        encoded, ids.tolist(), kind, channel, fallback, language, strict=True
    ):
        want = {
            "alert_id": order.alert_id,
            "version": 7,
            "priority": "extreme",
            "expires": 1796576401,  # rounded up to the whole second
            "kind": KINDS[k].value,
            "recipient_id": rid,
            "channel": CHANNELS[c],
            "fallback": [CHANNELS[x] for x in FALLBACKS[f]],
            "language": LANGUAGES[lang],
            "idempotency_key": f"{order.alert_id}:7:{rid}",
        }
        got = orjson.loads(value)
        assert got == want
        assert key == str(rid).encode()
        check.validate(got)
