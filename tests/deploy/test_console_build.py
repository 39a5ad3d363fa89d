"""deploy/console: the console's vendored files (Leaflet, the province outlines; axe-core for
the browser tests) are what the build makes from the pinned npm packages, and the wheel ships
the served ones.

The rebuild fetches three tarballs from the npm registry (about 3 MB; npm's cache makes a
second run quick) and derives the outlines in well under a second. A missing npm fails loudly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "deploy" / "console" / "build.sh"
STATIC = ROOT / "streams" / "console" / "static"
VENDOR = STATIC / "vendor"
TEST_VENDOR = ROOT / "tests" / "browser" / "vendor"
OUTLINES = VENDOR / "vn-provinces.geojson"


def _pinned(name: str) -> str:
    match = re.search(rf'^{name}="([^"]*)"$', BUILD.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{name} is not pinned in {BUILD}"
    return match.group(1)


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_outlines_are_the_34_provinces_small_and_name_their_source() -> None:
    from streams.regions import registry

    doc = json.loads(OUTLINES.read_text(encoding="utf-8"))
    codes = [f["properties"]["code"] for f in doc["features"]]
    assert sorted(codes) == sorted(registry().province_codes)
    assert len(codes) == 34
    origin = doc["provenance"]
    assert origin["package"] == _pinned("OUTLINES_PACKAGE")
    assert origin["version"] == _pinned("OUTLINES_VERSION")
    assert origin["integrity"] == _pinned("OUTLINES_INTEGRITY")
    assert origin["licence"] == _pinned("OUTLINES_LICENCE")
    assert OUTLINES.stat().st_size < 300_000
    # every ring is closed, inside Viet Nam's box (with the Trường Sa archipelago)
    for feature in doc["features"]:
        for polygon in feature["geometry"]["coordinates"]:
            for ring in polygon:
                assert ring[0] == ring[-1] and len(ring) >= 4
                assert all(102 <= lon <= 118 and 6 <= lat <= 24 for lon, lat in ring)


def test_the_page_loads_the_leaflet_the_build_pins() -> None:
    # static/vendor/ is cached as immutable: a new Leaflet must come under a new path
    version = _pinned("LEAFLET_VERSION")
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert f"/static/vendor/leaflet-{version}/leaflet.js" in page
    assert f"/static/vendor/leaflet-{version}/leaflet.css" in page
    assert (VENDOR / f"leaflet-{version}" / "leaflet.js").is_file()


def test_the_page_has_nothing_the_policy_forbids_nor_builds_markup_from_text() -> None:
    # the console's CSP: no inline script or style, no eval; and text goes in by textContent
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script"
    assert "<style" not in page and not re.search(r"<[^>]*\s(style|on[a-z]+)=", page)
    for script in (STATIC / "js").glob("*.js"):
        code = re.sub(r"//[^\n]*", "", script.read_text(encoding="utf-8"))
        for forbidden in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert forbidden not in code, f"{script.name}: {forbidden}"


def test_both_languages_have_every_text() -> None:
    source = (STATIC / "js" / "i18n.js").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"^const (vi|en) = \{\n(.*?)^\};", source, re.MULTILINE | re.DOTALL))
    keys = {
        lang: set(re.findall(r"^  (\w+):", body, re.MULTILINE)) for lang, body in blocks.items()
    }
    assert keys["vi"] and keys["vi"] == keys["en"], keys["vi"] ^ keys["en"]
    # every key the page asks for exists (t("...") with a literal key)
    used = set()
    for script in (STATIC / "js").glob("*.js"):
        used |= set(re.findall(r"\bt\(\"(\w+)\"", script.read_text(encoding="utf-8")))
    assert used <= keys["en"], used - keys["en"]


def test_the_console_never_serves_axe_core() -> None:
    # the accessibility engine is for the tests only: it lives beside them, not in static/
    assert not list(STATIC.rglob("axe*"))
    assert (TEST_VENDOR / "axe.min.js").is_file()


def test_the_wheel_ships_the_served_files() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["streams"]
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(ROOT / "streams").as_posix()
            assert any(fnmatch(relative, p) for p in patterns), relative


def test_rebuilding_from_the_registry_reproduces_the_committed_files(tmp_path: Path) -> None:
    if shutil.which("npm") is None:  # fail loudly: the build fetches the packages with npm
        pytest.fail("npm not found: deploy/console/build.sh needs it", pytrace=False)
    static, tests = tmp_path / "static", tmp_path / "tests"
    run = subprocess.run(
        ["bash", str(BUILD), str(static), str(tests)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert _tree(static) == _tree(VENDOR)
    assert _tree(tests) == _tree(TEST_VENDOR)


def test_the_build_refuses_a_tarball_whose_integrity_is_not_the_pinned_one(
    tmp_path: Path,
) -> None:
    script = BUILD.read_text(encoding="utf-8")
    wrong = script.replace(_pinned("OUTLINES_INTEGRITY"), "sha512-" + "A" * 86 + "==")
    folder = tmp_path / "deploy" / "console"
    folder.mkdir(parents=True)
    (folder / "build.sh").write_text(wrong, encoding="utf-8")
    shutil.copy(BUILD.parent / "outlines.py", folder / "outlines.py")
    static = tmp_path / "static"
    run = subprocess.run(
        ["bash", str(folder / "build.sh"), str(static), str(tmp_path / "tests")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=300,
    )
    assert run.returncode != 0
    assert "pinned sha512-AAAA" in run.stderr
    assert not (static / "vn-provinces.geojson").exists()
