"""The content of the code that computes a number, so a stored number is reused only for it.

A record and a checkpoint are keyed on three digests (sha256 of file contents):
- `core`: the Python files of the `iclbench` package that compute (runner, metrics, training
  loops, tuning, analyses, executors, the plugin API) and every core module they import
  (`COMPUTE_ROOTS`); not the report layer or the command line, which only read records;
- the learner's code and the task's code: the module defining the class and every module it
  imports, transitively, from the same place: for an installed plugin package, its own
  modules (an editable install's working files included); for a `--plugin` file, the file and
  the local modules beside it that it imports.
Imports are read statically (ast), so a module counts whether or not it has run yet. A package
version or a file name alone does not decide anything: editing a file changes its digest,
and an untouched tree reuses everything.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import iclbench
from iclbench.class_source import source_digest

LOCAL_PLUGIN_PREFIX = "iclbench_local_plugin_"  # module names of `--plugin` files (iclbench.plugins)

_PINNED: dict[str, str] = {}  # a module file -> the digest its original had (plugin files shipped to workers)


def digest_files(paths: list[Path], root: Path) -> str:
    """sha256 over each file's path relative to `root` and its bytes, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(set(paths)):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


# The core's modules that compute, train, tune, analyse or run work, and the plugin API: the core
# digest covers them and every core module they import, transitively. The report layer (tables,
# plots, the site, verdicts, publishing) and the command line only read records, so editing them
# changes no stored number and reuses every record and checkpoint.
COMPUTE_ROOTS = ("__init__", "runner", "pretrain", "training", "stacked", "analysis", "tuning", "curriculum",
                 "plugin_api", "units", "local_executor", "request", "session")


def core_files() -> list[Path]:
    """The core files a stored number can depend on: `COMPUTE_ROOTS` and their import closure."""
    root = Path(iclbench.__file__).resolve().parent
    files: dict[Path, None] = {}
    for name in COMPUTE_ROOTS:
        module = "iclbench" if name == "__init__" else f"iclbench.{name}"
        files.update(dict.fromkeys(closure(root / f"{name}.py", root, "iclbench", module)))
    return sorted(files)


@lru_cache(maxsize=1)
def core_digest() -> str:
    """The digest of the core's computing part (`core_files`)."""
    root = Path(iclbench.__file__).resolve().parent
    return digest_files(core_files(), root)


def imported_names(tree: ast.AST, package: str) -> list[str]:
    """Absolute module names a module imports (`from a import b` may name module `a.b`);
    `package` resolves relative imports."""
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out += [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]
    return [n for n in out if n]


def module_file(name: str, root: Path, top: str | None) -> Path | None:
    """The file of module `name` when it lives under `root`: inside package `top`, or (for a
    plugin file, `top` None) a module or package beside it."""
    if top is not None and name.split(".")[0] != top:
        return None
    rel = name.split(".")[1:] if top is not None else name.split(".")
    if not rel:
        return root / "__init__.py" if (root / "__init__.py").is_file() else None
    for candidate in (root.joinpath(*rel).with_suffix(".py"), root.joinpath(*rel, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def closure(start: Path, root: Path, top: str | None, start_name: str) -> list[Path]:
    """`start` and every module under `root` it imports, transitively."""
    seen: dict[Path, None] = {}
    parts = start_name.split(".")
    parents = [module_file(".".join(parts[:i]), root, top) for i in range(1, len(parts))] if top else []
    todo = [(p.resolve(), ".".join(parts[:i + 1])) for i, p in enumerate(parents) if p is not None]
    todo.append((start.resolve(), start_name))
    while todo:
        path, name = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue  # its bytes are still hashed
        for imported in imported_names(tree, package):
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                target = module_file(".".join(parts[:i]), root, top)
                if target is not None:
                    todo.append((target.resolve(), ".".join(parts[:i])))
    return list(seen)


Stamp = tuple[tuple[str, int, int], ...]  # (path, mtime_ns, size) of each file a digest read
_DIGESTS: dict[str, tuple[str | None, Stamp]] = {}


def stamp(paths: list[Path]) -> Stamp:
    """What tells, without reading them, that files changed since a digest was taken."""
    out = []
    for p in sorted(paths):
        st = p.stat()
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def module_digest(module: str) -> str | None:
    """`compute_digest(module)`, taken again only when one of the files it read has changed
    (a long-lived session, such as a notebook, sees its edits)."""
    cached = _DIGESTS.get(module)
    if cached is not None:
        try:
            if stamp([Path(p) for p, _, _ in cached[1]]) == cached[1]:
                return cached[0]
        except OSError:
            pass
    digest, files = compute_digest(module)
    _DIGESTS[module] = (digest, stamp(files))
    return digest


def compute_digest(module: str) -> tuple[str | None, list[Path]]:
    """The digest of module `module` and what it imports from its own place (module docstring),
    with the files read; None when its source cannot be found (a class made at run time)."""
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(module) if not module.startswith(LOCAL_PLUGIN_PREFIX) else None
        except ValueError:  # a module with no spec: a notebook's __main__
            spec = None
        path = spec.origin if spec is not None else None
    if path is None or not Path(path).is_file():
        return None, []
    path = Path(path).resolve()
    if module.startswith(LOCAL_PLUGIN_PREFIX):  # a `--plugin` file: it and the local modules beside it
        files = closure(path, path.parent, None, path.stem)
        return plugin_file_digest(path), files
    top = module.split(".")[0]
    top_spec = importlib.util.find_spec(top)
    locations = list(top_spec.submodule_search_locations or []) if top_spec else []
    if not locations:  # an installed single-module plugin: its own file
        return digest_files([path], path.parent), [path]
    root = Path(locations[0]).resolve()
    files = closure(path, root, top, module)
    return digest_files(files, root), files


def plugin_file_digest(path: str | Path) -> str:
    """The digest of a `--plugin` file and the local modules beside it that it imports."""
    path = Path(path).resolve()
    if str(path) in _PINNED:
        return _PINNED[str(path)]
    return digest_files(closure(path, path.parent, None, path.stem), path.parent)


def class_digest(cls: type) -> str | None:
    """The digest of the code behind class `cls`: its module's closure, or where no file holds
    it (a class defined in a notebook), the class's own code (`class_source.source_digest`)."""
    digest = module_digest(cls.__module__)
    if digest is None:
        digest = source_digest(cls)
    return digest


def pin(path: str | Path, digest: str) -> None:
    """Take `digest` as the digest of the module at `path` (a plugin file copied to a worker,
    whose neighbours stayed on the driver)."""
    _PINNED[str(Path(path).resolve())] = digest
    _DIGESTS.clear()


def code_identity(learner_cls: type, task_cls: type) -> dict[str, str | None]:
    """What a number computed by this learner on this task depends on, as digests."""
    return {"core": core_digest(), "learner": class_digest(learner_cls), "task": class_digest(task_cls)}


@lru_cache(maxsize=1)
def git_dirty() -> bool | None:
    """Whether the iclbench source tree has uncommitted changes (None outside a git checkout)."""
    src = Path(iclbench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(src), "status", "--porcelain"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None

