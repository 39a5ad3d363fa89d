"""``loa bench``: the benchmarks of a source checkout (they are not in the wheel)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import click

import streams

#: The source checkout ``streams`` was installed from in editable mode (``make setup``), if any:
#: its ``benchmarks/`` is importable from there even when the current directory is elsewhere.
_CHECKOUT = Path(streams.__file__).resolve().parents[1]


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Benchmarks by the broker's clock, next to peers (``loa bench --help``).

    The benchmarks (and their peers, Go provider and plots) live in ``benchmarks/`` of a
    source checkout, with the ``bench`` extra installed: an installed wheel has only the
    ``streams`` package, and says so (exit 2) instead of failing on an import."""
    if (_CHECKOUT / "benchmarks" / "run.py").is_file() and str(_CHECKOUT) not in sys.path:
        sys.path.insert(0, str(_CHECKOUT))
    try:
        present = importlib.util.find_spec("benchmarks.run") is not None
    except ModuleNotFoundError:  # no ``benchmarks`` package at all
        present = False
    if not present:
        raise click.UsageError(
            "loa bench runs the benchmarks of a source checkout (benchmarks/ is not in the "
            "wheel): clone the repository, `make setup` (installs the bench extra), then "
            "`loa bench` or `make bench` there"
        )
    run = importlib.import_module("benchmarks.run")
    raise SystemExit(run.cli(list(args)))
