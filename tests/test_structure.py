"""The core reads as layers: no import cycles among its modules, and the CLI starts light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "iclbench"
PACKAGES = ("iclbench", "iclbench_plugins")


def module_name(path: Path) -> str:
    """`iclbench.runner`, `iclbench_plugins.learners.baselines`, `iclbench_plugins.suites` (a package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(tree: ast.AST, package: str = "iclbench") -> set[str]:
    """Project modules that `tree` imports anywhere: at module level, inside functions, and in
    `if TYPE_CHECKING:` blocks (a type hint's import is an arrow too). `package` resolves
    relative imports; `from pkg import name` counts `pkg.name` when that is a module."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in MODULES}


def module_tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text())


def import_graph(prefix: str = "iclbench.") -> dict[str, set[str]]:
    """Module -> the project modules it imports, for the modules named `prefix...`."""
    graph = {}
    for name, path in MODULES.items():
        if name.startswith(prefix) or name == prefix.rstrip("."):
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            graph[name] = imports_of(module_tree(path), package) - {name}
    return graph


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
    graph = {m: deps for m, deps in import_graph().items() if m.startswith("iclbench.") or m == "iclbench"}
    assert "iclbench.catalog" in graph["iclbench.commands"] and "iclbench.lookup" in graph["iclbench.runner"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_whole_project_has_no_import_cycle_and_the_core_imports_no_plugin():
    graph = {**import_graph("iclbench."), **import_graph("iclbench_plugins.")}
    assert len(graph) > 90  # every module of both packages, the type-hint and in-function imports counted
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    core = {m: deps for m, deps in graph.items() if m.split(".")[0] == "iclbench"}
    assert not {m: sorted(d for d in deps if d.startswith("iclbench_plugins")) for m, deps in core.items()
                if any(d.startswith("iclbench_plugins") for d in deps)}


def test_type_hint_imports_are_arrows_too():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from iclbench.catalog import Catalog\n")
    assert imports_of(tree) == {"iclbench.catalog"}


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


def test_plugins_import_the_core_only_through_its_public_api():
    """A built-in plugin uses what a third-party one can: `iclbench` and `iclbench.plugin_api`."""
    graph = import_graph("iclbench_plugins.")
    assert graph["iclbench_plugins.learners.least_squares"] >= {"iclbench", "iclbench.plugin_api"}
    private = {m: sorted(d for d in deps if d.split(".")[0] == "iclbench" and d not in ("iclbench", "iclbench.plugin_api"))
               for m, deps in graph.items()}
    assert not {m: d for m, d in private.items() if d}


def test_every_public_plugin_name_resolves_and_loads_only_what_it_needs():
    code = ("import sys, iclbench.plugin_api as api\n"
            "assert 'iclbench.plotting' not in sys.modules\n"
            "api.task_losses, api.TunedLearner\n"
            "assert 'matplotlib' not in sys.modules\n"
            "missing = [n for n in api.__all__ if getattr(api, n, None) is None]\n"
            "assert not missing, missing\n"
            "assert 'iclbench.plotting' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
