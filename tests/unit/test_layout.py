"""The layout's rules, checked from the source: where aiokafka internals and clients may appear."""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

import pytest

STREAMS = Path(__file__).resolve().parents[2] / "streams"
KAFKAIO = STREAMS / "kafkaio"
_PRIVATE_MODULES = ("aiokafka.client", "aiokafka.protocol", "aiokafka.record", "aiokafka.codec")
_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}


@functools.cache
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
    tree = ast.parse((STREAMS / "settings" / "model.py").read_text())
    assert not [n for n in _imported(tree) if n.startswith("streams.settings.load")]


# -- one way to own a partition (streams.kafkaio.ownership) ----------------------------------------

#: The partition owners the rules below must find (so they never pass on an empty set).
_OWNERS = {"DirectoryService", "FanoutPartitions", "ReceiptsAgent"}
#: Per owner, the methods that claim a partition: only ``restore`` may reach them.
_CLAIMS = {"DirectoryService": {"restore", "_set_owned", "_set_owned_raw"}}
#: The ownership mechanism itself, and the one module that calls an owner's ``restore``.
_OWNERSHIP = STREAMS / "kafkaio" / "ownership.py"


def _owner_classes() -> list[tuple[Path, ast.ClassDef]]:
    """Every class with both ``restore`` and ``revoke`` methods: a :class:`PartitionOwner`."""
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and path != _OWNERSHIP:
                methods = {f.name for f in node.body if isinstance(f, ast.AsyncFunctionDef)}
                if {"restore", "revoke"} <= methods:
                    found.append((path, node))
    return found


def _methods(cls: ast.ClassDef) -> dict[str, ast.AsyncFunctionDef | ast.FunctionDef]:
    return {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}


def _self_calls(fn: ast.AST) -> set[str]:
    return {
        node.func.attr
        for node in ast.walk(fn)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
    }


def test_every_stateful_part_is_found_as_a_partition_owner() -> None:
    assert {cls.name for _, cls in _owner_classes()} >= _OWNERS


def test_a_partition_owner_has_no_assign_or_ensure_of_its_own() -> None:
    """Ownership hands partitions out (restore, revoke); a part offers no other way in."""
    offenders = [
        f"{path.relative_to(STREAMS)}: {cls.name}.{name}"
        for path, cls in _owner_classes()
        for name in _methods(cls)
        if name == "assign" or name.startswith(("_assign", "ensure", "_ensure"))
    ]
    assert offenders == []


def test_no_read_path_of_a_partition_owner_can_claim_a_partition() -> None:
    """From no method but ``restore`` (and ``revoke``, which only drops) does a chain of
    ``self.`` calls reach ``restore`` or the part's claim: a read waits or says not ready."""
    offenders = []
    for path, cls in _owner_classes():
        methods = _methods(cls)
        claims = _CLAIMS.get(cls.name, {"restore"})
        for name in set(methods) - {"restore", "revoke"} - claims:
            reached, todo = set(), [name]
            while todo:
                for called in _self_calls(methods[todo.pop()]) & set(methods):
                    if called not in reached and called not in {"restore", "revoke"}:
                        todo.append(called)
                    reached.add(called)
            if reached & claims:
                offenders.append(f"{path.relative_to(STREAMS)}: {cls.name}.{name}")
    assert offenders == []


def test_only_ownership_calls_a_restore() -> None:
    offenders = [
        f"{path.relative_to(STREAMS)}:{node.lineno}"
        for path, tree in _modules()
        if path != _OWNERSHIP
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"restore", "_restore"}
    ]
    assert offenders == []


# -- one retry policy (streams.retrying) ----------------------------------------------------------

_RETRYING = STREAMS / "retrying.py"
#: Loops that meet an error and sleep, but are not retries, each with the reason.
_NOT_RETRY_LOOPS = {
    "metrics.py: LagSampler._run": "a periodic sampler: a failed sample is not tried again, "
    "the next interval samples afresh",
}
#: Folders left to their own retry rules, with the reason.
_OWN_RETRIES = {
    STREAMS / "delivery": "durable retries of send tasks on retry-tier topics, never in place "
    "(streams.delivery.retry); being changed on its own branch",
}


def _loops_with_their_functions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """``(Class.function, loop)`` for every ``for``/``while`` loop in ``tree``."""
    found: list[tuple[str, ast.AST]] = []

    def visit(node: ast.AST, where: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, [*where, child.name])
                continue
            if isinstance(child, ast.For | ast.AsyncFor | ast.While):
                found.append((".".join(where), child))
            visit(child, where)

    visit(tree, [])
    return found


def _sleeps(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "sleep")
            or (isinstance(n.func, ast.Name) and n.func.id == "sleep")
        )
        for n in ast.walk(node)
    )


def test_no_retry_loop_is_written_by_hand() -> None:
    """A loop that catches an error and sleeps is a retry: it goes through
    :class:`streams.retrying.RetryPolicy` (one back-off, one classification, one deadline)."""
    offenders = [
        f"{path.relative_to(STREAMS)}: {where}"
        for path, tree in _modules()
        if path != _RETRYING and not any(folder in path.parents for folder in _OWN_RETRIES)
        for where, loop in _loops_with_their_functions(tree)
        if any(isinstance(n, ast.ExceptHandler) for n in ast.walk(loop))
        and _sleeps(loop)
        and f"{path.relative_to(STREAMS)}: {where}" not in _NOT_RETRY_LOOPS
    ]
    assert offenders == []


def test_the_allowed_loops_still_exist() -> None:
    """An allow-list entry whose loop is gone must go too (it would hide a new loop there)."""
    present = {
        f"{path.relative_to(STREAMS)}: {where}"
        for path, tree in _modules()
        for where, _ in _loops_with_their_functions(tree)
    }
    assert set(_NOT_RETRY_LOOPS) <= present


def test_errors_are_told_apart_by_type_never_by_class_name() -> None:
    """No comparison with ``type(x).__name__`` or ``x.__class__.__name__`` (a renamed or
    re-exported class would silently change the routing)."""

    def by_name(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "__name__"

    offenders = [
        f"{path.relative_to(STREAMS)}:{node.lineno}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare) and any(by_name(n) for n in [node.left, *node.comparators])
    ]
    assert offenders == []


def test_no_class_of_the_fan_out_is_over_250_lines() -> None:
    """The fan-out is split along its concerns: owned partitions (restore, fencing), the chunk
    loop, the emitter (issue 21). The rest of ``streams/`` follows when it is split too."""
    offenders = [
        f"{path.relative_to(STREAMS)}: {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in _modules()
        if STREAMS / "fanout" in path.parents
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 250
    ]
    assert offenders == []


#: package -> the packages that may import it (the layers above it)
_IMPORTED_ONLY_BY = {
    "runtime": {"cli", "demo"},
    "agency": {"cli", "demo", "gateway", "console"},
}


@pytest.mark.parametrize("package", sorted(_IMPORTED_ONLY_BY))
def test_the_upper_layers_are_imported_only_from_above(package: str) -> None:
    """The process wiring (runtime/) and the agency's side (agency/) sit above the stages: a
    stage importing them would turn the data flow into a circle."""
    allowed = {STREAMS / name for name in _IMPORTED_ONLY_BY[package]} | {STREAMS / package}
    offenders = [
        f"{path.relative_to(STREAMS)}: {name}"
        for path, tree in _modules()
        if not any(root in path.parents for root in allowed)
        for name in _imported(tree)
        if name.startswith(f"streams.{package}.") or name == f"streams.{package}"
    ]
    assert offenders == []


# -- sizes: a class or function that grows past these says why in its docstring ------------

_CLASS_LINES = 250
_FUNCTION_LINES = 60
_REASON = "Why this long"


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end (the signature and the
    docstring do not count)."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return (node.end_lineno or node.lineno) - body[0].lineno + 1


def test_no_class_or_function_is_long_without_saying_why() -> None:
    offenders = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                limit = _CLASS_LINES
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines, limit = _body_lines(node), _FUNCTION_LINES
            else:
                continue
            if lines > limit and _REASON not in (ast.get_docstring(node) or ""):
                offenders.append(f"{path.relative_to(STREAMS)}: {node.name} ({lines} lines)")
    assert offenders == []


def test_every_package_says_what_lives_there_and_what_it_may_import() -> None:
    missing = [
        str(init.relative_to(STREAMS))
        for init in sorted(STREAMS.glob("*/__init__.py"))
        if "import" not in (ast.get_docstring(ast.parse(init.read_text())) or "")
    ]
    assert missing == []
