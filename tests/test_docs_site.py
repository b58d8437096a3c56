"""The documentation site (mkdocs.yml) builds in strict mode, and its API reference is complete.

Strict: a broken link or anchor, a missing cross-reference, a docstring that does not parse,
a nav entry without its page or a page of docs/ left out of the nav fails the build
(``scripts/docs build`` runs the same build). The build takes a few seconds.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mkdocstrings import Inventory

ROOT = Path(__file__).resolve().parents[1]

# The public API: every name in these modules' __all__ has its entry in the API reference.
PUBLIC_MODULES = [
    "asgi_ws",
    "asgi_ws.auth",
    "asgi_ws.brokers",
    "asgi_ws.client",
    "asgi_ws.contrib.channels",
    "asgi_ws.drain",
    "asgi_ws.rooms",
    "asgi_ws.server",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    problems = [line for line in build.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert build.returncode == 0, "the strict docs build failed (scripts/docs build):\n" + "\n".join(
        problems or build.stderr.splitlines()[-30:]
    )
    return out


def test_strict_build_writes_the_site(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "reference" / "asgi_ws" / "index.html").is_file()


def test_every_public_name_is_in_the_api_reference(site: Path) -> None:
    with (site / "objects.inv").open("rb") as file:
        inventory = Inventory.parse_sphinx(file)
    missing = [
        f"{module}.{name}"
        for module in PUBLIC_MODULES
        for name in importlib.import_module(module).__all__
        if f"{module}.{name}" not in inventory
    ]
    assert not missing, f"public names without an entry in docs/reference/: {missing}"


def test_readme_links_into_docs_resolve_on_github() -> None:
    # README.md is GitHub's landing page: its relative links are not part of the site build.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(((?:docs|examples|bench)/[^)#\s]*)", readme)
    assert targets, "README.md links to no page of docs/"
    assert [target for target in targets if not (ROOT / target).exists()] == []
