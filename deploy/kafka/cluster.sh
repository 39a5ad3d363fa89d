#!/usr/bin/env bash
# A secured, replicated local Kafka cluster: three KRaft nodes (combined broker +
# controller) on 127.0.0.1, TLS everywhere, SCRAM users created at format time,
# ACLs enforced by StandardAuthorizer. For the secured-cluster tests and for users
# who want to try Loa the way it runs in production. The jars are those of
# kafka.sh (same cache, fetched by it when missing).
#
# Usage: cluster.sh start|stop|status
#        cluster.sh kill N        SIGKILL node N (1..3), data kept
#        cluster.sh start-node N  start node N again on its data
#        cluster.sh grant PREFIX [AGENCY_ID]
#                                 add the ACLs of the Loa principals for topic prefix PREFIX;
#                                 the agency principal acts for AGENCY_ID (default
#                                 $LOA_CLUSTER_AGENCY or nchmf.gov.vn) and reads only its
#                                 decision topic PREFIX.decisions.AGENCY_ID
#        cluster.sh env USER      print the LOA_* settings of USER (worker, agency, operator,
#                                 admin), SASL_SSL + SCRAM-SHA-512; `env mtls-USER`: mTLS
#
# Listeners of node N (BASE = LOA_CLUSTER_PORT, default 19192), all on 127.0.0.1:
#   BASE+3(N-1)    CLIENT      SASL_SSL, SCRAM-SHA-512 (clients)
#   BASE+3(N-1)+1  MTLS        SSL with client certificates (mTLS clients, inter-broker)
#   BASE+3(N-1)+2  CONTROLLER  SSL with client certificates (KRaft quorum)
#
# Environment (all optional):
#   LOA_CLUSTER_PORT           first port, 9 consecutive ports used   (default 19192)
#   LOA_CLUSTER_DIR            runtime dir: tls/, secrets/, node-N/    (default ~/.cache/loa/cluster-<port>)
#   LOA_CLUSTER_START_TIMEOUT  seconds to wait for all nodes           (default 300)
#   LOA_KAFKA_VERSION, LOA_KAFKA_CACHE, LOA_KAFKA_JAVA: as for kafka.sh
#   KAFKA_HEAP_OPTS            JVM heap per node                       (default "-Xms256m -Xmx768m")
#
# `start` prints the SASL_SSL bootstrap list alone on stdout. Each `start` makes a new
# CA, new certificates, new passwords (secrets/<user>.password) and new storage.

set -euo pipefail

PROG=cluster.sh
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

NODES=3
USERS=(admin worker agency operator)
KAFKA_VERSION="${LOA_KAFKA_VERSION:-4.4.0}"
BASE="${LOA_CLUSTER_PORT:-19192}"
[[ "$BASE" =~ ^[0-9]+$ ]] && ((BASE > 0 && BASE + 9 < 65536)) || die "LOA_CLUSTER_PORT must be a TCP port, got '$BASE'"
DIR="${LOA_CLUSTER_DIR:-${HOME:-/tmp}/.cache/loa/cluster-$BASE}"
[[ "$DIR" == /* ]] || DIR="$(pwd -P)/$DIR"
CACHE_DIR="${LOA_KAFKA_CACHE:-${HOME:-/tmp}/.cache/loa/kafka-jars/$KAFKA_VERSION}"
START_TIMEOUT="${LOA_CLUSTER_START_TIMEOUT:-300}"
MARKER="$DIR/.loa-cluster-run"
TLS="$DIR/tls"
SECRETS="$DIR/secrets"

client_port() { echo $((BASE + 3 * ($1 - 1))); }
mtls_port() { echo $((BASE + 3 * ($1 - 1) + 1)); }
controller_port() { echo $((BASE + 3 * ($1 - 1) + 2)); }
bootstrap() {
  local n out=""
  for ((n = 1; n <= NODES; n++)); do out+="${out:+,}127.0.0.1:$(client_port "$n")"; done
  echo "$out"
}
mtls_bootstrap() {
  local n out=""
  for ((n = 1; n <= NODES; n++)); do out+="${out:+,}127.0.0.1:$(mtls_port "$n")"; done
  echo "$out"
}

java_bin() {
  if [[ -n "${LOA_KAFKA_JAVA:-}" ]]; then echo "$LOA_KAFKA_JAVA"
  elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then echo "$JAVA_HOME/bin/java"
  else command -v java || die "java not found (Java 17+ required; set LOA_KAFKA_JAVA)"; fi
}

# ---------------------------------------------------------------- certificates
# A CA; one broker certificate (SAN IP:127.0.0.1 only, so a client that connects to
# "localhost" sees a host mismatch) used by every node as server and as client of the
# others; one client certificate per user for mTLS (CN=<user>, mapped to User:<user>).
make_certs() {
  mkdir -p "$TLS"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=loa-local-ca" \
    -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
  sign_cert broker "IP:127.0.0.1" "serverAuth,clientAuth"
  local user
  for user in "${USERS[@]}"; do sign_cert "$user" "" "clientAuth"; done
  chmod 600 "$TLS"/*.key
}

sign_cert() { # $1 = CN, $2 = subjectAltName ("" for none), $3 = extendedKeyUsage
  local cn="$1" ext="$TLS/$1.ext"
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$cn" \
    -keyout "$TLS/$cn.key" -out "$TLS/$cn.csr" 2>/dev/null
  { echo "extendedKeyUsage=$3"; [[ -z "$2" ]] || echo "subjectAltName=$2"; } >"$ext"
  openssl x509 -req -in "$TLS/$cn.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
    -days 30 -extfile "$ext" -out "$TLS/$cn.pem" 2>/dev/null
  # PKCS#8 key + certificate in one file: Kafka's PEM keystore
  openssl pkcs8 -topk8 -nocrypt -in "$TLS/$cn.key" -out "$TLS/$cn.p8" 2>/dev/null
  cat "$TLS/$cn.p8" "$TLS/$cn.pem" >"$TLS/$cn.keystore.pem"
  rm -f "$TLS/$cn.csr" "$ext" "$TLS/$cn.p8"
}

make_secrets() {
  mkdir -p "$SECRETS"
  chmod 700 "$SECRETS"
  local user
  for user in "${USERS[@]}"; do
    head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$SECRETS/$user.password"
  done
  chmod 600 "$SECRETS"/*.password
}

password() { cat "$SECRETS/$1.password"; }

# ---------------------------------------------------------------- nodes
voters() {
  local n out=""
  for ((n = 1; n <= NODES; n++)); do out+="${out:+,}$n@127.0.0.1:$(controller_port "$n")"; done
  echo "$out"
}

write_props() { # $1 = node
  local n="$1" d="$DIR/node-$1"
  mkdir -p "$d/data"
  cat >"$d/server.properties" <<EOF
# Generated by deploy/kafka/cluster.sh -- node $n of a local secured 3-node KRaft cluster.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=CLIENT://127.0.0.1:$(client_port "$n"),MTLS://127.0.0.1:$(mtls_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=CLIENT://127.0.0.1:$(client_port "$n"),MTLS://127.0.0.1:$(mtls_port "$n")
listener.security.protocol.map=CLIENT:SASL_SSL,MTLS:SSL,CONTROLLER:SSL
inter.broker.listener.name=MTLS
controller.listener.names=CONTROLLER
log.dirs=$d/data

ssl.keystore.type=PEM
ssl.keystore.location=$TLS/broker.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
ssl.endpoint.identification.algorithm=https
listener.name.mtls.ssl.client.auth=required
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,DEFAULT

sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:admin

# replicated: what Loa's defaults expect of a 3-broker cluster
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false

num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
log.segment.bytes=67108864
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
message.max.bytes=2097152
replica.fetch.max.bytes=2097152
replica.lag.time.max.ms=10000
EOF
  cp "$HERE/log4j2.properties" "$d/log4j2.properties"
}

format_node() { # $1 = node, $2 = cluster id; SCRAM users are written into the metadata log
  local n="$1" d="$DIR/node-$1" user
  local -a scram=()
  for user in "${USERS[@]}"; do
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password "$user")]")
  done
  "$(java_bin)" -Xmx256m -Dlog4j2.configurationFile="$d/log4j2.properties" \
    -cp "$CACHE_DIR/*" kafka.tools.StorageTool format --cluster-id "$2" \
    --config "$d/server.properties" "${scram[@]}" </dev/null >"$d/format.log" 2>&1 ||
    { tail -n 20 "$d/format.log" >&2; die "formatting node $n failed (see $d/format.log)"; }
}

node_pid() { # $1 = node; prints the pid if the node runs
  local f="$DIR/node-$1/kafka.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  local stat
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]] || return 1 # killed, not yet reaped
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"node-$1/server.properties"* ]] || return 1
  echo "$pid"
}

launch_node() { # $1 = node
  local n="$1" d="$DIR/node-$1"
  local -a heap
  read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
  mv -f "$d/broker.log" "$d/broker.log.prev" 2>/dev/null || true
  # the new process writes its pid file itself, a moment later: until then there is none (a
  # stale one, of a killed process, would make wait_ready report a start failure)
  rm -f "$d/kafka.pid"
  # shellcheck disable=SC2016  # $$, $0 and $@ are expanded by the inner bash
  (cd "$d" && exec setsid bash -c 'echo $$ >"$0" && exec "$@"' "$d/kafka.pid" \
    "$(java_bin)" "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$d/log4j2.properties" -Dlog4j2.shutdownHookEnabled=false \
    -cp "$CACHE_DIR/*" kafka.Kafka "$d/server.properties" </dev/null >>"$d/broker.log" 2>&1) &
}

wait_ready() { # nodes...; each must log that it started
  local deadline=$((SECONDS + START_TIMEOUT)) n
  for n in "$@"; do
    until grep -qF "Kafka Server started" "$DIR/node-$n/broker.log" 2>/dev/null; do
      if [[ -s "$DIR/node-$n/kafka.pid" ]] && ! node_pid "$n" >/dev/null; then
        tail -n 30 "$DIR/node-$n/broker.log" >&2
        die "node $n exited during startup"
      fi
      ((SECONDS < deadline)) || die "node $n not ready within $START_TIMEOUT s (LOA_CLUSTER_START_TIMEOUT)"
      sleep 0.5
    done
  done
}

# ---------------------------------------------------------------- admin tools
# Kafka's own admin CLI, run as the admin user over SASL_SSL.
admin_config() {
  local f="$DIR/admin.properties"
  cat >"$f" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
EOF
  echo "$f"
}

add_acls() { # stdin: PRINCIPAL OPERATION RESOURCE_TYPE NAME PATTERN_TYPE per line
  "$(java_bin)" -Xmx256m -Dlog4j2.configurationFile="$DIR/node-1/log4j2.properties" \
    -cp "$CACHE_DIR/*" "$HERE/Acls.java" "$(admin_config)" "$(bootstrap)" >/dev/null ||
    die "adding ACLs failed"
}

do_grant() { # $1 = topic prefix (also the prefix of group and transactional ids), $2 = agency id
  local p="$1" agency="${2:-${LOA_CLUSTER_AGENCY:-nchmf.gov.vn}}"
  [[ "$p" =~ ^[A-Za-z0-9._-]+$ ]] || die "grant: bad topic prefix '$p'"
  # an id that is not a topic name has a hashed topic name (`loa agencies topic ID` prints it)
  [[ "$agency" =~ ^[A-Za-z0-9._-]+$ ]] ||
    die "grant: agency id '$agency' is not a topic name; grant READ on the topic \`loa agencies topic\` prints"
  add_acls <<EOF
User:worker ALL TOPIC $p PREFIXED
User:worker ALL GROUP $p PREFIXED
User:worker ALL TRANSACTIONAL_ID $p PREFIXED
User:worker IDEMPOTENT_WRITE CLUSTER kafka-cluster LITERAL
User:agency WRITE TOPIC $p.alerts.inbound LITERAL
User:agency DESCRIBE TOPIC $p.alerts.inbound LITERAL
User:agency READ TOPIC $p.decisions.$agency LITERAL
User:agency IDEMPOTENT_WRITE CLUSTER kafka-cluster LITERAL
User:operator ALL TOPIC $p PREFIXED
User:operator ALL GROUP $p PREFIXED
User:operator ALL TRANSACTIONAL_ID $p-deliver PREFIXED
User:operator DESCRIBE CLUSTER kafka-cluster LITERAL
User:operator IDEMPOTENT_WRITE CLUSTER kafka-cluster LITERAL
EOF
  say "granted the worker, agency ($agency) and operator ACLs for prefix '$p'"
}

do_env() { # $1 = user or mtls-user
  local user="${1#mtls-}"
  [[ -f "$SECRETS/$user.password" ]] || die "env: unknown user '$user' (${USERS[*]})"
  if [[ "$1" == mtls-* ]]; then
    echo "LOA_BOOTSTRAP_SERVERS=$(mtls_bootstrap)"
    echo "LOA_SECURITY_PROTOCOL=SSL"
    echo "LOA_SSL_CA_LOCATION=$TLS/ca.pem"
    echo "LOA_SSL_CERTIFICATE_LOCATION=$TLS/$user.pem"
    echo "LOA_SSL_KEY_LOCATION=$TLS/$user.key"
  else
    echo "LOA_BOOTSTRAP_SERVERS=$(bootstrap)"
    echo "LOA_SECURITY_PROTOCOL=SASL_SSL"
    echo "LOA_SASL_MECHANISM=SCRAM-SHA-512"
    echo "LOA_SASL_USERNAME=$user"
    echo "LOA_SASL_PASSWORD_FILE=$SECRETS/$user.password"
    echo "LOA_SSL_CA_LOCATION=$TLS/ca.pem"
  fi
}

# ---------------------------------------------------------------- commands
do_start() {
  command -v openssl >/dev/null || die "openssl not found (needed for the certificates)"
  [[ -f "$CACHE_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]] || bash "$HERE/kafka.sh" fetch
  local n running=0
  for ((n = 1; n <= NODES; n++)); do node_pid "$n" >/dev/null && running=1; done
  ((running == 0)) || die "the cluster in $DIR already runs (cluster.sh stop first)"
  if [[ -e "$DIR" ]]; then
    [[ -f "$MARKER" ]] || die "refusing to wipe $DIR: not a cluster.sh runtime dir"
    rm -rf -- "$DIR"
  fi
  mkdir -p "$DIR" && : >"$MARKER"
  local t0=$SECONDS cid
  make_certs
  make_secrets
  cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  [[ "$cid" != -* ]] || cid="A${cid:1}"
  for ((n = 1; n <= NODES; n++)); do write_props "$n"; format_node "$n" "$cid"; done
  for ((n = 1; n <= NODES; n++)); do launch_node "$n"; done
  wait_ready 1 2 3
  do_grant loa
  say "3-node cluster up in $((SECONDS - t0)) s; dir $DIR; users ${USERS[*]} (secrets/, tls/)"
  bootstrap
}

do_stop() {
  local n pid
  for ((n = 1; n <= NODES; n++)); do
    pid="$(node_pid "$n")" || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  for ((n = 1; n <= NODES; n++)); do
    local waited=0
    while pid="$(node_pid "$n")" && ((waited < 80)); do sleep 0.25; waited=$((waited + 1)); done
    if pid="$(node_pid "$n")"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$DIR/node-$n/kafka.pid"
  done
  say "cluster in $DIR stopped"
}

do_status() {
  local n pid up=0
  for ((n = 1; n <= NODES; n++)); do
    if pid="$(node_pid "$n")"; then echo "node $n running (pid $pid)"; up=$((up + 1))
    else echo "node $n not running"; fi
  done
  ((up == NODES)) || return 3
}

check_node() { [[ "${1:-}" =~ ^[1-3]$ ]] || die "node must be 1, 2 or 3, got '${1:-}'"; }

main() {
  case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    kill)
      check_node "${2:-}"
      local pid
      pid="$(node_pid "$2")" || die "node $2 is not running"
      kill -KILL "$pid"
      local waited=0 # gone (its ports and data lock free) before a start-node can follow
      while node_pid "$2" >/dev/null && ((waited < 120)); do sleep 0.25; waited=$((waited + 1)); done
      ! node_pid "$2" >/dev/null || die "node $2 (pid $pid) survived SIGKILL"
      say "node $2 (pid $pid) killed with SIGKILL" ;;
    start-node)
      check_node "${2:-}"
      ! node_pid "$2" >/dev/null || die "node $2 already runs"
      launch_node "$2"
      wait_ready "$2"
      say "node $2 started on its data" ;;
    grant) [[ -n "${2:-}" ]] || die "grant PREFIX [AGENCY_ID]"; do_grant "$2" "${3:-}" ;;
    env) [[ -n "${2:-}" ]] || die "env USER"; do_env "$2" ;;
    *) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
