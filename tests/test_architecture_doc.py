"""docs/architecture.md's module map lists every module of actornet/, and only those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_module_map_lists_every_module_and_no_other() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## The module map", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| [^|]+ \| `(actornet/[\w/]+\.py)` \|", section, re.MULTILINE)
    assert len(listed) == len(set(listed)), "a module is listed twice"
    present = {p.relative_to(ROOT).as_posix() for p in (ROOT / "actornet").rglob("*.py")}
    assert set(listed) == present


def test_the_paths_name_modules_that_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(_[a-z_]+)\.py`", text)) | set(
        re.findall(r"`(_[a-z_]+)\.[a-z_]+`", text))
    modules = {p.stem for p in (ROOT / "actornet").rglob("_*.py")}
    assert named and named <= modules, named - modules
