"""The ACLs ``loa init`` grants (issue 20): the pure set, its agreement with cluster.sh, the
``LOA_ACL_*`` settings and the report lines. No broker: tests/cluster/test_acls.py grants them
on the secured cluster, tests/integration/test_init.py meets a broker without an authorizer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli.kit import ExitCode
from streams.kafkaio.acls import AclState, connection_principal
from streams.settings.load import SettingsError, load_settings
from streams.settings.model import Settings
from streams.topics import (
    AclBinding,
    AclOperation,
    PatternType,
    ResourceType,
    acl_bindings,
)

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "deploy" / "kafka" / "cluster.sh"

#: the principals cluster.sh creates and grants
CLUSTER_ENV = {
    "LOA_ACL_WORKER_PRINCIPAL": "User:worker",
    "LOA_ACL_AGENCY_PRINCIPALS": "User:agency=nchmf.gov.vn",
    "LOA_ACL_OPERATOR_PRINCIPAL": "User:operator",
}


def _grant_heredoc(prefix: str, agency: str) -> list[str]:
    """The ACL lines of cluster.sh's ``do_grant``, its ``$p`` and ``$agency`` filled in."""
    text = CLUSTER_SH.read_text()
    body = text[text.index("do_grant() {") :]
    heredoc = re.search(r"add_acls <<EOF\n(.*?)\nEOF\n", body, re.S)
    assert heredoc is not None, "cluster.sh's do_grant no longer feeds add_acls a heredoc"
    return [
        line.replace("$p", prefix).replace("$agency", agency)
        for line in heredoc.group(1).splitlines()
    ]


@pytest.mark.parametrize("prefix", ["loa", "acl-3f9c.x"])
def test_loa_init_grants_exactly_what_cluster_sh_grant_adds(prefix: str) -> None:
    settings = load_settings({**CLUSTER_ENV, "LOA_TOPIC_PREFIX": prefix})
    assert [b.line() for b in acl_bindings(settings)] == _grant_heredoc(prefix, "nchmf.gov.vn")


def test_no_principal_set_means_no_acls_and_the_report_says_not_managed() -> None:
    settings = load_settings({})
    assert acl_bindings(settings) == []
    state = AclState("unmanaged", connection_principal(settings))
    assert state.lines() == [
        "acls: not managed (no LOA_ACL_* principal set; docs/operations.md: ACLs)"
    ]


def test_each_principal_is_granted_only_its_own_part() -> None:
    worker = acl_bindings(load_settings({"LOA_ACL_WORKER_PRINCIPAL": "User:w"}))
    assert {b.principal for b in worker} == {"User:w"} and len(worker) == 4
    operator = acl_bindings(load_settings({"LOA_ACL_OPERATOR_PRINCIPAL": "User:o"}))
    assert {b.principal for b in operator} == {"User:o"} and len(operator) == 5
    assert (
        AclBinding(
            "User:o",
            AclOperation.ALL,
            ResourceType.TRANSACTIONAL_ID,
            "loa-deliver",
            PatternType.PREFIXED,
        )
        in operator
    )


def test_each_agency_reads_only_its_own_decision_topic_and_a_shared_principal_gets_both() -> None:
    settings = load_settings(
        {"LOA_ACL_AGENCY_PRINCIPALS": "User:a=nchmf.gov.vn, User:b=hanoi.gov.vn,User:a=x.vn"}
    )
    reads = {(b.principal, b.name) for b in acl_bindings(settings) if b.operation == "READ"}
    assert reads == {
        ("User:a", "loa.decisions.nchmf.gov.vn"),
        ("User:b", "loa.decisions.hanoi.gov.vn"),
        ("User:a", "loa.decisions.x.vn"),
    }
    bindings = acl_bindings(settings)
    assert len(bindings) == len(set(bindings)) == 4 + 4 + 1  # User:a: write ACLs once, 2 reads


def test_an_agency_id_that_is_no_topic_name_is_granted_its_hashed_decision_topic() -> None:
    settings = load_settings({"LOA_ACL_AGENCY_PRINCIPALS": "User:a=sở-y-tế/hà-nội"})
    [read] = [b for b in acl_bindings(settings) if b.operation == "READ"]
    assert read.name == settings.decisions_topic("sở-y-tế/hà-nội") != "loa.decisions.sở-y-tế/hà-nội"


def test_one_principal_in_two_roles_gets_each_acl_once() -> None:
    settings = load_settings(
        {"LOA_ACL_WORKER_PRINCIPAL": "User:loa", "LOA_ACL_OPERATOR_PRINCIPAL": "User:loa"}
    )
    bindings = acl_bindings(settings)
    assert len(bindings) == len(set(bindings))
    idempotent = [b for b in bindings if b.operation == "IDEMPOTENT_WRITE"]
    assert len(idempotent) == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOA_ACL_WORKER_PRINCIPAL", "worker"),
        ("LOA_ACL_WORKER_PRINCIPAL", "User:"),
        ("LOA_ACL_OPERATOR_PRINCIPAL", "user:operator"),
        ("LOA_ACL_OPERATOR_PRINCIPAL", "User:op erator"),
        ("LOA_ACL_AGENCY_PRINCIPALS", "User:agency"),
        ("LOA_ACL_AGENCY_PRINCIPALS", "agency=nchmf.gov.vn"),
        ("LOA_ACL_AGENCY_PRINCIPALS", "User:agency="),
        ("LOA_ACL_AGENCY_PRINCIPALS", "User:agency=nchmf.gov.vn,User:b"),
    ],
)
def test_a_principal_not_of_the_form_user_name_is_a_settings_error(
    variable: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=variable) as caught:
        load_settings({variable: value})
    assert "User:<name>" in str(caught.value)


def test_blank_principals_are_not_managed_and_blanks_around_pairs_are_ignored() -> None:
    settings = load_settings(
        {"LOA_ACL_WORKER_PRINCIPAL": "", "LOA_ACL_AGENCY_PRINCIPALS": " User:a = n.vn , "}
    )
    assert settings.acl_agencies == (("User:a", "n.vn"),)
    assert settings.acl_principal("worker") == ""


def test_loa_init_with_a_bad_principal_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOA_ACL_WORKER_PRINCIPAL": "worker"}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "LOA_ACL_WORKER_PRINCIPAL='worker': not User:name" in done.stderr


def _binding(n: int) -> AclBinding:
    return AclBinding(
        f"User:u{n}", AclOperation.ALL, ResourceType.TOPIC, "loa", PatternType.PREFIXED
    )


def test_report_lines_name_each_acl_created_and_the_counts() -> None:
    state = AclState("done", "User:admin", created=(_binding(1),), present=(_binding(2),))
    assert state.lines() == [
        "acls: 1 created, 1 present",
        "  created: User:u1 ALL TOPIC loa PREFIXED",
    ]
    again = AclState("done", "User:admin", present=(_binding(1), _binding(2)))
    assert again.lines() == ["acls: 0 created, 2 present"]


def test_where_the_principal_may_not_the_report_says_so_and_names_what_is_missing() -> None:
    denied = AclState(
        "may-not-alter", "User:operator", present=(_binding(2),), missing=(_binding(1),)
    )
    head, *rest = denied.lines()
    assert head.startswith("acls: User:operator may not alter ACLs; run deploy/kafka/cluster.sh")
    assert "(1 missing, 1 present)" in head
    assert rest == ["  missing: User:u1 ALL TOPIC loa PREFIXED"]
    blind = AclState("may-not-describe", "User:agency", missing=(_binding(1),))
    assert blind.lines()[0].startswith("acls: User:agency may not describe ACLs; run ")
    assert AclState("no-authorizer", "User:ANONYMOUS").lines() == [
        "acls: the broker has no authorizer (no ACL is enforced; none created)"
    ]


def test_the_connection_principal_is_the_sasl_user_or_anonymous() -> None:
    assert connection_principal(Settings()) == "User:ANONYMOUS"
    sasl = Settings(security_protocol="SASL_SSL", sasl_username="operator", sasl_password="x")
    assert connection_principal(sasl) == "User:operator"
