"""The house rules: dependencies point one way (cli/jobs -> daemon -> domain packages -> core).

Every ``import mailopsd.X`` / ``from mailopsd.X import`` in mailopsd/ and jobs/ is read with the
AST (also those inside functions and ``if TYPE_CHECKING:``), giving a graph between packages.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Each package and the mailopsd packages it may import (besides itself). A new package gets a
# line here and a docstring in its __init__.py saying the same.
CORE = "core"
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "logtail": {CORE},
    "firewall": {CORE},
    "maildir": {CORE},
    "spam": {CORE},
    "forward": {CORE},
    "blocker": {CORE, "logtail", "firewall"},
    "sent": {CORE, "logtail", "maildir"},
    "daemon": {CORE},
    "health": {CORE, "spam"},  # issue 18
}
TOP = {"cli", "jobs", "(top)"}  # may import anything below them


def _package_of(path: Path) -> str:
    rel = path.relative_to(REPO)
    if rel.parts[0] == "jobs":
        return "jobs"
    return rel.parts[1] if len(rel.parts) > 2 else "(top)"


def _imported_packages(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "mailopsd":
                names = [f"mailopsd.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mailopsd" and len(parts) > 1 and not parts[1].startswith("__"):
                found.add("jobs" if parts[1] == "jobs" else parts[1])
    return found


def package_graph() -> dict[str, set[str]]:
    """package -> the other mailopsd packages it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    files = [*(REPO / "mailopsd").rglob("*.py"), *(REPO / "jobs").rglob("*.py")]
    for path in files:
        src = _package_of(path)
        for dst in _imported_packages(ast.parse(path.read_text(), str(path))):
            if dst != src:
                graph[src].add(dst)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle between packages, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_between_packages() -> None:
    assert _cycle(package_graph()) is None, " -> ".join(_cycle(package_graph()) or [])


def test_core_imports_no_other_mailopsd_package() -> None:
    assert package_graph().get(CORE, set()) == set()


def test_every_package_imports_only_what_its_layer_allows() -> None:
    graph = package_graph()
    wrong = {pkg: sorted(deps - LAYERS[pkg]) for pkg, deps in graph.items()
             if pkg not in TOP and deps - LAYERS.get(pkg, set())}
    assert not wrong, f"imports against the layering: {wrong}"


def test_every_package_is_known_and_says_what_it_owns() -> None:
    for init in sorted((REPO / "mailopsd").glob("*/__init__.py")):
        pkg = init.parent.name
        assert pkg in LAYERS or pkg in TOP, f"mailopsd/{pkg} has no line in LAYERS"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 15, f"mailopsd/{pkg}/__init__.py needs a docstring"


def test_the_checker_sees_a_circle_and_a_core_violation() -> None:
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    tree = ast.parse("def f():\n    from mailopsd.blocker import rules\n")
    assert _imported_packages(tree) == {"blocker"}
