"""What stands behind a leaderboard: commits, versions, devices, task counts, seeds, and per
learner its plugin and the hyperparameters tuned for each suite and seed, all read from the
records, so a published table says which code on which machine made its numbers.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pandas as pd

from iclbench.merge import status
from iclbench.store import to_strict_json as strict

Record = dict[str, Any]


def distinct(values: list[Any]) -> list[Any]:
    """The distinct non-None values in a canonical order (by their JSON text)."""
    texts = {json.dumps(strict(v), sort_keys=True) for v in values if v is not None}
    return [json.loads(t) for t in sorted(texts, key=lambda t: (len(t), t))]


def one_or_many(values: list[Any]) -> Any:
    """The single distinct value, else the list (which says that records disagree), None if none."""
    return values[0] if len(values) == 1 else (values or None)


def collect(records: list[Record]) -> dict[str, Any]:
    """The provenance of `records` as a JSON-ready object."""
    names = sorted({k for r in records for k in (r.get("versions") or {})})
    learners: dict[str, dict[str, Any]] = {}
    hyper: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    plugins: dict[str, list] = defaultdict(list)
    tasks: dict[str, list] = defaultdict(list)
    for r in records:
        prov = r.get("provenance") or {}
        plugins[r["label"]].append(prov.get("learner"))
        if r.get("task"):
            tasks[r["task"]].append(prov.get("task"))
        if r.get("hyperparameters"):
            hyper[r["label"]][r["suite"]][str(r["seed"])].append(r["hyperparameters"])
    for label in sorted(plugins):
        tuned = {suite: {seed: one_or_many(distinct(hps)) for seed, hps in sorted(by_seed.items(), key=seed_key)}
                 for suite, by_seed in sorted(hyper[label].items())}
        learners[label] = {"plugin": one_or_many(distinct(plugins[label])), "hyperparameters": tuned}
    return {
        "records": len(records),
        "status": dict(sorted(Counter(status(r) for r in records).items())),
        "commits": distinct([r.get("git_commit") for r in records]),
        "versions": {n: distinct([(r.get("versions") or {}).get(n) for r in records]) for n in names},
        "devices": distinct([r.get("device") for r in records]),
        "device_types": distinct([r.get("device_type") for r in records]),
        "dtypes": distinct([r.get("dtype") for r in records]),
        "n_tasks": sorted(distinct([r.get("n_tasks") for r in records])),
        "seeds": sorted(distinct([r.get("seed") for r in records]), key=lambda s: seed_key((str(s), None))),
        "learners": learners,
        "tasks": {name: one_or_many(distinct(p)) for name, p in sorted(tasks.items()) if distinct(p)},
        "failures": sorted(({"suite": r["suite"], "learner": r["label"], "task": r["task_label"], "seed": r["seed"],
                             "stage": r.get("stage"), "error": r.get("error")} for r in records if status(r) == "failed"),
                           key=lambda f: json.dumps(f, sort_keys=True)),
    }


def seed_key(item: tuple[str, Any]) -> tuple:
    seed = item[0]
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return number(v[0]) if len(v) == 1 else "[" + ", ".join(number(x) for x in v) + "]"
    return str(v)


def plugin_text(p: Any) -> str:
    """`plugin (source, sha256 0123456789ab)`; several when the records disagree."""
    if not p:
        return ""
    if isinstance(p, list):
        return " or ".join(plugin_text(x) for x in p)
    extra = [p.get("source") or "", f"sha256 {p['sha256'][:12]}" if p.get("sha256") else ""]
    extra = [e for e in extra if e]
    return f"{p.get('plugin', '?')}" + (f" ({', '.join(extra)})" if extra else "")


def hyper_text(tuned: dict[str, dict[str, Any]]) -> str:
    """Each hyperparameter's value per seed, once for the suites that share them:
    `linear, linear-ood, seeds 0/1/2: eta 6.1/6.0/6.2`."""
    suites: dict[str, list[str]] = {}
    for suite, by_seed in tuned.items():
        values = [v if isinstance(v, dict) else {} for v in by_seed.values()]
        names = list(dict.fromkeys(k for v in values for k in v))
        parts = [f"{n} " + "/".join(number(v[n]) if n in v else "–" for v in values) for n in names]
        parts += [f"seed {s}: differs between records" for s, v in by_seed.items() if not isinstance(v, dict)]
        suites.setdefault(f"seeds {'/'.join(by_seed)}: " + "; ".join(parts), []).append(suite)
    return "<br>".join(f"{', '.join(names)}, {text}" for text, names in suites.items())


def first_line(error: str | None, limit: int = 120) -> str:
    """The error's first line, cut to `limit` characters: the footer names a failure, the JSON holds it whole."""
    lines = (error or "").strip().splitlines()
    line = lines[0] if lines else "no error text"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def markdown(prov: dict[str, Any]) -> str:
    """The footer of leaderboard.md: the same provenance as leaderboard.json, briefly."""
    joined = lambda xs: ", ".join(f"`{x}`" for x in xs) or "unknown"  # noqa: E731
    counts = ", ".join(f"{n} {s}" for s, n in prov["status"].items())
    lines = ["## Provenance", "", f"From {prov['records']} records ({counts}); every field below is in leaderboard.json.", "",
             f"- commits: {joined(prov['commits'])}",
             "- versions: " + ("; ".join(f"{n} {', '.join(map(str, v))}" for n, v in prov["versions"].items()) or "unknown"),
             f"- devices: {joined(prov['devices'])}; dtypes: {joined(prov['dtypes'])}",
             f"- seeds: {', '.join(map(str, prov['seeds']))}; evaluation tasks per (task, seed): "
             f"{', '.join(map(str, prov['n_tasks'])) or 'unknown'}"]
    lines += [f"- task `{name}`: {plugin_text(p)}" for name, p in prov["tasks"].items()]
    lines += [f"- failed: `{f['learner']}` on {f['suite']}/{f['task']}, seed {f['seed']}, in {f['stage'] or 'an unknown stage'}: "
              + first_line(f["error"]) for f in prov["failures"]]
    rows = [[label, plugin_text(d["plugin"]), hyper_text(d["hyperparameters"])] for label, d in prov["learners"].items()]
    rows = [row for row in rows if row[1] or row[2]]
    if rows:
        table = pd.DataFrame(rows, columns=["learner", "plugin", "tuned hyperparameters (per suite, per seed)"])
        table = table[[c for c in table.columns if c == "learner" or table[c].astype(bool).any()]]
        lines += ["", table.to_markdown(index=False, disable_numparse=True)]
    return "\n".join(lines) + "\n"
