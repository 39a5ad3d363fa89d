#!/usr/bin/env bash
# Single-node Apache Kafka 4.x (KRaft, combined broker+controller) for
# development, tests and demos -- no Docker, no Kafka tarball: the broker jars
# are resolved from Maven Central with `mvn` and cached outside the repo.
#
# Usage: kafka.sh start|stop|restart|status|fetch
#
# Environment (all optional):
#   LOA_KAFKA_VERSION          org.apache.kafka:kafka_2.13 version  (default 4.4.0)
#   LOA_KAFKA_PORT             client listener on 127.0.0.1         (default 19092)
#   LOA_KAFKA_CONTROLLER_PORT  KRaft controller listener            (default PORT+1)
#   LOA_KAFKA_DIR              runtime dir (config, data, pid, log) (default ~/.cache/loa/kafka-run/<port>)
#   LOA_KAFKA_CACHE            resolved jars                        (default ~/.cache/loa/kafka-jars/<version>)
#   LOA_KAFKA_START_TIMEOUT    seconds to wait for readiness        (default 60)
#   LOA_KAFKA_STOP_TIMEOUT     seconds to wait for clean shutdown   (default 20)
#   LOA_KAFKA_JAVA             java binary (default: $JAVA_HOME/bin/java, else `java` on PATH)
#   LOA_MVN                    mvn binary                           (default mvn)
#   KAFKA_HEAP_OPTS            JVM heap flags                       (default "-Xms512m -Xmx1g")
#   KAFKA_OPTS                 extra JVM flags appended to the broker command line
#   LOA_KAFKA_KEEP_DATA        1: `start` reuses the formatted storage in LOA_KAFKA_DIR
#                              (topics, offsets, transactions survive); default 0 (wipe)
#
# `start` prints the bootstrap address (127.0.0.1:PORT) alone on stdout; all
# other messages go to stderr, so `BOOTSTRAP=$(kafka.sh start)` works.
# `status` exits 0 when running, 3 when not.

set -euo pipefail

PROG=kafka.sh

DEFAULT_KAFKA_VERSION=4.4.0
READY_MARKER="Kafka Server started"
MVN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $PROG start|stop|restart|status|fetch
  start   fetch jars if needed, start a fresh single-node KRaft broker on 127.0.0.1
          (with LOA_KAFKA_KEEP_DATA=1: keep the data of a previous run in LOA_KAFKA_DIR)
  stop    stop the broker (SIGTERM, then SIGKILL after LOA_KAFKA_STOP_TIMEOUT s)
  restart stop the broker, then start it again on the same data (LOA_KAFKA_KEEP_DATA=1)
  status  print whether the broker runs; exit 0 if running, 3 if not
  fetch   resolve the Kafka jars from Maven Central into the cache
EOF
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

abspath() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd -P)" "$1" ;;
  esac
}

# ---------------------------------------------------------------- configuration
HOME_DIR="${HOME:-/tmp}"
KAFKA_VERSION="${LOA_KAFKA_VERSION:-$DEFAULT_KAFKA_VERSION}"
PORT="${LOA_KAFKA_PORT:-19092}"
{ is_uint "$PORT" && ((PORT > 0 && PORT < 65536)); } || die "LOA_KAFKA_PORT must be a TCP port number, got '$PORT'"
CPORT="${LOA_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
{ is_uint "$CPORT" && ((CPORT > 0 && CPORT < 65536)); } || die "LOA_KAFKA_CONTROLLER_PORT must be a TCP port number, got '$CPORT'"
((CPORT != PORT)) || die "LOA_KAFKA_CONTROLLER_PORT must differ from LOA_KAFKA_PORT ($PORT)"
RUN_DIR="$(abspath "${LOA_KAFKA_DIR:-$HOME_DIR/.cache/loa/kafka-run/$PORT}")"
CACHE_DIR="$(abspath "${LOA_KAFKA_CACHE:-$HOME_DIR/.cache/loa/kafka-jars/$KAFKA_VERSION}")"
START_TIMEOUT="${LOA_KAFKA_START_TIMEOUT:-60}"
is_uint "$START_TIMEOUT" || die "LOA_KAFKA_START_TIMEOUT must be a number of seconds, got '$START_TIMEOUT'"
STOP_TIMEOUT="${LOA_KAFKA_STOP_TIMEOUT:-20}"
is_uint "$STOP_TIMEOUT" || die "LOA_KAFKA_STOP_TIMEOUT must be a number of seconds, got '$STOP_TIMEOUT'"
MVN="${LOA_MVN:-mvn}"
KEEP_DATA="${LOA_KAFKA_KEEP_DATA:-0}"
[[ "$KEEP_DATA" == 0 || "$KEEP_DATA" == 1 ]] || die "LOA_KAFKA_KEEP_DATA must be 0 or 1, got '$KEEP_DATA'"
BOOTSTRAP="127.0.0.1:$PORT"

PID_FILE="$RUN_DIR/kafka.pid"
BROKER_LOG="$RUN_DIR/broker.log"
PROPS="$RUN_DIR/server.properties"
RUN_MARKER="$RUN_DIR/.loa-kafka-run"
FETCH_MARKER="$CACHE_DIR/.loa-fetch-complete"

# ---------------------------------------------------------------- locking
# flock(1) serialises concurrent fetches and starts (e.g. parallel test
# workers); silently skipped where it does not exist. Lock fds 8 and 9 are
# closed for the broker process so it never holds a lock.
take_lock() { # $1 = lock file, $2 = fd
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname -- "$1")"
  eval "exec $2>\"\$1\""
  flock -w 600 "$2" || die "could not lock $1 within 600 s"
}

# ---------------------------------------------------------------- java
JAVA=""
check_java() {
  if [[ -n "${LOA_KAFKA_JAVA:-}" ]]; then
    JAVA="$LOA_KAFKA_JAVA"
    command -v "$JAVA" >/dev/null 2>&1 || die "LOA_KAFKA_JAVA='$JAVA' is not an executable java binary"
  elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA="$(command -v java)"
  else
    die "java not found (Java 17+ required; install a JDK/JRE 17+ or set LOA_KAFKA_JAVA)"
  fi
  local ver major
  ver="$("$JAVA" -version 2>&1 </dev/null | awk -F'"' '/version/ {print $2; exit}')" || true
  [[ -n "$ver" ]] || die "could not determine the version of $JAVA (Java 17+ required)"
  major="${ver%%[.+-]*}"
  if [[ "$major" == 1 ]]; then major="$(cut -d. -f2 <<<"$ver")"; fi
  { is_uint "$major" && ((major >= 17)); } || die "$JAVA is Java $ver, but Kafka $KAFKA_VERSION needs Java 17+ (set LOA_KAFKA_JAVA)"
}

# ---------------------------------------------------------------- fetch
cache_complete() {
  [[ -f "$FETCH_MARKER" && -f "$CACHE_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

write_pom() { # $1 = pom path, rest = extra <dependency> xml snippets
  local pom="$1"; shift
  {
    cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>loa.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
EOF
    local dep
    for dep in "$@"; do printf '    %s\n' "$dep"; done
    cat <<EOF
  </dependencies>
</project>
EOF
  } >"$pom"
}

run_mvn() { # $1 = log file, rest = mvn args; runs non-interactively
  local log="$1"; shift
  if ! "$MVN" -B -q -Dstyle.color=never "$@" </dev/null >"$log" 2>&1; then
    local err
    err="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -F '[ERROR]' | head -n 1)" || true
    if [[ -n "$err" ]]; then printf '%s\n' "$err" >&2; else tail -n 20 "$log" >&2; fi
    return 1
  fi
}

do_fetch() {
  if cache_complete; then
    say "kafka $KAFKA_VERSION jars already cached in $CACHE_DIR"
    return 0
  fi
  command -v "$MVN" >/dev/null 2>&1 ||
    die "mvn not found and no complete jar cache in $CACHE_DIR (install Maven 3.8+ or set LOA_MVN)"
  take_lock "$CACHE_DIR.lock" 8
  if cache_complete; then # another process fetched while we waited
    say "kafka $KAFKA_VERSION jars already cached in $CACHE_DIR"
    return 0
  fi

  local t0=$SECONDS tmp
  mkdir -p "$(dirname -- "$CACHE_DIR")"
  tmp="$(mktemp -d "$CACHE_DIR.tmp.XXXXXX")"
  # shellcheck disable=SC2064  # expand $tmp now
  trap "rm -rf -- '$tmp'" EXIT
  say "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central (mvn) ..."

  # Pass 1: which log4j / slf4j versions does this Kafka use? The kafka_2.13
  # pom brings log4j-api/log4j-core and slf4j-api but no slf4j->log4j binding,
  # without which the broker would log nothing.
  write_pom "$tmp/pom.xml"
  run_mvn "$tmp/mvn-list.log" -f "$tmp/pom.xml" "$MVN_DEPENDENCY_PLUGIN:list" \
    -DincludeScope=runtime -DoutputFile="$tmp/deps.txt" ||
    die "mvn could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see messages above)"
  local log4j_ver slf4j_ver binding
  log4j_ver="$(grep -oE 'org\.apache\.logging\.log4j:log4j-(core|api):jar:[^:]+' "$tmp/deps.txt" | head -n 1 | awk -F: '{print $4}')" || true
  log4j_ver="${log4j_ver:-2.25.5}"
  slf4j_ver="$(grep -oE 'org\.slf4j:slf4j-api:jar:[^:]+' "$tmp/deps.txt" | head -n 1 | awk -F: '{print $4}')" || true
  case "${slf4j_ver:-1}" in
    1.*|1) binding=log4j-slf4j-impl ;;  # SLF4J 1.7.x binding
    *) binding=log4j-slf4j2-impl ;;     # SLF4J 2.x provider
  esac

  # Pass 2: copy the full runtime classpath into the staging dir.
  write_pom "$tmp/pom.xml" \
    "<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$log4j_ver</version></dependency>" \
    "<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>$binding</artifactId><version>$log4j_ver</version></dependency>"
  run_mvn "$tmp/mvn-copy.log" -f "$tmp/pom.xml" "$MVN_DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$tmp/jars" ||
    die "mvn dependency:copy-dependencies failed for kafka_2.13:$KAFKA_VERSION (see messages above)"

  local jar
  for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" \
    "kafka-server-$KAFKA_VERSION.jar" "kafka-storage-$KAFKA_VERSION.jar" \
    "kafka-metadata-$KAFKA_VERSION.jar" "kafka-raft-$KAFKA_VERSION.jar" \
    "log4j-core-$log4j_ver.jar" "$binding-$log4j_ver.jar"; do
    [[ -f "$tmp/jars/$jar" ]] || die "fetch incomplete: $jar missing from the resolved classpath"
  done
  {
    echo "kafka_version=$KAFKA_VERSION"
    echo "log4j_version=$log4j_ver"
    echo "slf4j_binding=$binding"
    echo "fetched_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$tmp/jars/.loa-fetch-complete"

  rm -rf -- "$CACHE_DIR"
  mv -- "$tmp/jars" "$CACHE_DIR"
  rm -rf -- "$tmp"
  trap - EXIT
  say "cached $(find "$CACHE_DIR" -maxdepth 1 -name '*.jar' | wc -l | tr -d ' ') jars in $CACHE_DIR ($((SECONDS - t0)) s)"
}

# ---------------------------------------------------------------- processes
proc_cmdline() { # $1 = pid
  if [[ -r "/proc/$1/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
  else
    ps -o command= -p "$1" 2>/dev/null || true
  fi
}

proc_alive() { # $1 = pid; true if the process exists and is not a zombie
  kill -0 "$1" 2>/dev/null || return 1
  if [[ -r "/proc/$1/stat" ]]; then
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]] || return 1
  fi
  return 0
}

# Our broker: alive and its command line is kafka.Kafka with our server.properties
# (guards against a recycled pid).
is_our_broker() { # $1 = pid
  proc_alive "$1" || return 1
  local cmd
  cmd="$(proc_cmdline "$1")"
  [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"$PROPS"* ]]
}

RUNNING_PID=""
broker_running() {
  RUNNING_PID=""
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null)" || true
  [[ -n "$pid" ]] || return 1
  is_our_broker "$pid" || return 1
  RUNNING_PID="$pid"
}

port_in_use() { # $1 = port
  # shellcheck disable=SC2016  # $1 is expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" >/dev/null 2>&1
}

# Kafka-protocol probe: send ApiVersions v0 (correlation id 42) and check the
# response carries correlation id 42 and error code 0.
api_versions_ok() {
  local out
  # shellcheck disable=SC2016  # $1 is expanded by the inner bash
  out="$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x02lo" >&3
    head -c 10 <&3 | od -An -v -tx1
  ' _ "$PORT" 2>/dev/null)" || return 1
  out="$(tr -d ' \n' <<<"$out")"
  [[ "$out" =~ ^[0-9a-f]{8}0000002a0000$ ]]
}

kill_broker() { # $1 = pid; SIGTERM, wait, SIGKILL
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while proc_alive "$pid" && ((waited < STOP_TIMEOUT * 4)); do
    sleep 0.25
    waited=$((waited + 1))
  done
  if proc_alive "$pid"; then
    say "broker (pid $pid) did not stop within ${STOP_TIMEOUT} s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    waited=0
    while proc_alive "$pid" && ((waited < 40)); do
      sleep 0.25
      waited=$((waited + 1))
    done
    ! proc_alive "$pid" || die "broker (pid $pid) survived SIGKILL"
  fi
}

# ---------------------------------------------------------------- start
new_cluster_id() {
  # A Kafka Uuid: 16 random bytes, base64url without padding (22 chars). Avoid
  # a leading '-', which would be parsed as a command-line flag.
  local id=""
  while [[ -z "$id" || "$id" == -* ]]; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  printf '%s\n' "$id"
}

prepare_run_dir() {
  if [[ -e "$RUN_DIR" ]]; then
    [[ -d "$RUN_DIR" ]] || die "LOA_KAFKA_DIR=$RUN_DIR exists and is not a directory"
    if [[ -n "$(ls -A -- "$RUN_DIR")" && ! -f "$RUN_MARKER" ]]; then
      die "refusing to wipe $RUN_DIR: not empty and not a kafka.sh runtime dir (set LOA_KAFKA_DIR elsewhere)"
    fi
    rm -rf -- "$RUN_DIR"
  fi
  mkdir -p "$RUN_DIR/data"
  : >"$RUN_MARKER"

  cat >"$PROPS" <<EOF
# Generated by deploy/kafka/kafka.sh -- single-node KRaft broker for development.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN_DIR/data

# single node: replication factor 1 everywhere
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# development tuning
num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.segment.bytes=67108864
log.retention.hours=168
# retention-limited topics (the bench's sustained send topics) are trimmed every 10 s, not every
# 5 min (Kafka's default): at 1M tasks/s, 5 min of tasks is 70 GB of log before the first check
log.retention.check.interval.ms=10000
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
message.max.bytes=2097152
replica.fetch.max.bytes=2097152
EOF

  # Broker logging: everything to stdout, which is redirected to broker.log.
  cp "$(dirname -- "${BASH_SOURCE[0]}")/log4j2.properties" "$RUN_DIR/log4j2.properties"
  # Quieter config for the storage-format tool.
  sed 's/^rootLogger.level = info/rootLogger.level = warn/' \
    "$RUN_DIR/log4j2.properties" >"$RUN_DIR/log4j2-tools.properties"
}

# A previous run's storage that a restart can reuse: our marker, our config, formatted data.
storage_formatted() {
  [[ -f "$RUN_MARKER" && -f "$PROPS" && -f "$RUN_DIR/data/meta.properties" ]]
}

format_storage() {
  local cid
  cid="$(new_cluster_id)"
  # Kafka 4.x with controller.quorum.bootstrap.servers (dynamic quorum) needs
  # --standalone so the single controller becomes the initial voter.
  if ! (cd "$RUN_DIR" && "$JAVA" -Xmx256m \
    -Dlog4j2.configurationFile="$RUN_DIR/log4j2-tools.properties" \
    -cp "$CACHE_DIR/*" kafka.tools.StorageTool format --standalone \
    --cluster-id "$cid" --config "$PROPS" \
    </dev/null >"$RUN_DIR/format.log" 2>&1); then
    tail -n 20 "$RUN_DIR/format.log" >&2 || true
    die "formatting KRaft storage in $RUN_DIR/data failed (see $RUN_DIR/format.log)"
  fi
}

launch_broker() {
  local -a heap perf extra cmd
  read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
  read -r -a extra <<<"${KAFKA_OPTS:-}"
  # log4j2's own shutdown hook would stop logging before Kafka's shutdown hook
  # finishes, truncating broker.log; it is disabled so the log shows the clean
  # shutdown to the end.
  perf=(-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-XX:ErrorFile=$RUN_DIR/hs_err_pid%p.log")
  cmd=("$JAVA" "${heap[@]}" "${perf[@]}"
    "-Dlog4j2.configurationFile=$RUN_DIR/log4j2.properties"
    -Dlog4j2.shutdownHookEnabled=false
    "-Dkafka.logs.dir=$RUN_DIR"
    ${extra[@]+"${extra[@]}"}
    -cp "$CACHE_DIR/*" kafka.Kafka "$PROPS")

  rm -f -- "$PID_FILE"
  local -a detach=()
  if command -v setsid >/dev/null 2>&1; then detach=(setsid); else detach=(nohup); fi
  # The inner bash writes its own pid and then execs java, so the pid file holds
  # the java pid whether or not setsid forks. All fds go to the log / /dev/null
  # so callers capturing our output are not kept waiting by the broker.
  # A test session's broker holds every test's topics (thousands of partitions, three open
  # files each): raise the open-files limit as far as this user may (the broker dies with "Too
  # many open files" otherwise: seen at 20,000 with the delivery retry tiers).
  local nofile
  nofile="$(ulimit -Hn)"
  [[ "$nofile" == unlimited ]] && nofile=1048576
  (
    cd "$RUN_DIR" || exit 1
    ulimit -n 1048576 2>/dev/null || ulimit -n "$nofile" 2>/dev/null || true
    # shellcheck disable=SC2016  # $$, $0 and $@ are expanded by the inner bash
    exec "${detach[@]}" bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "${cmd[@]}" </dev/null >>"$BROKER_LOG" 2>&1 8>&- 9>&-) &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.05
  done
  [[ -s "$PID_FILE" ]] || die "broker process did not start (see $BROKER_LOG)"
}

print_log_tail() {
  say "last lines of $BROKER_LOG:"
  tail -n 40 "$BROKER_LOG" >&2 2>/dev/null || true
}

already_running() {
  say "kafka already running (pid $RUNNING_PID), bootstrap $BOOTSTRAP"
  echo "$BOOTSTRAP"
}

do_start() {
  check_java
  if broker_running; then already_running; return 0; fi
  take_lock "$RUN_DIR.lock" 9
  if broker_running; then already_running; return 0; fi
  cache_complete || do_fetch
  port_in_use "$PORT" && die "port 127.0.0.1:$PORT is already in use by another process (set LOA_KAFKA_PORT)"
  port_in_use "$CPORT" && die "controller port 127.0.0.1:$CPORT is already in use by another process (set LOA_KAFKA_CONTROLLER_PORT)"

  local t0=$SECONDS
  if [[ "$KEEP_DATA" == 1 ]] && storage_formatted; then
    # same config, cluster id and data: only the log of the previous run is set aside, so
    # the readiness check below cannot match its "started" line
    mv -f -- "$BROKER_LOG" "$BROKER_LOG.prev" 2>/dev/null || true
    say "keeping the data in $RUN_DIR/data (LOA_KAFKA_KEEP_DATA=1)"
  else
    prepare_run_dir
    format_storage
  fi
  launch_broker

  local pid deadline
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! proc_alive "$pid"; then
      print_log_tail
      rm -f -- "$PID_FILE"
      die "kafka broker exited during startup (see $BROKER_LOG)"
    fi
    if grep -qF "$READY_MARKER" "$BROKER_LOG" 2>/dev/null && api_versions_ok; then
      break
    fi
    if ((SECONDS >= deadline)); then
      print_log_tail
      kill_broker "$pid"
      rm -f -- "$PID_FILE"
      die "kafka broker not ready within ${START_TIMEOUT} s (LOA_KAFKA_START_TIMEOUT); stopped it"
    fi
    sleep 0.25
  done
  say "kafka $KAFKA_VERSION started (pid $pid) in $((SECONDS - t0)) s, bootstrap $BOOTSTRAP, dir $RUN_DIR"
  echo "$BOOTSTRAP"
}

# ---------------------------------------------------------------- stop / status
# No lock here: stopping must never wait behind a start; a stop racing a start
# simply makes that start report that the broker exited.
do_stop() {
  if ! broker_running; then
    rm -f -- "$PID_FILE"
    say "kafka not running (port $PORT)"
    return 0
  fi
  local pid="$RUNNING_PID"
  kill_broker "$pid"
  rm -f -- "$PID_FILE"
  say "kafka stopped (pid $pid)"
}

do_status() {
  if broker_running; then
    echo "kafka running (pid $RUNNING_PID), bootstrap $BOOTSTRAP, dir $RUN_DIR"
    return 0
  fi
  echo "kafka not running (port $PORT)"
  return 3
}

# ---------------------------------------------------------------- main
main() {
  [[ $# -eq 1 ]] || { usage; exit 2; }
  case "$1" in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; KEEP_DATA=1; do_start ;;
    status) do_status ;;
    fetch) do_fetch ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
