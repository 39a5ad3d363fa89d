#!/usr/bin/env bash
# Measure the exact reader on one core against brokerclock.count_tasks (docs/benchmarks-exact.md):
# writes N send-task records (default 20M) to two fresh LogAppendTime topics on the broker of
# LOA_BOOTSTRAP_SERVERS (default 127.0.0.1:19092), times both readers pinned to one core
# (--cpu, default 1), checks that their figures agree, prints JSON and deletes the topics.
#   benchmarks/exact/bench.sh [--records 20e6] [--partitions 8] [--cpu 1]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
export LOA_BOOTSTRAP_SERVERS="${LOA_BOOTSTRAP_SERVERS:-127.0.0.1:19092}"
cd "$ROOT"
exec "$PY" -m benchmarks.exactreader bench "$@"
