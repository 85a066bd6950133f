"""Documentation checks: every hook has a docstring, the README names every registered learner."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from iclbench import hookspecs

README = Path(__file__).resolve().parent.parent / "README.md"


def hookspec_functions():
    return {name: f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "iclbench_spec")}


def test_every_hookspec_has_a_docstring():
    specs = hookspec_functions()
    assert {"register_learners", "register_tasks", "register_suites", "register_analyses"} <= set(specs)
    for name, f in specs.items():
        doc = inspect.getdoc(f) or ""
        assert len(doc.split()) >= 5, f"hookspec {name} has no real docstring"
        assert "register" in doc, f"hookspec {name} does not say how to use its `register` callback"


def test_every_hookspec_is_known_to_the_plugin_manager():
    from iclbench.plugins import make_plugin_manager

    pm = make_plugin_manager(entry_points=False)
    assert set(hookspec_functions()) <= {name for name in dir(pm.hook) if name.startswith("register_")}


def test_readme_names_every_registered_learner(catalog):
    assert README.is_file(), "README.md is missing"
    text = README.read_text()
    missing = [n for n in catalog.learners if not re.search(rf"`{re.escape(n)}(\[[^`]*\])?`", text)]
    assert not missing, f"README.md does not mention learner(s): {', '.join(missing)}"



def test_readme_analyses_table_names_exactly_the_registered_analyses(catalog):
    text = README.read_text().split("### Analyses", 1)[1].split("```", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    named = [name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])]
    assert sorted(named) == sorted(catalog.analyses)  # no learner listed as an analysis, none missing
    assert all(line.startswith("|") for line in text.splitlines() if line.rstrip().endswith("|"))  # every row named
