"""``make mutation``: mutation score of the safety-critical pure modules (mutmut, unit tests).

Usage: ``python -m tests.tools.mutation [MODULE ...]`` with MODULE among the keys of :data:`TARGETS`
(default: all). Runs ``mutmut run`` over the mutants of those modules (``MUTATION_CHILDREN``
processes, default 2), reads ``mutmut results``, discounts the mutants listed as
equivalent in ``tests/tools/mutation-equivalents.md`` and prints the score per module and in total.
Exits 1 when the total is under :data:`THRESHOLD` or a listed equivalent no longer exists.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTMUT = [sys.executable, "-m", "tests.tools.mutation", "--mutmut"]
EQUIVALENTS = ROOT / "tests" / "tools" / "mutation-equivalents.md"
THRESHOLD = 0.90

#: Module -> mutmut name patterns (``x_<function>`` / ``xǁ<Class>ǁ<method>``) of its pure core.
TARGETS: dict[str, tuple[str, ...]] = {
    "ingest.core": ("streams.ingest.core.*",),
    "ingest.lifecycle": ("streams.ingest.lifecycle.*",),
    "ingest.agencies": (
        "streams.ingest.agencies.xǁAgencyǁ*",
        "streams.ingest.agencies.x_identify*",
        "streams.ingest.agencies.x_parse_agency*",
        "streams.ingest.signatures.x_verify*",
        "streams.ingest.signatures.x_read_credentials*",
        "streams.ingest.signatures.x__header_text*",
        "streams.ingest.signatures.x__decode_signature*",
        "streams.ingest.authority.x_authorize*",
    ),
    "regions": ("streams.regions.*",),
    "fanout.plan": ("streams.fanout.plan.*",),
    "fanout.throttle": ("streams.fanout.throttle.*",),
    "receipts.fold": (
        "streams.receipts.fold.x_parse_receipt*",
        "streams.receipts.fold.xǁTallyǁ*",
        "streams.receipts.fold.xǁPartitionTalliesǁ*",
        "streams.receipts.fold.x_tally_key*",
    ),
    # who receives what: the test-only, opt-out and location filters of the directory
    "directory": (
        "streams.directory.index.xǁDirectoryPartitionǁrows*",
        "streams.directory.index.xǁDirectoryPartitionǁselect*",
        "streams.directory.index.xǁDirectoryPartitionǁtake*",
        "streams.directory.index.x_category_mask*",
        "streams.directory.index.x_fallback_code*",
        "streams.directory.cells.xǁCellSetǁ*",
        "streams.directory.cells.x_to_resolution*",
        "streams.directory.cells.x_cell_resolution*",
        "streams.directory.cells.x_is_cell*",
        "streams.directory.cells.x_parse_cell*",
        "streams.directory.cells.x__unused_digits*",
    ),
    # stop on Cancel or expiry
    "app": ("streams.runtime.app.x_stop_reason*",),
    # the throttle's share and its wait (the rest of the scheduler is Kafka I/O)
    "fanout.scheduler": (
        "streams.fanout.scheduler.xǁFanoutSchedulerǁ_throttle_limit*",
        "streams.fanout.scheduler.xǁFanoutSchedulerǁ_wait_throttle*",
    ),
    # transient or poison, and the back-off (the scheduler's classifier moved here)
    "retrying": ("streams.retrying.x_classify*", "streams.retrying.x_backoff_s*"),
    "records": ("streams.records.x_priority_of*", "streams.records.x_most_urgent*"),
    "ingest.xmldsig": ("streams.ingest.xmldsig.*",),
    "ingest.cap": ("streams.ingest.cap.*",),
    "ingest.json_alert": ("streams.ingest.json_alert.*",),
}
KILLED = {"killed", "timeout"}
UNCHECKED = {"not checked", "check was interrupted by user"}
_RESULT = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")
_EQUIVALENT = re.compile(r"^- `(\S+__mutmut_\d+)`")


def equivalents() -> set[str]:
    lines = EQUIVALENTS.read_text(encoding="utf-8").splitlines() if EQUIVALENTS.exists() else []
    return {m.group(1) for line in lines if (m := _EQUIVALENT.match(line))}


def results() -> dict[str, str]:
    out = subprocess.run(
        [*MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return {
        m.group(1): m.group(2).strip() for line in out.splitlines() if (m := _RESULT.match(line))
    }


def in_module(name: str, module: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in TARGETS[module])


def main(argv: list[str]) -> int:
    modules = argv or list(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        print(f"unknown module {unknown}; choose from {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    env = {**os.environ, "HYPOTHESIS_PROFILE": "mutation"}
    children = os.environ.get("MUTATION_CHILDREN", "2")
    patterns = [p for module in modules for p in TARGETS[module]]
    print(f"== mutmut: {', '.join(modules)}", flush=True)
    subprocess.run(
        [*MUTMUT, "run", "--max-children", children, *patterns], cwd=ROOT, env=env, check=True
    )
    status = results()
    equivalent = equivalents()
    stale = sorted(e for e in equivalent if e not in status)
    total: Counter[str] = Counter()
    print(f"\n{'module':<18} {'mutants':>7} {'killed':>7} {'equiv.':>7} {'unrun':>7} {'score':>7}")
    for module in modules:
        names = [n for n in status if in_module(n, module)]
        counts = Counter(_kind(n, status[n], equivalent) for n in names)
        total.update(counts)
        print(_row(module, counts))
        for n in sorted(n for n in names if _kind(n, status[n], equivalent) == "alive"):
            print(f"    {status[n]:<10} {n}")
    print(_row("total", total))
    if stale:
        print(f"listed as equivalent but not generated any more: {stale}")
    score = _score(total)
    print(f"mutation score {score:.1%} (threshold {THRESHOLD:.0%})")
    if total["unchecked"]:
        print(f"{total['unchecked']} mutants not run yet: the score is partial")
    return 0 if score >= THRESHOLD and not stale and not total["unchecked"] else 1


def _kind(name: str, status: str, equivalent: set[str]) -> str:
    if status in UNCHECKED:  # an interrupted run: neither killed nor alive
        return "unchecked"
    if name in equivalent:
        return "equivalent"
    return "killed" if status in KILLED else "alive"


def _score(c: Counter[str]) -> float:
    live = c["killed"] + c["alive"]
    return c["killed"] / live if live else 1.0


def _row(name: str, c: Counter[str]) -> str:
    n = sum(c.values())
    row = f"{name:<18} {n:>7} {c['killed']:>7} {c['equivalent']:>7} {c['unchecked']:>7}"
    return f"{row} {_score(c):>7.1%}"


def mutmut(argv: list[str]) -> None:
    """mutmut's CLI, except that methods of decorated classes are mutated too: mutmut 3.4 skips
    every decorated class, and Loa's policy lives in ``@dataclass`` methods."""
    import libcst as cst
    from mutmut import file_mutation
    from mutmut.__main__ import cli

    visitor = file_mutation.MutationVisitor
    skip = visitor._skip_node_and_children

    def skip_but_classes(self: object, node: cst.CSTNode) -> bool:
        return False if isinstance(node, cst.ClassDef) else bool(skip(self, node))

    visitor._skip_node_and_children = skip_but_classes  # type: ignore[method-assign]
    # this process imported `tests` from the worktree; mutmut's in-process pytest collects the
    # copy under mutants/ (mutmut sets this for its stats run, not for its test listing)
    os.environ["PY_IGNORE_IMPORTMISMATCH"] = "1"
    cli(argv, prog_name="mutmut")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--mutmut"]:
        mutmut(sys.argv[2:])
    else:
        sys.exit(main(sys.argv[1:]))
