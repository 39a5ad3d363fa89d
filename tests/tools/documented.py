"""The documented examples: every sample file and every alert example in the docs, with the
outcome its document states (shared by the unit and the integration test of them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Tables with one row per file: ``| `file` | `ingest outcome` | `preview outcome` | why |``.
SAMPLE_TABLES = (
    ROOT / "deploy" / "samples" / "README.md",
    ROOT / "tests" / "data" / "cap" / "README.md",
)
#: Documents whose fenced alert examples carry ``<!-- example ingest="..." preview="..." -->``.
EXAMPLE_DOCS = (ROOT / "docs" / "alerts.md", ROOT / "schemas" / "cap" / "README.md")
#: Every file that is a sample alert (the tables must list exactly these).
SAMPLE_GLOBS = (
    (ROOT / "deploy" / "samples", "*.json"),
    (ROOT / "tests" / "data" / "cap", "*.xml"),
    (ROOT / "tests" / "data" / "cap", "hostile/*"),
)

_ROW = re.compile(r"^\| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|", re.MULTILINE)
_EXAMPLE = re.compile(
    r'<!-- example ingest="([^"]+)" preview="([^"]+)" -->\n```(?:json|xml)\n(.*?)\n```', re.DOTALL
)
_FENCE = re.compile(r"```(json|xml)\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    raw: bytes
    ingest: str
    preview: str
    #: The sample file, or None for an example written in a document.
    path: Path | None = None


def sample_files() -> set[Path]:
    return {p for folder, glob in SAMPLE_GLOBS for p in folder.glob(glob) if p.name != "README.md"}


def examples() -> list[Example]:
    """Every sample file (from its folder's table) and every marked example of the docs."""
    found: list[Example] = []
    for table in SAMPLE_TABLES:
        for name, ingest, preview in _ROW.findall(table.read_text(encoding="utf-8")):
            path = table.parent / name
            name = str(path.relative_to(ROOT))
            found.append(Example(name, path.read_bytes(), ingest, preview, path))
    for doc in EXAMPLE_DOCS:
        text = doc.read_text(encoding="utf-8")
        for n, (ingest, preview, body) in enumerate(_EXAMPLE.findall(text), 1):
            name = f"{doc.relative_to(ROOT)} example {n}"
            found.append(Example(name, body.encode(), ingest, preview))
    return found


def unmarked_alert_examples() -> list[str]:
    """Fenced JSON/XML blocks of the docs that look like alerts but state no outcome."""
    missing: list[str] = []
    for doc in EXAMPLE_DOCS:
        text = doc.read_text(encoding="utf-8")
        marked = {body for _, _, body in _EXAMPLE.findall(text)}
        for _, body in _FENCE.findall(text):
            if ('"msgType"' in body or "<alert" in body) and body not in marked:
                missing.append(f"{doc.relative_to(ROOT)}: {body[:60]}")
    return missing
