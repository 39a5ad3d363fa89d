"""The layout's rules, checked from the source: where aiokafka internals and clients may appear."""

from __future__ import annotations

import ast
from pathlib import Path

STREAMS = Path(__file__).resolve().parents[2] / "streams"
KAFKAIO = STREAMS / "kafkaio"
_PRIVATE_MODULES = ("aiokafka.client", "aiokafka.protocol", "aiokafka.record", "aiokafka.codec")
_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(STREAMS.rglob("*.py"))]


def _imported(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_aiokafka_internals_are_imported_only_by_kafkaio_internals() -> None:
    offenders = [
        f"{path.relative_to(STREAMS)}: {name}"
        for path, tree in _modules()
        if path != KAFKAIO / "internals.py"
        for name in _imported(tree)
        if name.startswith(_PRIVATE_MODULES) or name == "aiokafka.codec"
    ]
    assert offenders == []


def test_kafka_clients_are_constructed_only_in_kafkaio() -> None:
    offenders = [
        f"{path.relative_to(STREAMS)}:{node.lineno}"
        for path, tree in _modules()
        if KAFKAIO not in path.parents
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in _CLIENTS
    ]
    assert offenders == []


def test_no_private_attribute_of_a_kafka_client_is_read_outside_kafkaio() -> None:
    offenders = [
        f"{path.relative_to(STREAMS)}:{node.lineno}"
        for path, tree in _modules()
        if KAFKAIO not in path.parents
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"_txn_manager", "_client", "_sender"}
    ]
    assert offenders == []


def test_demo_does_not_import_the_cli_so_there_is_no_import_circle() -> None:
    trees = dict(_modules())
    assert not any(n.startswith("streams.cli") for n in _imported(trees[STREAMS / "demo.py"]))
