"""The layout's rules, checked from the source: where aiokafka internals and clients may appear."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

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
    for path, tree in _modules():
        if STREAMS / "demo" in path.parents:
            assert not any(n.startswith("streams.cli") for n in _imported(tree)), path


def test_nothing_in_the_data_flow_imports_the_demo_and_its_tools() -> None:
    """The demo, the oracle and the local-process helpers are not in the wheel: only the
    commands may import them (``loa demo``)."""
    offenders = [
        f"{path.relative_to(STREAMS)}: {name}"
        for path, tree in _modules()
        if STREAMS / "demo" not in path.parents and STREAMS / "cli" not in path.parents
        for name in _imported(tree)
        if name == "streams.demo" or name.startswith("streams.demo.")
    ]
    assert offenders == []


def test_no_task_is_created_and_forgotten_anywhere_in_streams() -> None:
    """Every ``create_task``/``ensure_future`` result is kept (assigned, returned, awaited or
    passed on), so its failure is seen; an expression statement drops it."""
    offenders = [
        f"{path.relative_to(STREAMS)}:{node.lineno}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name | ast.Attribute)
        and (node.value.func.id if isinstance(node.value.func, ast.Name) else node.value.func.attr)
        in {"create_task", "ensure_future"}
    ]
    assert offenders == []


# -- the command line ------------------------------------------------------------------------

CLI = STREAMS / "cli"


def test_nothing_in_the_package_imports_the_command_line() -> None:
    """The commands are the top of the import graph: a stage importing them would be a circle."""
    offenders = [
        f"{path.relative_to(STREAMS)}: {name}"
        for path, tree in _modules()
        if CLI not in path.parents and path != STREAMS / "__main__.py"  # python -m streams
        for name in _imported(tree)
        if name == "streams.cli" or name.startswith("streams.cli.")
    ]
    assert offenders == []


def test_every_command_module_is_in_the_command_map_and_every_entry_is_a_command() -> None:
    import click

    from streams.cli.main import COMMANDS, main

    modules = {target.partition(":")[0] for target in COMMANDS.values()}
    shared = {"streams.cli", "streams.cli.main", "streams.cli.kit", "streams.cli.context"}
    on_disk = {f"streams.cli.{p.stem}" for p in CLI.glob("*.py")} - {"streams.cli.__init__"}
    assert on_disk - shared == modules
    ctx = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name, name


def test_commands_import_at_the_top_of_their_module_not_inside_functions() -> None:
    """Thin commands: each module names what it uses at its top (the map loads a module only
    when its command runs, which is what the imports inside functions used to buy)."""
    offenders = [
        f"{path.relative_to(STREAMS)}:{node.lineno}"
        for path in sorted(CLI.glob("*.py"))
        for func in ast.walk(ast.parse(path.read_text()))
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert offenders == []


def test_loa_bench_without_the_benchmarks_names_where_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from streams.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("benchmarks") else real(name, *a),
    )
    result = CliRunner().invoke(main, ["bench", "--sizes", "1e6"])
    assert result.exit_code == 2
    assert "source checkout" in result.output


def test_the_settings_model_does_not_import_its_loader() -> None:
    """``settings.py`` is the frozen model, ``config.py`` reads it from files and the
    environment: the loader imports the model, never the other way (no import circle)."""
    tree = ast.parse((STREAMS / "settings.py").read_text())
    assert not [n for n in _imported(tree) if n.startswith("streams.config")]
