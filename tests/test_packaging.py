"""The wheel ``pip install asgi-ws`` gets: built once with the project's own backend, read as pip would."""

from __future__ import annotations

import email.parser
import email.policy
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from asgi_ws import __version__

ROOT = Path(__file__).resolve().parents[1]

#: Extras of the examples (their web frameworks) and of the tooling, left out of ``all``; every
#: other extra is one asgi_ws itself uses at run time, and ``all`` is exactly those.
NOT_RUNTIME = {"demo", "graphql", "test", "bench", "docs", "lint", "dev"}
URL = "https://github.com/asgi-ws/asgi-ws"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheel")
    build = "import sys, hatchling.build; print(hatchling.build.build_wheel(sys.argv[1]))"
    name = subprocess.run(
        [sys.executable, "-c", build, str(out)], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()[-1]
    with zipfile.ZipFile(out / name) as archive:
        yield archive


def metadata(wheel: zipfile.ZipFile) -> Message:
    text = wheel.read(f"asgi_ws-{__version__}.dist-info/METADATA").decode()
    return email.parser.Parser(policy=email.policy.compat32).parsestr(text)


def test_the_wheel_holds_the_browser_client_the_demo_page_the_types_and_the_license(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    packaged = {path.relative_to(ROOT).as_posix() for path in (ROOT / "asgi_ws" / "static").iterdir() if path.is_file()}
    assert {"asgi_ws/static/asgi-ws.js", "asgi_ws/static/demo.html"} <= packaged <= names
    assert {"asgi_ws/py.typed", "asgi_ws/cli.py", f"asgi_ws-{__version__}.dist-info/licenses/LICENSE"} <= names
    assert not any(name.startswith(("tests/", "examples/", "bench/")) for name in names)
    assert "asgi-ws = asgi_ws.cli:main" in wheel.read(f"asgi_ws-{__version__}.dist-info/entry_points.txt").decode()


def test_license_is_mit_and_ships_its_text(wheel: zipfile.ZipFile) -> None:
    meta = metadata(wheel)
    assert (meta["License-Expression"], meta["License-File"]) == ("MIT", "LICENSE")
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 asgi_ws developers" in text


def test_classifiers_and_project_urls(wheel: zipfile.ZipFile) -> None:
    meta = metadata(wheel)
    classifiers = set(meta.get_all("Classifier") or [])
    versions = {f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)}
    assert versions <= classifiers
    assert {
        "Development Status :: 3 - Alpha",
        "Framework :: AsyncIO",
        "Framework :: Django",
        "Framework :: FastAPI",
        "Operating System :: OS Independent",
        "Typing :: Typed",
    } <= classifiers
    assert meta["Requires-Python"] == ">=3.10"
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert set(urls) == {"Documentation", "Source", "Issues", "Changelog"}
    assert all(url.startswith(URL) for url in urls.values())


def test_all_is_every_runtime_extra(wheel: zipfile.ZipFile) -> None:
    meta = metadata(wheel)
    runtime = set(meta.get_all("Provides-Extra") or []) - NOT_RUNTIME - {"all"}
    assert {"server", "client", "redis", "postgres", "nats", "metrics", "django"} <= runtime

    def needs(extra: str) -> set[str]:
        requirements = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
        return {r.name for r in requirements if r.marker is not None and r.marker.evaluate({"extra": extra})}

    missing = {extra for extra in runtime if not needs(extra) <= needs("all")}
    assert not missing, f"`all` lacks the extras {missing} (or list them in NOT_RUNTIME if asgi_ws never uses them)"
    assert needs("all") == set().union(*(needs(extra) for extra in runtime))
    assert "fastapi" not in needs("all") and "pytest" not in needs("all")
