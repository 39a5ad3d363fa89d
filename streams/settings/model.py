"""One frozen settings object, read from ``LOA_*`` environment variables at the CLI boundary.

Nothing below the CLI reads the environment: the settings object is passed in. Every field is
listed in README.md with its variable and default.
"""

from __future__ import annotations

import hashlib
import math
import re
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PRINCIPAL", "RUNBOOK_URL", "SESSION_TIMEOUT_RANGE_S", "Settings", "runbook"]


#: What Kafka allows in a topic name, and how long one may be.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]+")
_TOPIC_MAX = 249


#: A Kafka principal as the standard authorizer names a user: ``User:`` and a name without
#: blanks, commas or ``=`` (the separators of ``LOA_ACL_AGENCY_PRINCIPALS``).
PRINCIPAL = re.compile(r"User:[^\s,=]+")

#: Default of LOA_RUNBOOK_URL: the runbooks in the repository's docs.
RUNBOOK_URL = "https://github.com/loa-alerts/loa/blob/main/docs/runbooks.md"

#: The broker's bounds on a consumer's session timeout (``group.min.session.timeout.ms``,
#: 6 s by default) and Loa's own ceiling: above 5 minutes a dead worker's partitions wait
#: that long before anyone serves them, which no emergency deployment wants.
SESSION_TIMEOUT_RANGE_S = (6.0, 300.0)


def runbook(settings: Settings, alert: str) -> str:
    """The link to ``alert``'s runbook section (anchors are the alert name in lower case)."""
    return f"{settings.runbook_url}#{alert.lower()}"


def _default_data_dir() -> str:
    return str(Path.home() / ".cache" / "loa" / "data")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a Loa process can be told. ``LOA_<FIELD>`` in upper case sets a field.

    Why this long: it is the one frozen settings object (STYLE.md), a list of fields each with
    the comment ``docs/settings.md`` is generated from, plus their validation; split, the
    generated reference and the strict loader would have several objects to walk."""

    #: LOA_BOOTSTRAP_SERVERS (falls back to KAFKA_BOOTSTRAP_SERVERS): Kafka bootstrap servers.
    bootstrap_servers: str = "127.0.0.1:19092"
    #: LOA_APP_ID: Faust application id, also the consumer group of the workers.
    app_id: str = "loa"
    #: LOA_TOPIC_PREFIX: prefix of every topic name (``loa`` gives ``loa.alerts.inbound``...).
    topic_prefix: str = "loa"
    #: LOA_PARTITIONS: partitions of the orders, directory, progress and send-task topics.
    partitions: int = 8
    #: LOA_REPLICATION_FACTOR: replication factor of the topics Loa creates; 0: 3 when the
    #: cluster has three or more brokers, else 1 (``streams.topics.replication``).
    replication_factor: int = 0
    #: LOA_MIN_INSYNC_REPLICAS: ``min.insync.replicas`` of the topics Loa creates; 0: 2 when
    #: the replication factor is 3 or more, else 1.
    min_insync_replicas: int = 0
    #: LOA_MAX_ALERT_BYTES: an inbound record larger than this is rejected as ``too_large``.
    max_alert_bytes: int = 256 * 1024
    #: LOA_EMIT_BATCH_BYTES: size of one producer batch of send tasks (one Kafka request).
    emit_batch_bytes: int = 1_000_000
    #: LOA_FANOUT_CHUNK: recipients per chunk: one vectorized encoding and one Kafka transaction
    #: (tasks plus the order's cursor); also the preemption granularity.
    fanout_chunk: int = 65_536
    #: LOA_CANCEL_TASKS: a Cancel of an Actual alert sends a ``cancel`` task to everyone the
    #: lineage already reached (and stops what remains).
    cancel_tasks: bool = True
    #: LOA_CAP_COUNT: a routine alert reaches a recipient only if fewer than this many other
    #: routine alerts reached them within the window (extreme and severe alerts are never capped).
    #: ``0`` turns caps off (it does not suppress every routine alert); negative is an error.
    cap_count: int = 3
    #: LOA_CAP_WINDOW_S: the frequency-cap window in seconds.
    cap_window_s: float = 86_400.0
    #: LOA_FANOUT_RAW_BATCHES: build send-task record batches column-wise from the encoder's
    #: byte matrices (no Python work per task); ``false`` appends each task with aiokafka's
    #: public ``BatchBuilder.append`` (slower, no private aiokafka protocol used).
    fanout_raw_batches: bool = True
    #: LOA_FANOUT_PARALLEL: chunks of different partitions in flight at once (one encodes while
    #: another's transaction commits).
    fanout_parallel: int = 4
    #: LOA_DIRECTORY_CATCHUP_TIMEOUT_S: how long a directory partition's replay may go without
    #: progress (a stall, however long the replay) before its restore or the order's fan-out
    #: is retried; also how long the accepted/channels replicas may take to catch up.
    directory_catchup_timeout_s: float = 120.0
    #: LOA_DIRECTORY_RAW_KAFKA: the directory loader builds record batches column-wise and the
    #: restore reads fetched record batches column-wise (``streams.kafkaio.rawkafka``); false
    #: falls back to aiokafka's public per-record producer and consumer paths (slower).
    directory_raw_kafka: bool = True
    #: LOA_H3_RESOLUTION: H3 resolution of subscriber location cells and of the cells that
    #: polygons and circles resolve to (7: cells of about 5 km², edge 1.4 km).
    h3_resolution: int = 7
    #: LOA_DATA_DIR: the worker's local state: Faust's data and the directory snapshots.
    data_dir: str = ""
    #: LOA_SNAPSHOT_INTERVAL_S: how often a worker writes each owned directory partition's
    #: columns under ``LOA_DATA_DIR/snapshots`` (skipped when nothing changed), so a takeover
    #: loads them and replays only the tail of the changes topic; 0 turns snapshots off
    #: (neither written nor read: every takeover replays the whole partition).
    snapshot_interval_s: float = 60.0
    #: LOA_CENSUS_INTERVAL_S: a worker writes the census of each directory partition it owns
    #: (subscribers by ward, first channel and test flag, located ones by cell, see
    #: ``streams.directory.census``) to ``<prefix>.directory.census`` once the partition is
    #: restored, then at most this often while the partition changes; ingest counts an alert's
    #: reach from it. Must be > 0 (the census is how a decision knows whom it reaches).
    census_interval_s: float = 10.0
    #: LOA_LOG_LEVEL: log level of the worker and CLI.
    log_level: str = "INFO"
    #: LOA_LOG_FORMAT: ``text`` (human) or ``json`` (one JSON object per line, for log shippers).
    log_format: str = "text"
    #: LOA_METRICS_HOST: address the worker's Prometheus endpoint binds (``0.0.0.0`` in pods).
    metrics_host: str = "127.0.0.1"
    #: LOA_METRICS_PORT: port of the worker's Prometheus endpoint ``/metrics``; 0 disables it.
    metrics_port: int = 9470
    #: LOA_METRICS_INTERVAL_S: how often the worker refreshes consumer lag and directory gauges.
    metrics_interval_s: float = 5.0
    #: LOA_AGENCIES_DIR: agency registry files ``loa agencies load`` reads when given no path
    #: (empty: the package's ``deploy/agencies``). Workers read the agencies topic, not this.
    agencies_dir: str = ""
    #: LOA_REQUIRE_SIGNATURES: ingest rejects an alert without a valid signature of its sender
    #: (``bad_signature``). Turn off only for local experiments; sender registration,
    #: jurisdiction, statuses and severities are still enforced.
    require_signatures: bool = True
    #: LOA_AGENCIES_CATCHUP_TIMEOUT_S: how long ingest waits for the agency registry to apply its
    #: topic up to the current end before the alert is retried.
    agencies_catchup_timeout_s: float = 30.0
    #: LOA_SESSION_TIMEOUT_S: consumer-group session timeout of the workers: how long after a
    #: worker dies (kill -9, lost host) its partitions move to the others (heartbeats every
    #: third of it, at most 3 s). Chosen for emergencies: 10 s bounds the silence a dead worker
    #: causes, where Kafka's 45 s (aiokafka's 10 s, Faust's 60 s) would cost a typhoon warning a
    #: minute. The price: a worker whose event loop stalls longer than this (a swap storm, a
    #: stop-the-world pause) is taken for dead and its partitions move; it is fenced and rejoins.
    #: The broker's floor is ``group.min.session.timeout.ms`` (6 s).
    session_timeout_s: float = 10.0
    #: LOA_INSTANCE_ID: static group membership (``group.instance.id``, KIP-345): a worker
    #: restarted with the same id (kill -9, then its supervisor starts it again) gets its
    #: partitions back at once, without a rebalance and without waiting out the session
    #: timeout. Must be unique per live worker (two live workers with one id fence each other).
    #: Empty: ``<hostname>-<hash of LOA_DATA_DIR>``, stable across restarts on one host (a
    #: StatefulSet pod keeps its hostname). ``none``: dynamic membership.
    instance_id: str = ""
    #: LOA_LEAVE_GROUP_ON_STOP: on SIGTERM the worker leaves the group as it stops, so the
    #: others take its partitions at once (a static member is otherwise kept until the session
    #: timeout). ``false`` suits rolling restarts faster than the session timeout: the
    #: restarted worker reclaims its partitions with no rebalance at all.
    leave_group_on_stop: bool = True
    #: LOA_SHUTDOWN_TIMEOUT_S: a worker told to stop (SIGTERM, SIGINT) exits within this many
    #: seconds even when the broker is unreachable; an open transaction is then left to the
    #: next owner of its partition, whose producer fences and aborts it (nothing is lost).
    shutdown_timeout_s: float = 10.0
    #: LOA_GATEWAY_HOST: address ``loa gateway`` binds; off loopback it requires TLS.
    gateway_host: str = "127.0.0.1"
    #: LOA_GATEWAY_PORT: port of ``loa gateway`` (``POST /v1/alerts``).
    gateway_port: int = 9480
    #: LOA_GATEWAY_TLS_CERT, LOA_GATEWAY_TLS_KEY: PEM certificate chain and key: HTTPS.
    gateway_tls_cert: str = ""
    gateway_tls_key: str = ""
    #: LOA_GATEWAY_TLS_CLIENT_CA: PEM CA bundle; when set, clients must show a certificate it
    #: signed (mutual TLS).
    gateway_tls_client_ca: str = ""
    #: LOA_GATEWAY_DECISION_TIMEOUT_S: how long a POST waits for ingest's decision before it
    #: answers 202 with a link to follow.
    gateway_decision_timeout_s: float = 10.0
    #: LOA_GATEWAY_READ_TIMEOUT_S: a request body not received within this is answered 408.
    gateway_read_timeout_s: float = 10.0
    #: LOA_GATEWAY_RATE, LOA_GATEWAY_BURST: alerts per second and burst per agency (the CAP
    #: sender of the body) before the gateway answers 429.
    gateway_rate: float = 1.0
    gateway_burst: int = 20

    # -- the agency console (streams.console, docs/console.md) --
    #: LOA_CONSOLE_HOST: address ``loa console`` binds; off loopback it requires TLS (the
    #: gateway's ``LOA_GATEWAY_TLS_CERT`` and ``LOA_GATEWAY_TLS_KEY``).
    console_host: str = "127.0.0.1"
    #: LOA_CONSOLE_PORT: port of ``loa console`` (the web page and ``/api/``).
    console_port: int = 9490
    #: LOA_CONSOLE_KEYS_DIR: the agencies' signing keys the console signs approved alerts with,
    #: files as ``loa keys new`` writes them (``<key id>.key``); the browser never sees a key.
    console_keys_dir: str = ".loa/keys"
    #: LOA_CONSOLE_APPROVAL: which alerts need a second person with the approver role, as
    #: ``;``-separated ``AGENCY:STATUS[/SEVERITY]=second|none,...`` rules (``*`` for every
    #: agency; the most specific rule wins). Empty: every Actual alert needs a second person,
    #: Exercise and Test do not. An unknown agency, status or severity stops the console.
    console_approval: str = ""
    #: LOA_CONSOLE_TILE_URL: an ``https://.../{z}/{x}/{y}.png`` map tile URL the page may load
    #: (added to the Content-Security-Policy); empty: no tiles, outlines only.
    console_tile_url: str = ""
    #: LOA_CONSOLE_SESSION_IDLE_S: a console session unused this long ends (log in again).
    console_session_idle_s: float = 1800.0
    #: LOA_CONSOLE_LOGIN_ATTEMPTS, LOA_CONSOLE_LOGIN_WINDOW_S: failed logins allowed per user
    #: name within the window before ``/api/login`` answers 429 (with ``Retry-After``).
    console_login_attempts: int = 5
    console_login_window_s: float = 300.0
    #: LOA_CONSOLE_LOGIN_ATTEMPTS_PER_ADDRESS: the same limit per client address (all names).
    console_login_attempts_per_address: int = 20

    # -- delivery: retries, fallback, in-flight calls, circuits (streams.delivery) --
    #: LOA_DELIVERY_RETRY_TIERS_S: delays of the retry tiers, comma-separated seconds; each is
    #: a topic per priority, ``<prefix>.sends.retry.<priority>.<delay>`` (``1s``, ``250ms``),
    #: a failed task waits on for its next attempt (:meth:`retry_topic`).
    delivery_retry_tiers_s: str = "1,10,60,300"
    #: LOA_DELIVERY_BACKOFF_BASE_S, LOA_DELIVERY_BACKOFF_CAP_S: exponential back-off with full
    #: jitter: before attempt n+1 wait a uniform random time in [0, min(cap, base * 2^(n-1))].
    delivery_backoff_base_s: float = 1.0
    delivery_backoff_cap_s: float = 300.0
    #: LOA_DELIVERY_RETRY_LIMIT_S: per priority, how long after its first attempt a task is
    #: retried at most (also when the alert has no ``expires``); retries stop at whichever of
    #: this and the alert's ``expires`` comes first (then ``failed``, reason ``expired``).
    delivery_retry_limit_s: str = "extreme=86400,severe=86400,routine=21600"
    #: LOA_DELIVERY_FALLBACK_AFTER_S: per priority, how long after its first attempt a task
    #: that keeps failing also goes to the recipient's next channel. A permanent refusal (4xx
    #: other than 408/429) falls back at once.
    delivery_fallback_after_s: str = "extreme=10,severe=60,routine=600"
    #: LOA_DELIVERY_KEEP_TRYING_FIRST: after a fallback the first channel keeps retrying too
    #: (the recipient may then be told twice, on two channels); false: the first channel's
    #: task ends ``failed`` with ``fallback`` set.
    delivery_keep_trying_first: bool = False
    #: LOA_DELIVERY_MAX_IN_FLIGHT: tasks in provider calls per channel of one delivery worker at
    #: once (a call per task, or per up to LOA_DELIVERY_HTTP_BATCH; each call with its own
    #: timeout, ``loa deliver --timeout``).
    delivery_max_in_flight: int = 1000
    #: LOA_DELIVERY_RATE_PER_ENDPOINT: calls per second one delivery worker makes to one
    #: provider endpoint at most (a second's worth of burst); 0: no limit of its own (the
    #: provider's 429s and Retry-After still pace it).
    delivery_rate_per_endpoint: float = 0.0
    #: LOA_DELIVERY_MAX_RETRY_AFTER_S: a provider's Retry-After is honoured up to this long.
    delivery_max_retry_after_s: float = 300.0
    #: LOA_DELIVERY_BREAKER_FAILURES: consecutive failed calls (connection, timeout, 5xx) to
    #: one provider endpoint that open its circuit; tasks meeting an open circuit go to the
    #: retry tiers without a call.
    delivery_breaker_failures: int = 20
    #: LOA_DELIVERY_BREAKER_COOLDOWN_S: how long a circuit stays open before one probe call
    #: (half-open); the probe's success closes it, its failure opens it again.
    delivery_breaker_cooldown_s: float = 5.0
    #: LOA_DELIVERY_RETRY_HOLD: retry records one worker holds per retry-tier partition while
    #: they wait for their due time; at this many it pauses that partition (memory bound).
    delivery_retry_hold: int = 20_000
    #: LOA_DELIVERY_HTTP_BEARER_TOKEN_FILE: file whose first line is the http provider's bearer
    #: token (``Authorization: Bearer``).
    delivery_http_bearer_token_file: str = ""
    #: LOA_DELIVERY_HTTP_USERNAME, LOA_DELIVERY_HTTP_PASSWORD_FILE: basic auth of the http
    #: provider (the password's file: first line).
    delivery_http_username: str = ""
    delivery_http_password_file: str = ""
    #: LOA_DELIVERY_HTTP_CA_FILE: PEM CA bundle the http provider's certificate must chain to
    #: (empty: the system's trust store).
    delivery_http_ca_file: str = ""
    #: LOA_DELIVERY_HTTP_CERT_FILE, LOA_DELIVERY_HTTP_KEY_FILE: client certificate and key
    #: (PEM) shown to the http provider (mutual TLS).
    delivery_http_cert_file: str = ""
    delivery_http_key_file: str = ""
    #: LOA_DELIVERY_HTTP_BATCH: tasks per call of the http provider. 1: one POST per task (the
    #: task as the body, its key in ``Idempotency-Key``); more: the provider's bulk form, one
    #: POST of ``{"messages": [task, ...]}`` answered with one status per message
    #: (docs/channels.md, "The http provider's contract"). Tasks are never held back to fill a
    #: batch: a call takes what is buffered, up to this many.
    delivery_http_batch: int = 1
    #: LOA_DELIVERY_SMPP_SYSTEM_ID, LOA_DELIVERY_SMPP_PASSWORD_FILE: the SMSC account of the
    #: smpp provider (``--provider smpp --url smpp://host:port``); the password's file: first
    #: line (SMPP allows 8 characters).
    delivery_smpp_system_id: str = ""
    delivery_smpp_password_file: str = ""
    #: LOA_DELIVERY_SMPP_SOURCE_ADDR: the sender shown on handsets (alphanumeric, TON 5).
    delivery_smpp_source_addr: str = "LOA"
    #: LOA_DELIVERY_SMPP_ADDRESS_TEMPLATE: a recipient's MSISDN, ``{recipient_id}`` rendered
    #: (e.g. ``84{recipient_id:09d}``); the directory keeps ids, the operator's numbering here.
    delivery_smpp_address_template: str = "{recipient_id}"
    #: LOA_DELIVERY_SMPP_WINDOW: submit_sm awaiting their response at once (per session).
    delivery_smpp_window: int = 10
    #: LOA_DELIVERY_SMPP_ENQUIRE_LINK_S: keepalive period (an unanswered one drops the session).
    delivery_smpp_enquire_link_s: float = 30.0
    #: LOA_DELIVERY_SMPP_THROTTLE_PAUSE_S: after ESME_RTHROTTLED or ESME_RMSGQFUL, no call to
    #: the SMSC for this long (the endpoint's gate, as a Retry-After).
    delivery_smpp_throttle_pause_s: float = 1.0
    #: LOA_DELIVERY_SMPP_RECONNECT_CAP_S: longest wait between failed binds (exponential).
    delivery_smpp_reconnect_cap_s: float = 30.0
    #: LOA_DELIVERY_SMPP_RECEIPTS: ask for SMSC delivery receipts (binds as transceiver; they
    #: are counted and logged, not tied back to tasks).
    delivery_smpp_receipts: bool = False
    #: LOA_DELIVERY_SMPP_MAX_SEGMENTS: longest SMS in segments; longer text is cut at a word.
    delivery_smpp_max_segments: int = 6
    #: LOA_DELIVERY_PUSH_PROJECT: the FCM project id (``/v1/projects/<id>/messages:send``).
    delivery_push_project: str = ""
    #: LOA_DELIVERY_PUSH_TOKEN_FILE: file whose first line is the push API's OAuth 2 access
    #: token (re-read when the file changes).
    delivery_push_token_file: str = ""
    #: LOA_DELIVERY_PUSH_DEVICE_TOKEN_TEMPLATE: a recipient's device token, ``{recipient_id}``
    #: rendered (the directory holds no device tokens).
    delivery_push_device_token_template: str = "{recipient_id}"

    # -- connection security (librdkafka names; checked by streams.settings.load.check_security) --
    #: LOA_SECURITY_PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (``security.protocol``).
    security_protocol: str = "PLAINTEXT"
    #: LOA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (``sasl.mechanism``).
    sasl_mechanism: str = "SCRAM-SHA-512"
    #: LOA_SASL_USERNAME: SASL user (required with SASL_*).
    sasl_username: str = ""
    #: LOA_SASL_PASSWORD: SASL password (secret; prefer LOA_SASL_PASSWORD_FILE).
    sasl_password: str = ""
    #: LOA_SASL_PASSWORD_FILE: file holding the SASL password (trailing newline ignored).
    sasl_password_file: str = ""
    #: LOA_SSL_CA_LOCATION: PEM file of the CA that signed the brokers' certificates
    #: (``ssl.ca.location``); empty: the system's trust store.
    ssl_ca_location: str = ""
    #: LOA_SSL_CERTIFICATE_LOCATION: client certificate (PEM) for mTLS.
    ssl_certificate_location: str = ""
    #: LOA_SSL_KEY_LOCATION: private key (PEM) of the client certificate.
    ssl_key_location: str = ""
    #: LOA_SSL_KEY_PASSWORD: password of that key, if it is encrypted (secret).
    ssl_key_password: str = ""
    #: LOA_SSL_CHECK_HOSTNAME: the broker certificate must name the host connected to
    #: (``ssl.endpoint.identification.algorithm=https``). Turn off only for experiments.
    ssl_check_hostname: bool = True

    # -- operations (issue 20) --
    #: LOA_RUNBOOK_URL: the runbooks document (``docs/runbooks.md`` where your copy of the
    #: repository is browsable); an alert's runbook is ``<this>#<alert name in lower case>``.
    #: Used in Loa's own messages and by ``deploy/prometheus/build_rules.py``.
    runbook_url: str = RUNBOOK_URL
    #: LOA_ACL_WORKER_PRINCIPAL: the principal (``User:name``) of the workers; ``loa init``
    #: grants it every operation on the topics, consumer groups and transactional ids whose
    #: name starts with ``LOA_TOPIC_PREFIX`` (so ``LOA_APP_ID`` must start with it too), and
    #: idempotent writes (docs/operations.md, ACLs). Empty: not granted. When all three
    #: ``LOA_ACL_*`` are empty, ``loa init`` manages no ACLs and says so.
    acl_worker_principal: str = ""
    #: LOA_ACL_AGENCY_PRINCIPALS: comma-separated ``User:name=AGENCY_ID`` pairs: the principal
    #: an agency publishes with; ``loa init`` lets it write (and describe) the inbound topic and
    #: read that agency's decision topic only (a principal acting for two agencies is named
    #: twice). Empty: none.
    acl_agency_principals: str = ""
    #: LOA_ACL_OPERATOR_PRINCIPAL: the principal (``User:name``) of operators and their
    #: commands (``loa init``, ``loa agencies load``, ``loa deliver``): every operation on the
    #: prefix's topics and groups, the ``<prefix>-deliver`` transactional ids, describing the
    #: cluster and idempotent writes. Empty: not granted.
    acl_operator_principal: str = ""

    @property
    def inbound_topic(self) -> str:
        return f"{self.topic_prefix}.alerts.inbound"

    @property
    def rejected_topic(self) -> str:
        return f"{self.topic_prefix}.alerts.rejected"

    @property
    def accepted_topic(self) -> str:
        return f"{self.topic_prefix}.alerts.accepted"

    @property
    def orders_topic(self) -> str:
        return f"{self.topic_prefix}.fanout.orders"

    @property
    def progress_topic(self) -> str:
        return f"{self.topic_prefix}.fanout.progress"

    @property
    def directory_topic(self) -> str:
        return f"{self.topic_prefix}.directory.changes"

    @property
    def agencies_topic(self) -> str:
        """Compacted agency registry: key = agency id, value = ``schemas/agency.schema.json``."""
        return f"{self.topic_prefix}.agencies"

    @property
    def resolved_agencies_dir(self) -> str:
        """``LOA_AGENCIES_DIR`` or the default agency files shipped with the package
        (``streams/data/agencies``, a link to the repository's ``deploy/agencies``)."""
        from importlib.resources import files

        return self.agencies_dir or str(files("streams") / "data" / "agencies")

    @property
    def console_users_topic(self) -> str:
        """Console users (compacted; key = user name, value = ``streams.console.users``)."""
        return f"{self.topic_prefix}.console.users"

    @property
    def console_drafts_topic(self) -> str:
        """Console drafts (compacted; key = draft id, value = a DraftRecord)."""
        return f"{self.topic_prefix}.console.drafts"

    @property
    def console_audit_topic(self) -> str:
        """Every console action, one JSON record each (``streams.console.audit``)."""
        return f"{self.topic_prefix}.console.audit"

    @property
    def receipts_topic(self) -> str:
        """Delivery receipts from delivery workers (``schemas/receipt.schema.json``)."""
        return f"{self.topic_prefix}.sends.receipts"

    @property
    def delivery_topic(self) -> str:
        """Compacted per-alert delivery tallies of the receipts agent
        (``streams.receipts.fold``)."""
        return f"{self.topic_prefix}.receipts.progress"

    @property
    def census_topic(self) -> str:
        """Directory census (compacted, one partition; key = directory partition number in
        ASCII, value = ``streams.directory.census`` wire form)."""
        return f"{self.topic_prefix}.directory.census"

    @property
    def channels_topic(self) -> str:
        """Channel rate limits (compacted; key = channel, value ``{"rate": tasks/s}``)."""
        return f"{self.topic_prefix}.channels"

    def decisions_topic(self, sender: str) -> str:
        """``<prefix>.decisions.<sender>``: one registered agency's decisions (copies of its
        records on ``accepted`` and ``rejected``), so an ACL can let it read its own and no
        other's. A sender that is not a valid topic name (Kafka allows ``[A-Za-z0-9._-]``, 249
        characters) is spelled with ``_`` for each run of other characters and ``-`` and 8 hex
        digits of its SHA-256, so two senders never share a topic; ``loa agencies topic``
        prints the name."""
        head = f"{self.topic_prefix}.decisions."
        if _TOPIC_NAME.fullmatch(sender) and len(head) + len(sender) <= _TOPIC_MAX:
            return head + sender
        digest = hashlib.sha256(sender.encode()).hexdigest()[:8]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", sender)[: _TOPIC_MAX - len(head) - 9]
        return f"{head}{safe}-{digest}"

    def acl_principal(self, name: str) -> str:
        """``LOA_ACL_WORKER_PRINCIPAL`` (``name="worker"``) or ``LOA_ACL_OPERATOR_PRINCIPAL``
        (``"operator"``), checked: ValueError naming the variable unless empty or ``User:name``."""
        value = str(getattr(self, f"acl_{name}_principal")).strip()
        if value and not PRINCIPAL.fullmatch(value):
            raise ValueError(f"LOA_ACL_{name.upper()}_PRINCIPAL={value!r}: not User:name")
        return value

    @property
    def acl_agencies(self) -> tuple[tuple[str, str], ...]:
        """``LOA_ACL_AGENCY_PRINCIPALS`` as (principal, agency id) pairs in the order given,
        repeats dropped; ValueError naming the variable when a pair is not ``User:name=ID``."""
        pairs: list[tuple[str, str]] = []
        for part in filter(None, (p.strip() for p in self.acl_agency_principals.split(","))):
            principal, _, agency = (s.strip() for s in part.partition("="))
            if not PRINCIPAL.fullmatch(principal) or not agency or any(c.isspace() for c in agency):
                raise ValueError(f"LOA_ACL_AGENCY_PRINCIPALS: {part!r} is not User:name=AGENCY_ID")
            if (principal, agency) not in pairs:
                pairs.append((principal, agency))
        return tuple(pairs)

    def sends_topic(self, priority: str) -> str:
        """``<prefix>.sends.<priority>``: per-recipient send tasks of one priority."""
        return f"{self.topic_prefix}.sends.{priority}"

    # -- delivery retry tiers (streams.delivery) --
    @property
    def retry_tiers(self) -> tuple[float, ...]:
        """``LOA_DELIVERY_RETRY_TIERS_S`` as ascending seconds (ValueError when unusable)."""
        try:
            tiers = tuple(sorted(float(t) for t in self.delivery_retry_tiers_s.split(",")))
        except ValueError:
            raise ValueError("LOA_DELIVERY_RETRY_TIERS_S: comma-separated seconds") from None
        if not tiers or tiers[0] <= 0 or len(set(tiers)) != len(tiers):
            raise ValueError("LOA_DELIVERY_RETRY_TIERS_S: distinct delays > 0 seconds")
        return tiers

    def retry_topic(self, priority: str, tier_s: float) -> str:
        """``<prefix>.sends.retry.<priority>.<delay>``: failed send tasks of one priority
        waiting about ``tier_s`` (a worker serving some priorities reads only theirs)."""
        ms = round(tier_s * 1000)
        delay = f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
        return f"{self.topic_prefix}.sends.retry.{priority}.{delay}"

    @property
    def retry_topics(self) -> list[str]:
        return [
            self.retry_topic(p, t)
            for p in ("extreme", "severe", "routine")
            for t in self.retry_tiers
        ]

    def per_priority_s(self, name: str) -> dict[str, float]:
        """A ``priority=seconds,...`` setting (``delivery_retry_limit_s``,
        ``delivery_fallback_after_s``) for every priority; ValueError when one is missing."""
        raw = str(getattr(self, name))
        out: dict[str, float] = {}
        try:
            for part in raw.split(","):
                priority, _, seconds = part.partition("=")
                out[priority.strip()] = float(seconds)
        except ValueError:
            raise ValueError(f"LOA_{name.upper()}={raw!r}: priority=seconds,...") from None
        wanted = {"extreme", "severe", "routine"}
        if set(out) != wanted or min(out.values()) < 0:
            raise ValueError(f"LOA_{name.upper()}={raw!r}: seconds >= 0 for each of {wanted}")
        return out

    @property
    def resolved_data_dir(self) -> str:
        return self.data_dir or _default_data_dir()

    @property
    def group_instance_id(self) -> str | None:
        """The static membership id (``LOA_INSTANCE_ID``), None for dynamic membership."""
        if self.instance_id.lower() == "none":
            return None
        if self.instance_id:
            return self.instance_id
        digest = hashlib.sha256(self.resolved_data_dir.encode()).hexdigest()[:12]
        return f"{socket.gethostname()}-{digest}"

    def validate(self) -> None:
        if self.partitions < 1:
            raise ValueError("LOA_PARTITIONS must be >= 1")
        if self.emit_batch_bytes < 1024:
            raise ValueError("LOA_EMIT_BATCH_BYTES must be >= 1024")
        if self.fanout_chunk < 1:
            raise ValueError("LOA_FANOUT_CHUNK must be >= 1")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError("LOA_H3_RESOLUTION must be 0..15")
        if self.cap_count < 0 or self.cap_window_s < 0:
            raise ValueError("LOA_CAP_COUNT and LOA_CAP_WINDOW_S must be >= 0 (count 0: no cap)")
        if self.log_format not in ("text", "json"):
            raise ValueError("LOA_LOG_FORMAT must be text or json")
        if not self.snapshot_interval_s >= 0:
            raise ValueError("LOA_SNAPSHOT_INTERVAL_S must be >= 0 (0: no snapshots)")
        if not 0 < self.census_interval_s < math.inf:
            raise ValueError("LOA_CENSUS_INTERVAL_S must be a number of seconds > 0")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("LOA_METRICS_PORT must be 0..65535")
        self._validate_broker_limits()
        if self.shutdown_timeout_s <= 0:
            raise ValueError("LOA_SHUTDOWN_TIMEOUT_S must be > 0")
        if self.replication_factor < 0 or self.min_insync_replicas < 0:
            raise ValueError("LOA_REPLICATION_FACTOR and LOA_MIN_INSYNC_REPLICAS must be >= 0")

        if not 0 <= self.console_port <= 65535:
            raise ValueError("LOA_CONSOLE_PORT must be 0..65535")
        if self.console_session_idle_s <= 0 or self.console_login_window_s <= 0:
            raise ValueError("LOA_CONSOLE_SESSION_IDLE_S and ..._LOGIN_WINDOW_S must be > 0")
        if self.console_login_attempts < 1 or self.console_login_attempts_per_address < 1:
            raise ValueError("LOA_CONSOLE_LOGIN_ATTEMPTS(_PER_ADDRESS) must be >= 1")
        if self.console_tile_url and not self.console_tile_url.startswith("https://"):
            raise ValueError("LOA_CONSOLE_TILE_URL must be an https:// URL (or empty)")
        self._validate_delivery()

    def _validate_delivery(self) -> None:
        self.retry_tiers  # noqa: B018 (raises when unusable)
        self.per_priority_s("delivery_retry_limit_s")
        self.per_priority_s("delivery_fallback_after_s")
        if not 0 < self.delivery_backoff_base_s <= self.delivery_backoff_cap_s:
            raise ValueError("LOA_DELIVERY_BACKOFF_BASE_S must be > 0 and <= ..._CAP_S")
        if self.delivery_max_in_flight < 1 or self.delivery_retry_hold < 1:
            raise ValueError("LOA_DELIVERY_MAX_IN_FLIGHT and LOA_DELIVERY_RETRY_HOLD must be >= 1")
        if self.delivery_breaker_failures < 1 or self.delivery_breaker_cooldown_s <= 0:
            raise ValueError("LOA_DELIVERY_BREAKER_FAILURES >= 1, ..._COOLDOWN_S > 0")
        if self.delivery_max_retry_after_s < 0 or self.delivery_rate_per_endpoint < 0:
            raise ValueError("LOA_DELIVERY_MAX_RETRY_AFTER_S and ..._RATE_PER_ENDPOINT >= 0")
        if not 1 <= self.delivery_http_batch <= 1_000:
            raise ValueError("LOA_DELIVERY_HTTP_BATCH must be 1..1000")
        if not 1 <= self.delivery_smpp_window <= 10_000:
            raise ValueError("LOA_DELIVERY_SMPP_WINDOW must be 1..10000")
        if not 1 <= self.delivery_smpp_max_segments <= 255:
            raise ValueError("LOA_DELIVERY_SMPP_MAX_SEGMENTS must be 1..255")
        if min(self.delivery_smpp_enquire_link_s, self.delivery_smpp_reconnect_cap_s) <= 0:
            raise ValueError("LOA_DELIVERY_SMPP_ENQUIRE_LINK_S and ..._RECONNECT_CAP_S > 0")
        if self.delivery_smpp_throttle_pause_s < 0:
            raise ValueError("LOA_DELIVERY_SMPP_THROTTLE_PAUSE_S must be >= 0")
        for name in ("delivery_smpp_address_template", "delivery_push_device_token_template"):
            try:
                getattr(self, name).format(recipient_id=0)
            except (KeyError, IndexError, ValueError):
                raise ValueError(f"LOA_{name.upper()} may name only {{recipient_id}}") from None

    def _validate_broker_limits(self) -> None:
        """Values the broker or the clients would refuse later, refused at start instead."""
        low, high = SESSION_TIMEOUT_RANGE_S
        if not low <= self.session_timeout_s <= high:
            raise ValueError(
                f"LOA_SESSION_TIMEOUT_S={self.session_timeout_s:g} is outside {low:g}..{high:g} s "
                "(the broker refuses a session below group.min.session.timeout.ms, 6 s)"
            )
        if not 0 < self.metrics_interval_s <= 3600:
            raise ValueError("LOA_METRICS_INTERVAL_S must be > 0 and <= 3600")
        if not 0 < self.directory_catchup_timeout_s < math.inf:
            raise ValueError("LOA_DIRECTORY_CATCHUP_TIMEOUT_S must be a number of seconds > 0")
        if not 0 < self.agencies_catchup_timeout_s < math.inf:
            raise ValueError("LOA_AGENCIES_CATCHUP_TIMEOUT_S must be a number of seconds > 0")
        if not 1 <= self.fanout_parallel <= 1024:
            raise ValueError("LOA_FANOUT_PARALLEL must be 1..1024")
        if not self.runbook_url.startswith(("https://", "http://")):
            raise ValueError(f"LOA_RUNBOOK_URL={self.runbook_url!r}: not an http(s) URL")
