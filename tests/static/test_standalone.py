"""The repository stands alone: no tracked file reaches outside the clone.

People who clone get exactly the tracked files. A reference to a sibling folder of the workspace the
project grew in, a path climbing above the repository root (`Path(__file__).parents[N]` or `../..`
one level too many), or an absolute path of one machine would work here and break for them.
`scripts/check-clean-clone.sh` proves the same thing slowly, by running the tests in a fresh clone.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]

# Spelled in pieces so this file does not match itself.
SIBLING_SHARED = ".." + "/shared"
MACHINE_PATHS = ("/" + "work/", "file:" + "///opt/", "/" + "home/")

# `../..` as path segments (not `...` or `a..b`), `parents[N]`, and `__file__` `.parent` chains.
UP_SEGMENTS = re.compile(r"(?<![\w.])\.\.(?:/\.\.)*(?![\w.])")
PARENTS_INDEX = re.compile(r"__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent(?![s\w]))+)")


def tracked_text_files() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    out: dict[str, str] = {}
    for name in filter(None, names):
        path = ROOT / name.decode()
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        try:
            out[name.decode()] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


def climbs_out(rel: str, text: str) -> list[str]:
    """Places in `text` that name a folder above the repository root, seen from file `rel`."""
    depth = len(PurePosixPath(rel).parts) - 1  # folders between the root and the file
    found: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        for m in PARENTS_INDEX.finditer(line):
            if int(m.group(1)) > depth:
                found.append(f"{rel}:{n}: {m.group(0)}")
        for m in PARENT_CHAIN.finditer(line):
            if m.group(1).count(".parent") - 1 > depth:
                found.append(f"{rel}:{n}: {m.group(0)}")
        for m in UP_SEGMENTS.finditer(line):
            if m.group(0).count("..") > depth:
                found.append(f"{rel}:{n}: {m.group(0)}")
    return found


def test_no_tracked_file_mentions_the_workspace_sibling_shared_folder():
    hits = [
        f"{rel}:{n}"
        for rel, text in tracked_text_files().items()
        for n, line in enumerate(text.splitlines(), 1)
        if SIBLING_SHARED in line
    ]
    assert not hits, hits


def test_no_tracked_file_names_a_path_of_one_machine():
    hits = [
        f"{rel}:{n}: {line.strip()[:80]}"
        for rel, text in tracked_text_files().items()
        for n, line in enumerate(text.splitlines(), 1)
        if any(p in line for p in MACHINE_PATHS)
    ]
    assert not hits, hits


def test_no_tracked_file_climbs_above_the_repository_root():
    hits = [hit for rel, text in tracked_text_files().items() for hit in climbs_out(rel, text)]
    assert not hits, hits


def test_the_checks_catch_what_they_are_for():
    # Each pattern above would find the mistake it exists for (spelled in pieces, as above).
    here = "ROOT = Path(__" + "file__)"
    assert climbs_out("tests/unit/x.py", here + ".resolve().parents[3]")
    assert climbs_out("tests/unit/x.py", here + ".parent.parent.parent.parent")
    assert climbs_out("scripts/x.sh", 'cd "$(dirname "$0")/..' + '/.."')
    assert not climbs_out("tests/unit/x.py", here + ".resolve().parents[2]")
    assert not climbs_out("scripts/x.sh", 'cd "$(dirname "$0")/.."')
    assert not climbs_out("docs/x.md", "more to come... and a..b")
