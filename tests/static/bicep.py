"""Just enough Bicep reading for the static tests (no Bicep CLI here): comments out, object blocks
by name, their keys and simple values. Bicep strings are single-quoted, so `//` inside one (a URL)
is not a comment."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def strip_comments(text: str) -> str:
    """Remove // and /* */ comments, keeping string literals (and line numbers) intact."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif c == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            block = text[i : n if j < 0 else j + 2]
            out.append("\n" * block.count("\n"))
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read(relative: str) -> str:
    """An infra file without its comments."""
    return strip_comments((INFRA / relative).read_text(encoding="utf-8"))


def block_after(text: str, opener: str) -> str:
    """The `{ ... }` body that follows `opener` (matching braces, strings skipped)."""
    start = text.index(opener) + len(opener)
    start = text.index("{", start)
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == "'":
            i += 1
            while text[i] != "'":  # a string; \' inside one does not end it
                i += 2 if text[i] == "\\" else 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    raise ValueError(f"unbalanced braces after {opener!r}")


def object_entries(body: str) -> dict[str, str]:
    """Top-level `key: value` lines of an object body (values as written, stripped)."""
    entries: dict[str, str] = {}
    for line in body.splitlines():
        m = re.match(r"^\s*('?[A-Za-z_][\w.-]*'?)\s*:\s*(.+?)\s*$", line)
        if m:
            entries[m.group(1).strip("'")] = m.group(2)
    return entries


def param_defaults(text: str) -> dict[str, str]:
    """param NAME TYPE = 'default' (string defaults only)."""
    return dict(re.findall(r"^param\s+(\w+)\s+string\s*=\s*'([^']*)'", text, flags=re.M))


def resource_types(text: str) -> list[str]:
    """Every declared (not `existing`) resource type, e.g. Microsoft.Web/sites@2024-04-01."""
    return [
        m.group(1) for m in re.finditer(r"^\s*resource\s+\w+\s+'([^']+)'\s*=", text, flags=re.M)
    ]


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))
