#!/usr/bin/env bash
# Resolve org.apache.kafka:kafka-tools (Kafka's own ProducerPerformance) with Maven, the way
# deploy/kafka/kafka.sh resolves the broker, into a cache outside the repo; print the
# classpath on stdout. Nothing is downloaded when the cache is complete.
#
# Environment: LOA_KAFKA_VERSION (default 4.4.0), LOA_KAFKA_TOOLS_CACHE
# (default ~/.cache/loa/kafka-tools/<version>), LOA_MVN (default mvn).
set -euo pipefail
VERSION="${LOA_KAFKA_VERSION:-4.4.0}"
CACHE="${LOA_KAFKA_TOOLS_CACHE:-${HOME:-/tmp}/.cache/loa/kafka-tools/$VERSION}"
MVN="${LOA_MVN:-mvn}"
PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

if [[ ! -f "$CACHE/.complete" ]]; then
  command -v "$MVN" >/dev/null 2>&1 || { echo "kafka-tools.sh: error: mvn not found (install Maven 3.8+ or set LOA_MVN)" >&2; exit 1; }
  mkdir -p "$(dirname -- "$CACHE")"
  exec 9>"$CACHE.lock"
  command -v flock >/dev/null 2>&1 && flock -w 600 9
  if [[ ! -f "$CACHE/.complete" ]]; then
    tmp="$(mktemp -d "$CACHE.tmp.XXXXXX")"
    trap 'rm -rf -- "$tmp"' EXIT
    cat >"$tmp/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>loa.local</groupId><artifactId>kafka-tools-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-nop</artifactId><version>2.0.17</version></dependency>
  </dependencies>
</project>
POM
    echo "kafka-tools.sh: resolving org.apache.kafka:kafka-tools:$VERSION (mvn) ..." >&2
    if ! "$MVN" -B -q -Dstyle.color=never -f "$tmp/pom.xml" "$PLUGIN:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="$tmp/jars" </dev/null >"$tmp/mvn.log" 2>&1; then
      grep -F '[ERROR]' "$tmp/mvn.log" | head -n 3 >&2 || tail -n 20 "$tmp/mvn.log" >&2
      exit 1
    fi
    [[ -f "$tmp/jars/kafka-tools-$VERSION.jar" ]] || { echo "kafka-tools.sh: error: kafka-tools-$VERSION.jar missing" >&2; exit 1; }
    touch "$tmp/jars/.complete"
    rm -rf -- "$CACHE"
    mv -- "$tmp/jars" "$CACHE"
  fi
fi
printf '%s/*\n' "$CACHE"
