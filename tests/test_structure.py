"""The core reads as layers: no import cycles among its modules, and the CLI starts light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "iclbench"


def imports_of(tree: ast.AST) -> set[str]:
    """Core modules that `tree` imports anywhere (module level or inside functions)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "iclbench":
                out.update(f"iclbench.{a.name}" for a in node.names if (CORE / f"{a.name}.py").exists())
            elif node.module.startswith("iclbench."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("iclbench."))
    return out


def module_tree(path: Path) -> ast.AST:
    """The module's syntax tree without `if TYPE_CHECKING:` blocks, which never run."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = [ast.Pass()]
    return tree


def import_graph() -> dict[str, set[str]]:
    """Core module -> the core modules it imports, at module level or inside functions."""
    return {f"iclbench.{p.stem}": imports_of(module_tree(p)) for p in CORE.glob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_core_has_no_import_cycle():
    graph = import_graph()
    assert "iclbench.catalog" in graph["iclbench.commands"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_registry_knows_no_analysis_or_reproduction():
    assert not imports_of(module_tree(CORE / "registry.py")) & {"iclbench.analysis", "iclbench.reproduce", "iclbench.suite"}


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def heavy_modules_after(call: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has imported after running the CLI `call`."""
    code = (f"import sys; from iclbench.cli import main\ntry:\n    {call}\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {modules!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return eval(out.strip().splitlines()[-1])


def test_help_loads_no_heavy_library():
    assert heavy_modules_after("main(['--help'])", ("torch", "pandas", "matplotlib", "pydantic")) == []


def test_listing_loads_no_table_or_plot_library():
    assert heavy_modules_after("main(['list', 'learners'])", ("pandas", "matplotlib")) == []
