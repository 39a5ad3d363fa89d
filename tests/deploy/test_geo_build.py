"""deploy/geo: the committed territory (streams/data/geo/vn-territory.json) is what the build
makes from the pinned npm package, so the data provably comes from the registry; and it ships
in the wheel.

The rebuild fetches the package from the npm registry (about 12 MB, npm's cache makes a second
run quick) and fills the outline at resolution 7 (about 40 s on two shared cores). Like the
other tests here, a missing tool fails loudly instead of skipping.
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
BUILD = ROOT / "deploy" / "geo" / "build.sh"
COMMITTED = ROOT / "streams" / "data" / "geo" / "vn-territory.json"


def _pinned(name: str) -> str:
    match = re.search(rf'^{name}="([^"]*)"$', BUILD.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{name} is not pinned in {BUILD}"
    return match.group(1)


def test_the_committed_territory_names_the_package_the_build_pins() -> None:
    doc = json.loads(COMMITTED.read_text(encoding="utf-8"))
    origin = doc["provenance"]
    assert origin["package"] == _pinned("PACKAGE")
    assert origin["version"] == _pinned("VERSION")
    assert origin["integrity"] == _pinned("INTEGRITY")
    assert origin["licence"] == _pinned("LICENCE")
    assert "OpenStreetMap contributors" in origin["attribution"]
    assert doc["resolution"] == int(_pinned("RESOLUTION"))
    assert doc["edge"].startswith("overlap")
    assert COMMITTED.stat().st_size < 200_000


def test_the_wheel_ships_the_territory() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["streams"]
    relative = COMMITTED.relative_to(ROOT / "streams").as_posix()
    assert any(fnmatch(relative, p) for p in patterns), patterns


@pytest.mark.slow
def test_rebuilding_from_the_registry_reproduces_the_committed_territory(tmp_path: Path) -> None:
    if shutil.which("npm") is None:  # fail loudly: the build fetches the package with npm
        pytest.fail("npm not found: deploy/geo/build.sh needs it", pytrace=False)
    out = tmp_path / "vn-territory.json"
    run = subprocess.run(
        ["bash", str(BUILD), str(out)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.read_bytes() == COMMITTED.read_bytes()


@pytest.mark.slow
def test_the_build_refuses_a_tarball_whose_integrity_is_not_the_pinned_one(
    tmp_path: Path,
) -> None:
    # the same script with another pin: it must stop before deriving anything
    script = BUILD.read_text(encoding="utf-8")
    wrong = script.replace(_pinned("INTEGRITY"), "sha512-" + "A" * 86 + "==")
    geo = tmp_path / "deploy" / "geo"
    geo.mkdir(parents=True)
    (geo / "build.sh").write_text(wrong, encoding="utf-8")
    shutil.copy(BUILD.parent / "derive.py", geo / "derive.py")
    out = tmp_path / "out.json"
    run = subprocess.run(
        ["bash", str(geo / "build.sh"), str(out)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=120,
    )
    assert run.returncode != 0
    assert "pinned sha512-AAAA" in run.stderr
    assert not out.exists()
