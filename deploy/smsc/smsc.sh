#!/usr/bin/env bash
# The test SMSC (deploy/smsc/LoaSmsc.java on jSMPP): resolve its jars from Maven Central with
# mvn, as deploy/kafka/kafka.sh does for Kafka, and compile it with javac, cached under
# ~/.cache/loa/smsc/<jsmpp version>/. `make setup` runs `install`; tests run `classpath` and
# fail loudly when the SMSC is not installed (they never install it themselves).
#
# usage: smsc.sh install     resolve and compile (idempotent: a no-op when cached and current)
#        smsc.sh classpath   print the java classpath (exit 1 when not installed)
#        smsc.sh run PORT SYSTEM_ID PASSWORD LOG   run it in the foreground
#
# environment: LOA_MVN (default mvn)
set -euo pipefail

PROG=smsc.sh
JSMPP_VERSION=3.0.1
SLF4J_VERSION=1.7.36  # jSMPP 3.0.1 imports org.slf4j [1.7,2)
MVN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
HERE="$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
SOURCE="$HERE/LoaSmsc.java"
CACHE="${HOME:-/tmp}/.cache/loa/smsc/$JSMPP_VERSION"
MVN="${LOA_MVN:-mvn}"

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

source_sum() { sha256sum "$SOURCE" | cut -d' ' -f1; }

installed() {
  [[ -f "$CACHE/lib/.complete" && -f "$CACHE/classes/LoaSmsc.class" \
     && "$(cat "$CACHE/classes/.source-sha256" 2>/dev/null)" == "$(source_sum)" ]]
}

install() {
  command -v javac >/dev/null || die "javac not found (a JDK 17+ is needed to build the test SMSC)"
  if [[ ! -f "$CACHE/lib/.complete" ]]; then
    command -v "$MVN" >/dev/null || die "mvn not found (set LOA_MVN)"
    mkdir -p "$CACHE/lib"
    for artifact in "org.jsmpp:jsmpp:$JSMPP_VERSION" "org.slf4j:slf4j-api:$SLF4J_VERSION" \
                    "org.slf4j:slf4j-simple:$SLF4J_VERSION"; do
      "$MVN" -q -B "$MVN_DEPENDENCY_PLUGIN:copy" -Dartifact="$artifact" \
        -DoutputDirectory="$CACHE/lib" >&2 || die "could not resolve $artifact from Maven Central"
    done
    touch "$CACHE/lib/.complete"
  fi
  if ! installed; then
    rm -rf "$CACHE/classes"
    mkdir -p "$CACHE/classes"
    javac -d "$CACHE/classes" -cp "$CACHE/lib/*" "$SOURCE" || die "javac failed on $SOURCE"
    source_sum >"$CACHE/classes/.source-sha256"
  fi
  printf '%s: test SMSC ready in %s\n' "$PROG" "$CACHE" >&2
}

classpath() {
  installed || die "the test SMSC is not installed or is stale: run 'make setup' (or: bash deploy/smsc/smsc.sh install)"
  printf '%s\n' "$CACHE/classes:$CACHE/lib/*"
}

case "${1:-}" in
  install) install ;;
  classpath) classpath ;;
  run)
    shift
    cp="$(classpath)"
    exec java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$cp" LoaSmsc "$@" ;;
  *) die "usage: $PROG install|classpath|run PORT SYSTEM_ID PASSWORD LOG" ;;
esac
