#!/usr/bin/env bash
# Build the independent exactness reader (docs/benchmarks-exact.md) into one jar:
#   benchmarks/exact/target/loa-exact.jar
# Non-interactive and idempotent: the first build fetches kafka-clients (the broker's version,
# from deploy/kafka/kafka.sh or LOA_KAFKA_VERSION) and RoaringBitmap from Maven Central into
# ~/.m2; later builds are offline-capable and quick. Prints the jar's path on stdout.
#
# Environment: LOA_MVN (mvn binary, default mvn), LOA_KAFKA_VERSION (kafka-clients version).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../.." && pwd -P)"
MVN="${LOA_MVN:-mvn}"

die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

command -v "$MVN" >/dev/null || die "mvn not found (install Maven 3.8+ or set LOA_MVN)"
command -v java >/dev/null || die "java not found (Java 17+ is needed)"

version="${LOA_KAFKA_VERSION:-}"
if [[ -z "$version" ]]; then
  version="$(sed -n 's/^DEFAULT_KAFKA_VERSION=\(.*\)$/\1/p' "$ROOT/deploy/kafka/kafka.sh")"
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot tell the Kafka version (got '$version')"

# -B: batch mode (no prompts, no colours); -q: errors only; stdout of mvn goes to stderr so
# that ours carries the jar path alone
"$MVN" -B -q -Dstyle.color=never -f "$HERE/pom.xml" -Dkafka.version="$version" package >&2 \
  || die "mvn package failed (see above)"

jar="$HERE/target/loa-exact.jar"
[[ -s "$jar" ]] || die "mvn ran but $jar is missing"
printf '%s\n' "$jar"
