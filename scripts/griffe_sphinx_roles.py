"""Griffe extension for the docs site (mkdocs.yml): docstrings written for Sphinx, rendered.

Attributes documented with ``#:`` comments (Sphinx's autodoc convention, which Griffe does
not read) get those comments as their docstring. And asgi_ws's docstrings name objects the
Sphinx way (:class:`~asgi_ws.Rooms`,
:meth:`Connection.close <asgi_ws.connection.Connection.close>`, :func:`drain`), which
mkdocstrings would print as is. Each role becomes an *optional* cross-reference: a link
where the target is in the API reference, code text where it is not (an internal class, a
standard-library exception), so a docstring naming an internal never fails the strict build.
Relative names are resolved in the docstring's scope, as Sphinx does. reStructuredText
simple tables (``====  ====`` borders) become Markdown tables.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|attr|data|mod|exc|obj|const):"
    r"`(?P<body>[^`]+)`"
)
EXPLICIT = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as Sphinx would look it up from ``obj``, or None."""
    if target.startswith("asgi_ws"):
        return target
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            resolved = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError, ValueError):
            resolved = None
        if resolved:
            return f"{resolved}.{rest}" if rest else resolved
        scope = scope.parent
    return None


def convert(obj: griffe.Object, text: str) -> str:
    """``text`` with each Sphinx role replaced by an optional autorefs link."""

    def replace(match: re.Match[str]) -> str:
        body = match["body"].strip()
        explicit = EXPLICIT.match(body)
        if explicit:
            title, target = explicit["title"], explicit["target"]
        else:
            target = body.lstrip("~!.")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        title_html = f"<code>{html.escape(title)}</code>"
        path = _resolve(obj, target.lstrip("~!."))
        if path is None:
            return f"`{title}`"
        return f'<autoref identifier="{html.escape(path)}" optional>{title_html}</autoref>'

    return ROLE.sub(replace, text)


def comment_docstring(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above an attribute (or ending its line), if any."""
    if obj.lineno is None or obj.parent is None:
        return None
    try:
        lines = obj.parent.module.lines
    except (AttributeError, ValueError):
        return None
    found: list[str] = []
    index = obj.lineno - 2  # the line above, 0-based
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        found.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    if not found and obj.lineno <= len(lines):
        _, sep, trailing = lines[obj.lineno - 1].partition("  #: ")
        if sep:
            found.append(trailing.strip())
    return "\n".join(found) or None


BORDER = re.compile(r"^(=+)( {2,}=+)+$")
CELLS = re.compile(r" {2,}")


def convert_tables(text: str) -> str:
    """``text`` with each reST simple table (border, header, border, rows, border) in Markdown.

    Cells are split on runs of two or more spaces, so a cell may overflow its column as long
    as it holds no double space; a table that does not split evenly is left as it is.
    """
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        ends = [i for i in range(index + 1, len(lines)) if lines[i].strip() == line.strip()][:2]
        if BORDER.match(line.strip()) and ends:
            columns = len(line.split())
            if len(ends) == 2 and ends[0] == index + 2:  # a header row between the first two borders
                header, rows, last = lines[index + 1], lines[ends[0] + 1 : ends[1]], ends[1]
            else:
                header, rows, last = " " * 2 * columns, lines[index + 1 : ends[0]], ends[0]
            cells = [CELLS.split(row.strip()) for row in rows if row.strip()]
            head = CELLS.split(header.strip()) if header.strip() else [" "] * columns
            if len(head) == columns and all(len(row) == columns for row in cells):
                indent = line[: len(line) - len(line.lstrip())]
                table = [head, ["---"] * columns, *cells]
                out.extend(indent + "| " + " | ".join(row) + " |" for row in table)
                index = last + 1
                continue
        out.append(line)
        index += 1
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Reads ``#:`` comments and rewrites Sphinx roles in every docstring of the package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def on_package_loaded(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())  # older Griffe; a second walk changes nothing

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is None and obj.is_attribute and (text := comment_docstring(obj)):
            obj.docstring = griffe.Docstring(text, lineno=obj.lineno, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = convert(obj, convert_tables(obj.docstring.value))
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)  # type: ignore[arg-type]
