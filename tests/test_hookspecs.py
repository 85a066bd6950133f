"""The hook specs are documented as pytest's `hookspec.py` documents its hooks, and the docs are true.

Every hook in `iclbench.hookspecs` has a one-line summary and says when it is called, what
`register` takes and what it raises, what it returns and where it runs among the hooks, with an
`Example:` that compiles and, added as a plugin to a fresh plugin manager, registers what it says.
Each claim is checked against what `build_catalog` does. README.md's "Writing a plugin" section
names every hook.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import sys
import textwrap
import types
from pathlib import Path

import pluggy
import pytest
import torch

import iclbench
from iclbench import hookspecs
from iclbench.catalog import build_catalog
from iclbench.errors import UsageError
from iclbench.plugins import make_plugin_manager
from iclbench.registry import DuplicateNameError, RegistrationError
from iclbench.suite import SuiteError

README = Path(__file__).resolve().parent.parent / "README.md"

HOOKS = {name: f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "iclbench_spec")}

# The catalog field each hook fills; a new hook must be added here (a test checks).
FIELD = {"register_learners": "learners", "register_tasks": "tasks", "register_suites": "suites",
         "register_analyses": "analyses", "register_reproductions": "reproductions",
         "register_trackers": "trackers", "register_executors": "executors"}

SECTION = re.compile(r"^([A-Z][A-Za-z]*):(?: (.*))?$")

DEMO_SUITE = """\
name = "my-demo"
[train]
task = "my-slope"
[[eval]]
task = "my-slope"
"""


def sections(doc: str) -> dict[str, str]:
    """A docstring's `Name:` sections (the header at column 0, its body the rest of that line
    and the lines below, dedented), the text before the first header under ''."""
    out: dict[str, str] = {}
    name, inline, lines = "", "", []

    def close() -> None:
        body = textwrap.dedent("\n".join(lines)).strip("\n")
        out[name] = f"{inline}\n{body}".strip() if inline else body

    for line in doc.splitlines():
        m = SECTION.match(line)
        if m:
            close()
            name, inline, lines = m.group(1), m.group(2) or "", []
        else:
            lines.append(line)
    close()
    return out


def doc_of(hook: str) -> dict[str, str]:
    return sections(inspect.getdoc(HOOKS[hook]) or "")


def example(hook: str) -> str:
    code = doc_of(hook).get("Example", "")
    assert code.strip(), f"hookspec {hook} has no Example: section"
    return code


def example_names(code: str) -> set[str]:
    """The string `name = "..."` of every class in an example: what it says it registers."""
    out = set()
    for cls in (n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if (isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["name"]
                    and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
                out.add(stmt.value.value)
    return out


def module_from(code: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)
    return module


def plugin(name: str, **impls) -> types.ModuleType:
    """A plugin module with the given hook implementations (plain functions, marked here)."""
    module = types.ModuleType(name)
    for hook, f in impls.items():
        setattr(module, hook, iclbench.hookimpl(f))
    return module


def catalog_of(*plugins: types.ModuleType, strict: bool = True):
    pm = make_plugin_manager(entry_points=False, core=False)
    for p in plugins:
        pm.add(p, p.__name__, "test")
    return build_catalog(pm, strict=strict)


def registered(cat, hook: str) -> set[str]:
    return set(getattr(cat, FIELD[hook]))


def resolve(name: str) -> type:
    """`TypeError` or `iclbench.registry.DuplicateNameError` as the class it names."""
    if "." not in name:
        return getattr(builtins, name)
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def documented_raises(hook: str) -> dict[type, str]:
    entries = re.findall(r"^(\S+): ", doc_of(hook).get("Raises", ""), flags=re.M)
    assert entries, f"hookspec {hook} documents no exception under Raises:"
    return {resolve(e): e for e in entries}


@pytest.fixture
def my_package(tmp_path, monkeypatch):
    """An importable `my_package` with a suites folder, for the examples that ship data files."""
    pkg = tmp_path / "my_package"
    (pkg / "suites").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "suites" / "demo.toml").write_text(DEMO_SUITE)
    (pkg / "suites" / "notes.txt").write_text("not a suite: a folder registers only its .toml files\n")
    (pkg / "my-paper.toml").write_text("# not read at registration\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_package", raising=False)
    importlib.invalidate_caches()
    return pkg


def expected_names(hook: str, code: str) -> set[str]:
    """What the example says it registers: its classes' names, or for suites the names written
    in the `.toml` files of the folder it registers (here `my_package/suites`)."""
    if hook == "register_suites":
        assert 'files("my_package") / "suites"' in code
        return {"my-demo"}
    return example_names(code)


@pytest.fixture(scope="module")
def call_order() -> list[str]:
    """The hooks in the order build_catalog calls them, seen by a plugin implementing all."""
    calls: list[str] = []
    impls = {h: (lambda register, _h=h: calls.append(_h)) for h in HOOKS}
    catalog_of(plugin("recorder", **impls))
    return calls


# The set of hooks: what the specs, the plugin manager, the catalog and these tests know.


def test_the_specs_are_the_hooks_build_catalog_calls(call_order):
    assert len(call_order) == len(set(call_order)), f"a hook was called twice: {call_order}"
    assert set(call_order) == set(HOOKS), "build_catalog and iclbench.hookspecs disagree on the hooks"
    pm = make_plugin_manager(entry_points=False, core=False)
    known = {n for n, v in vars(pm.hook).items() if isinstance(v, pluggy.HookCaller)}
    assert known == set(HOOKS)
    assert set(FIELD) == set(HOOKS), "add the new hook's catalog field to FIELD"


def test_every_hookspec_is_fully_documented():
    required = {"Called", "Args", "Raises", "Returns", "Order", "Example"}
    documented = {h for h in HOOKS if required <= set(doc_of(h))}
    assert documented == set(HOOKS), f"missing sections in: {sorted(set(HOOKS) - documented)}"


def test_the_module_docstring_says_what_the_file_is_and_the_call_order(call_order):
    doc = inspect.getdoc(hookspecs) or ""
    assert doc.splitlines()[0].startswith("Every hook iclbench calls.")
    named = list(dict.fromkeys(re.findall(r"`(register_\w+)`", doc)))
    assert named == call_order, "the module docstring lists the hooks out of build_catalog's order"


# Each hook's docstring.


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_summary_line(hook):
    lines = (inspect.getdoc(HOOKS[hook]) or "").splitlines()
    assert lines, f"hookspec {hook} has no docstring"
    summary = lines[0]
    assert summary.startswith("Register ") and summary.endswith("."), summary
    assert len(summary) <= 100, f"{hook}: summary line is {len(summary)} characters"
    assert len(lines) == 1 or not lines[1].strip(), f"{hook}: the summary is more than one line"
    assert "`register(" in summary, f"{hook}: the summary does not show the register call"


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_says_when_it_is_called(hook):
    called = " ".join(doc_of(hook)["Called"].split())
    for words in ("catalog build", "build_catalog", "once per plugin", "plugin registration order"):
        assert words in called, f"{hook}: Called: does not say {words!r}"


def test_implementations_run_once_per_plugin_in_registration_order():
    calls = []
    plugins = [plugin(n, register_learners=lambda register, _n=n: calls.append(_n)) for n in ("b", "c", "a")]
    catalog_of(*plugins)
    assert calls == ["b", "c", "a"]


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_order_section_matches_build_catalog(hook, call_order):
    order, i, last = doc_of(hook)["Order"], call_order.index(hook), len(call_order) - 1
    assert re.findall(r"after `(\w+)`", order) == ([call_order[i - 1]] if i > 0 else []), order
    assert re.findall(r"before `(\w+)`", order) == ([call_order[i + 1]] if i < last else []), order
    assert bool(re.search(r"\bfirst\b", order)) == (i == 0), order
    assert bool(re.search(r"\blast\b", order)) == (i == last), order


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_returns_nothing_and_is_not_firstresult(hook):
    returns = doc_of(hook)["Returns"]
    assert returns.startswith("Nothing") and "not firstresult" in returns, returns
    assert HOOKS[hook].iclbench_spec["firstresult"] is False
    assert HOOKS[hook].iclbench_spec["historic"] is False
    assert inspect.signature(HOOKS[hook]).return_annotation in (None, "None")
    assert list(inspect.signature(HOOKS[hook]).parameters) == ["register"]


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_a_return_value_is_ignored(hook):
    cat = catalog_of(plugin("returns", **{hook: lambda register: [object, "not a suite"]}))
    assert registered(cat, hook) == set()


# What `register` raises: the documented exceptions are exactly those raised.


def wrong_registrations(hook: str, tmp_path: Path) -> list[object]:
    if hook == "register_suites":
        bad = tmp_path / "bad.toml"
        bad.write_text('name = "x"\nunknown_field = 1\n')
        return [tmp_path / "missing.toml", bad]
    return [object]


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_raises_documents_exactly_what_register_raises(hook, tmp_path, my_package):
    documented = documented_raises(hook)
    raised = {}
    for obj in wrong_registrations(hook, tmp_path):
        for strict in (True, False):  # a wrong object is an error in a lenient catalog too
            with pytest.raises(Exception) as err:
                catalog_of(plugin("wrong", **{hook: lambda register, _o=obj: register(_o)}), strict=strict)
            raised[type(err.value)] = err.value
    code = example(hook)
    with pytest.raises(DuplicateNameError) as dup:
        catalog_of(module_from(code, "first"), module_from(code, "second"))
    assert "'first'" in str(dup.value) and "'second'" in str(dup.value), "the error names both plugins"
    raised[type(dup.value)] = dup.value
    assert set(raised) == set(documented), (
        f"{hook}: documented {sorted(documented.values())}, raised "
        f"{sorted(f'{type(e).__module__}.{type(e).__name__}' for e in raised.values())}")


def test_the_documented_error_classes_are_what_the_docstrings_say():
    assert issubclass(RegistrationError, TypeError) and issubclass(RegistrationError, UsageError)
    assert issubclass(SuiteError, UsageError)
    assert not issubclass(TypeError, RegistrationError)


def test_a_lenient_catalog_keeps_the_first_and_lists_the_clash():
    code = example("register_learners")
    first, second = module_from(code, "first"), module_from(code, "second")
    cat = catalog_of(first, second, strict=False)
    assert cat.learners["my-zero"] is first.Zero and cat.learners.owner("my-zero") == "first"
    assert [type(c) for c in cat.clashes] == [DuplicateNameError]


def test_a_misnamed_argument_is_refused_when_the_plugin_is_added():
    pm = make_plugin_manager(entry_points=False, core=False)
    with pytest.raises(pluggy.PluginValidationError):
        pm.add(plugin("misnamed", register_learners=lambda reg: None), "misnamed", "test")


# The examples.


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_example_compiles(hook):
    compile(example(hook), f"<{hook} example>", "exec")


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_example_registers_what_it_says(hook, my_package):
    code = example(hook)
    expected = expected_names(hook, code)
    assert expected, f"{hook}: the example names nothing it registers"
    module = module_from(code, f"example_{hook}")
    pm = make_plugin_manager(entry_points=False, core=False)
    pm.add(module, "example", "docstring")
    assert [p.hooks for p in pm.info()] == [[hook]], "the example implements another hook"
    cat = build_catalog(pm)
    assert registered(cat, hook) == expected
    for other in set(HOOKS) - {hook}:
        assert registered(cat, other) == set(), f"{hook}'s example registered a {FIELD[other]} entry"
    for name in expected:
        assert getattr(cat, FIELD[hook]).owner(name) == "example"
    if hook != "register_suites":
        classes = {c.name: c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__}
        assert {n: getattr(cat, FIELD[hook])[n] for n in expected} == {n: classes[n] for n in expected}


def test_the_task_and_learner_examples_work_together():
    task = catalog_of(module_from(example("register_tasks"), "t")).tasks["my-slope"]()
    ep = task.sample(4, generator=torch.Generator().manual_seed(0), device="cpu")
    assert (ep.context_x.shape, ep.query_y.shape) == ((4, 10, 1), (4, 1))
    assert torch.allclose(ep.context_y / ep.context_x, (ep.query_y / ep.query_x)[:, None].expand(4, 10, 1))
    learner = catalog_of(module_from(example("register_learners"), "l")).learners["my-zero"]()
    assert torch.equal(learner.predict(ep), torch.zeros(4, 1))


def test_the_tracker_example_logs(tmp_path, capsys):
    tracker = catalog_of(module_from(example("register_trackers"), "tr")).trackers["my-print"](tmp_path)
    tracker.start("run", {})
    tracker.log(3, {"loss": 0.5})
    tracker.finish()
    assert capsys.readouterr().out == "[run] step 3: {'loss': 0.5}\n"


# README.md


def writing_a_plugin() -> str:
    text = README.read_text()
    m = re.search(r"^## Writing a plugin\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert m, "README.md has no '## Writing a plugin' section"
    return m.group(1)


def test_readme_writing_a_plugin_names_every_hook():
    section = writing_a_plugin()
    # in backticks in the text (`register_tasks(register)`), or implemented in its example code
    named = {h for h in HOOKS if re.search(rf"`{h}\b[^`]*`|^def {h}\(", section, flags=re.M)}
    assert named == set(HOOKS), f"README.md's 'Writing a plugin' does not name: {sorted(set(HOOKS) - named)}"
