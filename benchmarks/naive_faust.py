"""The naive Faust fan-out the peers compare with: one agent, one ``await topic.send()`` per
recipient. Run by :func:`benchmarks.peers.faust_peer` as ``python -m benchmarks.naive_faust``.

It reads one trigger record ``"<n> <key bytes> <value bytes>"``, sends ``n`` records, waits for
the producer to flush, prints ``naive-faust: sent N in S s`` and exits.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import faust


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="loa-naive-faust-")
    app = faust.App(
        os.environ["BENCH_FAUST_ID"],
        broker=f"kafka://{os.environ['BENCH_FAUST_BROKER']}",
        store="memory://",
        datadir=data_dir,
        web_enabled=False,
        producer_acks=-1,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
    )
    trigger = app.topic(os.environ["BENCH_FAUST_TRIGGER"], value_serializer="raw")
    out = app.topic(os.environ["BENCH_FAUST_TOPIC"], value_serializer="raw", key_serializer="raw")

    @app.agent(trigger)
    async def fan_out(stream: faust.StreamT[bytes]) -> None:
        async for raw in stream:
            n, key_size, value_size = (int(x) for x in raw.split())
            value = b"x" * value_size
            started = time.perf_counter()
            for i in range(n):
                await out.send(key=b"%0*d" % (key_size, i), value=value)
            await app.producer.flush()
            print(f"naive-faust: sent {n} in {time.perf_counter() - started:.6f} s", flush=True)
            os._exit(0)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
