"""A clone of the repository is the whole product: no tracked file reaches outside it.

Two ways a file can depend on something a clone does not have: a relative path that climbs
past the repository's root (``../`` once too often), or an absolute path of some machine.
Both are caught here for every tracked text file, so neither can come back unnoticed.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()

# A run of ../ followed by the rest of a path, as it appears in links, strings and prose.
CLIMB = re.compile(r"(?:(?<=[\s\"'(\[`=:,])|^)((?:\.\./)+[\w.\-/]*)", re.MULTILINE)
# Home and workspace folders of developer machines and CI runners. Absolute paths that are
# part of the product (container paths such as /opt/venv, /etc/podseidon, /var/run/secrets)
# are not machine paths and stay allowed.
MACHINE_ROOTS = ("work", "home", "root", "Users", "builds", "runner", "workspace")
MACHINE_PATH = re.compile(
    r"(?<![\w.:/-])/(?:" + "|".join(MACHINE_ROOTS) + r")/[\w.\-]+", re.MULTILINE
)
# The folders this project was once read from, by name: a reference to them is an escape
# however it is spelled (``parent / "shared"`` never contains ../).
SIBLING_FOLDERS = re.compile(r"shared/(?:reference|DESIGN\.md|hooks)|[\"']shared[\"']")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = []
    for name in filter(None, listed):
        relative = name.decode()
        if relative == THIS_FILE:
            continue  # it spells the patterns it looks for
        path = REPO / relative
        if not path.is_file():
            continue  # deleted in the work tree but still in the index
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        files.append(path)
    return files


def escapes_repository(source: Path, climb: str) -> bool:
    target = os.path.normpath(source.parent / climb)
    return not (target == str(REPO) or target.startswith(str(REPO) + os.sep))


def offences(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    found = [
        f"{m.group(1)!r} climbs out of the repository"
        for m in CLIMB.finditer(text)
        if escapes_repository(path, m.group(1))
    ]
    found += [f"{m.group(0)!r} is an absolute machine path" for m in MACHINE_PATH.finditer(text)]
    found += [
        f"{m.group(0)!r} names a folder beside the repository"
        for m in SIBLING_FOLDERS.finditer(text)
    ]
    if str(REPO) in text:
        found.append(f"{str(REPO)!r} is this checkout's own absolute path")
    return found


def test_no_tracked_file_reaches_outside_the_repository() -> None:
    files = tracked_text_files()
    assert len(files) > 100, "git ls-files found too few files: is this a checkout?"
    problems = [
        f"{path.relative_to(REPO)}: {offence}" for path in files for offence in offences(path)
    ]
    assert not problems, "tracked files reach outside the repository:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("README.md", "see [design](../shared/DESIGN.md)", 2),
        ("docs/architecture.md", "[d](../../shared/DESIGN.md)", 2),
        ("docs/architecture.md", "[d](../README.md) and [o](operations.md)", 0),
        ("tests/unit/x.py", 'RECORDINGS = Path("/work/shared/reference/x")', 2),
        ("tests/unit/x.py", 'REPO.parent / "shared" / "reference"', 1),
        ("tests/unit/x.py", 'HOME = "/home/alice/podseidon"', 1),
        ("Dockerfile", "COPY requirements.txt /tmp/requirements.txt\nENV PATH=/opt/venv/bin", 0),
        ("docs/x.md", "https://example.org/work/items and /api/v1/pods", 0),
        ("tests/unit/x.py", '"../../../etc/passwd"', 1),
    ],
)
def test_the_guard_catches_what_it_should(
    tmp_path: Path, relative: str, text: str, expected: int
) -> None:
    # Written inside the repository's tree (under a temporary name) so that ../ resolves
    # against the same root the real check uses.
    path = REPO / relative
    probe = path.with_name(f".guard-probe-{os.getpid()}-{path.name}")
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(text)
    try:
        assert len(offences(probe)) == expected, offences(probe)
    finally:
        probe.unlink()
