"""docs/architecture.md stays true: its module map lists every module of actornet/ and only
those, the modules it names exist, and no module imports one that imports it back."""

from __future__ import annotations

import ast
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


def _imports() -> dict[str, set[str]]:
    """Each actornet module -> the actornet modules it imports, counting every import:
    at the top, under ``if TYPE_CHECKING:``, and inside functions."""
    modules: dict[str, Path] = {}
    for path in (ROOT / "actornet").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                              else base)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                return [*path[path.index(other):], other]
            if other not in state and (found := visit(other)) is not None:
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)) is not None:
            return found
    return None


def test_no_module_of_actornet_imports_one_that_imports_it_back() -> None:
    """Type-only and deferred imports count too: a circle hidden in a function or
    behind TYPE_CHECKING is still two modules that cannot be read apart."""
    graph = _imports()
    assert len(graph) > 40 and graph["actornet.node"], "the import graph was not read"
    circle = _circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
