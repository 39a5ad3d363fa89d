"""Every runbook reference leads somewhere (issue 20: links to a placeholder host, a README
section and a topic that did not exist): rule links, links in docs, README sections and topics
the runbooks cite."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from streams.kafkaio.clients import topic_specs
from streams.settings.model import RUNBOOK_URL, Settings

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks.md"
LINK = re.compile(r"(?:https?://[^\s\"')]*)?runbooks\.md#([a-z0-9-]+)")
DOC_LINK = re.compile(r"\]\(([a-z0-9_-]+\.md)(?:#([a-z0-9-]+))?\)")
README_SECTION = re.compile(r'README\s+"([^"]+)"')
TOPIC = re.compile(r"`(loa\.[a-z0-9._-]+)`")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def _headings(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {h.strip() for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def _rule_files() -> list[Path]:
    prom = ROOT / "deploy" / "prometheus"
    return [
        *prom.glob("rules/*.yml"),
        *prom.glob("tests/*.yml"),
        ROOT / "deploy/k8s/prometheus-rule.yaml",
    ]


def test_every_alert_links_to_its_own_runbook_section_on_the_configured_base() -> None:
    sections = _anchors(RUNBOOKS)
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/loa.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for rule in alerts:
        link = rule["annotations"]["runbook_url"]
        assert link == f"{RUNBOOK_URL}#{rule['alert'].lower()}", rule["alert"]
        assert rule["alert"].lower() in sections, f"docs/runbooks.md has no {rule['alert']}"
    assert Settings().runbook_url == RUNBOOK_URL
    assert "example" not in RUNBOOK_URL  # issue 20: no placeholder host


def _check_links(sources: list[Path]) -> int:
    sections = _anchors(RUNBOOKS)
    found = 0
    for path in sources:
        for anchor in LINK.findall(path.read_text(encoding="utf-8")):
            found += 1
            assert anchor in sections, f"{path.relative_to(ROOT)}: runbooks.md#{anchor}"
        for url in re.findall(r"https?://[^\s\"')]*runbooks\.md", path.read_text("utf-8")):
            assert url == RUNBOOK_URL, f"{path.relative_to(ROOT)}: {url}"
    return found


def test_every_runbook_link_in_rules_and_docs_names_an_existing_section() -> None:
    assert _check_links([*_rule_files(), *(ROOT / "docs").glob("*.md")]) >= 13


def test_every_runbook_link_in_the_readme_names_an_existing_section() -> None:
    _check_links([ROOT / "README.md"])


def test_links_between_docs_name_existing_files_and_sections() -> None:
    for path in [RUNBOOKS, ROOT / "docs" / "operations.md"]:
        for target, anchor in DOC_LINK.findall(path.read_text(encoding="utf-8")):
            linked = path.parent / target
            assert linked.exists(), f"{path.name}: {target}"
            if anchor:
                assert anchor in _anchors(linked), f"{path.name}: {target}#{anchor}"


def test_readme_sections_the_runbooks_cite_exist() -> None:
    headings = _headings(ROOT / "README.md")
    for path in [RUNBOOKS, ROOT / "docs" / "operations.md"]:
        for section in README_SECTION.findall(path.read_text(encoding="utf-8")):
            assert section in headings, f'{path.name}: README "{section}" does not exist'


def test_topics_the_runbooks_cite_exist_in_the_layout() -> None:
    names = {t.name for t in topic_specs(Settings())}
    for path in [RUNBOOKS, ROOT / "docs" / "operations.md"]:
        for topic in TOPIC.findall(path.read_text(encoding="utf-8")):
            assert topic in names, f"{path.name}: `{topic}` is not one of Loa's topics"
