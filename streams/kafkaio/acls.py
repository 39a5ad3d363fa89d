"""The ACLs of Loa's principals on the cluster: read them, add the missing ones (``loa init``).

Where it sits: under :mod:`streams.runtime.bootstrap`, after the topics. The set wanted is pure
(:func:`streams.topics.acl_bindings`, from the ``LOA_ACL_*`` settings); this module compares it
with what the broker holds and creates the difference. aiokafka's admin client has no ACL
methods, so it sends DescribeAcls and CreateAcls with aiokafka's own protocol request classes
over ``AIOKafkaClient.send`` (both reached through :mod:`streams.kafkaio.internals`), on the
connection options every Loa client gets.

Guarantee: only the ALLOW bindings wanted are created, each only when the broker holds none
exactly like it (same principal, operation, resource, pattern type, any host); nothing is
deleted or changed, so a second run creates nothing. A broader grant already on the cluster
(``loa`` PREFIXED covering ``loa-x`` PREFIXED) does not count as present: the binding is
created anyway, harmlessly. Where this principal may not describe or create ACLs, or the
broker has no authorizer, the outcome says so and nothing is raised: the rest of ``loa init``
stands (docs/operations.md, ACLs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.errors import ClusterAuthorizationFailedError, SecurityDisabled, for_code

from streams.kafkaio.clients import make_protocol_client
from streams.kafkaio.internals import CreateAclsRequest, DescribeAclsRequest
from streams.settings.model import Settings
from streams.topics import AclBinding, AclOperation, PatternType, ResourceType

__all__ = ["AclState", "AclStatus", "connection_principal", "ensure_acls"]

# Kafka's wire codes (org.apache.kafka.common.acl / resource enums)
_ANY = 1
_ALLOW = 3
_OPERATIONS = {
    AclOperation.ALL: 2,
    AclOperation.READ: 3,
    AclOperation.WRITE: 4,
    AclOperation.DESCRIBE: 8,
    AclOperation.IDEMPOTENT_WRITE: 12,
}
_RESOURCES = {
    ResourceType.TOPIC: 2,
    ResourceType.GROUP: 3,
    ResourceType.CLUSTER: 4,
    ResourceType.TRANSACTIONAL_ID: 5,
}
_PATTERNS = {PatternType.LITERAL: 3, PatternType.PREFIXED: 4}

#: What to do where this principal may not: the one remedy both messages name.
REMEDY = "run deploy/kafka/cluster.sh grant or ask the cluster admin"

#: unmanaged: no ``LOA_ACL_*`` principal set; no-authorizer: the broker enforces no ACLs;
#: may-not-describe / may-not-alter: this principal lacks DESCRIBE / ALTER on the cluster;
#: done: every wanted binding is present or was created now.
AclStatus = Literal["unmanaged", "no-authorizer", "may-not-describe", "may-not-alter", "done"]


@dataclass(frozen=True, slots=True)
class AclState:
    """What ``loa init`` found and did about ACLs."""

    #: see :data:`AclStatus`
    status: AclStatus
    #: this connection's principal, as messages name it
    principal: str
    #: bindings this run created
    created: tuple[AclBinding, ...] = ()
    #: wanted bindings the broker already held
    present: tuple[AclBinding, ...] = ()
    #: wanted bindings neither present nor created (may-not-describe: all of them, unknown)
    missing: tuple[AclBinding, ...] = ()

    def lines(self) -> list[str]:
        """The report's ``acls:`` line, then one line per binding created (or missing)."""
        if self.status == "unmanaged":
            return ["acls: not managed (no LOA_ACL_* principal set; docs/operations.md: ACLs)"]
        if self.status == "no-authorizer":
            return ["acls: the broker has no authorizer (no ACL is enforced; none created)"]
        if self.status == "may-not-describe":
            head = f"acls: {self.principal} may not describe ACLs; {REMEDY}"
            return [f"{head} ({len(self.missing)} wanted)", *_each("wanted", self.missing)]
        if self.status == "may-not-alter":
            head = f"acls: {self.principal} may not alter ACLs; {REMEDY}"
            counts = f"{len(self.missing)} missing, {len(self.present)} present"
            counts += f", {len(self.created)} created" if self.created else ""
            lines = [f"{head} ({counts})", *_each("created", self.created)]
            return lines + _each("missing", self.missing)
        out = [f"acls: {len(self.created)} created, {len(self.present)} present"]
        return out + _each("created", self.created)


def _each(what: str, bindings: Iterable[AclBinding]) -> list[str]:
    return [f"  {what}: {b.line()}" for b in bindings]


def connection_principal(settings: Settings) -> str:
    """The principal this process connects as, for messages: ``User:<LOA_SASL_USERNAME>``
    with SASL; with mTLS the broker maps the certificate's name by its own rules."""
    if settings.security_protocol.startswith("SASL_"):
        return f"User:{settings.sasl_username}"
    if settings.ssl_certificate_location:
        return "the principal of LOA_SSL_CERTIFICATE_LOCATION"
    return "User:ANONYMOUS"


async def ensure_acls(settings: Settings, wanted: Sequence[AclBinding]) -> AclState:
    """Create those of ``wanted`` the broker does not hold; what was found and done. Raises
    only what is not about this principal's rights (unreachable broker, an invalid binding)."""
    who = connection_principal(settings)
    if not wanted:
        return AclState("unmanaged", who)
    client = _client(settings)
    try:
        await client.bootstrap()
        node = client.get_random_node()
        existing = await _describe(client, node)
        if not isinstance(existing, set):
            unknown = tuple(wanted) if existing == "may-not-describe" else ()
            return AclState(existing, who, missing=unknown)
        present = tuple(b for b in wanted if b in existing)
        created: list[AclBinding] = []
        for binding in (b for b in wanted if b not in existing):
            if not await _create(client, node, binding):
                missing = tuple(b for b in wanted if b not in existing and b not in created)
                return AclState("may-not-alter", who, tuple(created), present, missing)
            created.append(binding)
        return AclState("done", who, tuple(created), present)
    finally:
        await client.close()


def _client(settings: Settings) -> Any:
    if DescribeAclsRequest is None or CreateAclsRequest is None:
        raise RuntimeError("this aiokafka release has no ACL request classes (loa init: ACLs)")
    return make_protocol_client(settings, f"{settings.app_id}-acls")


async def _describe(
    client: Any, node: int
) -> set[AclBinding] | Literal["no-authorizer", "may-not-describe"]:
    """The broker's bindings (any principal, any resource), or why there are none to read."""
    request = DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY)
    response = await client.send(node, request)
    if response.error_code:
        error = for_code(response.error_code)
        if error is SecurityDisabled:
            return "no-authorizer"
        if error is ClusterAuthorizationFailedError:
            return "may-not-describe"
        raise error(response.error_message or "DescribeAcls refused")
    return set(_decoded(response.resources))


def _decoded(resources: Iterable[Any]) -> Iterable[AclBinding]:
    """The ALLOW, any-host bindings of a DescribeAcls response that Loa could have made."""
    resource_of = {code: kind for kind, code in _RESOURCES.items()}
    pattern_of = {code: kind for kind, code in _PATTERNS.items()}
    operation_of = {code: op for op, code in _OPERATIONS.items()}
    for resource_type, name, pattern, acls in resources:
        kind, pat = resource_of.get(resource_type), pattern_of.get(pattern)
        if kind is None or pat is None:
            continue
        for principal, host, operation, permission in acls:
            op = operation_of.get(operation)
            if op is not None and host == "*" and permission == _ALLOW:
                yield AclBinding(principal, op, kind, name, pat)


async def _create(client: Any, node: int, binding: AclBinding) -> bool:
    """Create one binding: True when the broker did, False where this principal may not."""
    request = CreateAclsRequest(
        _RESOURCES[binding.resource_type],
        binding.name,
        _PATTERNS[binding.pattern],
        binding.principal,
        "*",
        _OPERATIONS[binding.operation],
        _ALLOW,
    )
    response = await client.send(node, request)
    ((code, message),) = response.creation_responses
    if not code:
        return True
    if for_code(code) is ClusterAuthorizationFailedError:
        return False
    raise for_code(code)(f"{binding.line()}: {message or 'CreateAcls refused'}")
