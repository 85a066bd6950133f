"""`describe`: learners, tasks, analyses, suites and reproductions described from the catalog."""

from __future__ import annotations

import re
from typing import Literal

import pytest
from pydantic import Field

from iclbench.config import EXECUTION_ONLY, StrictConfig
from iclbench.describe import EXECUTION_NOTE, describe, example_overrides, option_rows, type_name


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every aligned table in `text`, as rows keyed by column header (cells located by the
    dashed rule under the header, so empty cells do not shift later columns)."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if i == 0 or not re.fullmatch(r"\s*-+(\s+-+)*", line):
            continue
        spans = [m.span() for m in re.finditer(r"-+", line)]
        spans[-1] = (spans[-1][0], None)
        cells = lambda row: [row[a:b].strip() for a, b in spans]  # noqa: E731
        headers = cells(lines[i - 1])
        rows = []
        for row in lines[i + 1:]:
            if not row.strip():
                break
            rows.append(dict(zip(headers, cells(row))))
        out.append(rows)
    return out


def options(text: str) -> dict[str, dict[str, str]]:
    """The option table of a learner, task or analysis description, keyed by option name."""
    table = next(t for t in tables(text) if t and "option" in t[0])
    return {row["option"]: row for row in table}


def test_gd_lists_every_option_with_default_bounds_and_description(catalog):
    text = describe(catalog, "gd")
    assert text.splitlines()[0] == "learner gd (plugin gradient-descent: iclbench 0.1.0)"
    rows = options(text)
    assert list(rows) == ["steps", "per_step", "eta", "tune_tasks", "clip"]
    expected = {"steps": "1", "per_step": "False", "eta": "None", "tune_tasks": "10000", "clip": "None"}
    assert {k: r["default"] for k, r in rows.items()} == expected
    fields = catalog.learners["gd"].Config.model_fields
    assert all(rows[k]["description"] == fields[k].description for k in rows)
    assert rows["steps"]["type"] == "int" and rows["steps"]["bounds"] == ">= 1"
    assert rows["eta"]["type"] == "float | list[float] | None" and rows["eta"]["bounds"] == ""
    assert "K steps of gradient descent on the context" in text  # the summary: the class docstring
    assert text.splitlines()[-1] == "example: gd[steps=2,per_step=true]"


def test_lsa_flattens_the_training_config_and_marks_execution_only_fields(catalog):
    rows = options(describe(catalog, "lsa"))
    assert "train" not in rows
    assert rows["train.steps"]["default"] == "5000" and rows["train.steps"]["bounds"] == ">= 0"
    assert rows["train.eval_every"]["description"].endswith(EXECUTION_NOTE)
    assert EXECUTION_NOTE not in rows["train.steps"]["description"]
    assert rows["attention"]["type"] == "'linear' | 'softmax' | list['linear' | 'softmax']"
    assert rows["train.beta1"]["bounds"] == ">= 0, < 1"
    assert rows["clip"]["type"] == "float | None"


def test_task_lists_its_config_keys_with_defaults(catalog):
    text = describe(catalog, "linear-regression")
    assert text.startswith("task linear-regression (plugin linear-regression: ")
    rows = options(text)
    fields = catalog.tasks["linear-regression"].Config.model_fields
    assert list(rows) == list(fields)
    assert {k: r["default"] for k, r in rows.items()} == {k: repr(f.default) for k, f in fields.items()}
    assert rows["N"]["default"] == "10" and rows["input"]["default"] == "'uniform'"
    assert rows["noise_std"]["description"] == "label noise on every y, context and query"
    assert "example: --task linear-regression --task-config N=20,d=20" in text


def test_suite_lists_every_eval_label_with_its_coordinates(catalog):
    text = describe(catalog, "linear-ood")
    evals = next(t for t in tables(text) if t and "label" in t[0])
    labels = [e.label for e in catalog.suites.spec("linear-ood").eval]
    assert [r["label"] for r in evals] == labels
    assert {"linear", "input-range=2", "teacher-scale=5", "N=40"} <= set(labels)  # includes resolved
    by_label = {r["label"]: r for r in evals}
    assert by_label["linear"]["in-distribution"] == "yes"
    assert by_label["input-range=2"] == {
        "label": "input-range=2", "task": "linear-regression", "config": "input_low=-1.0,input_high=1.0",
        "group": "input range", "value": "2", "in-distribution": "no"}
    assert "includes: linear" in text and "train:    linear-regression (default config)" in text


def test_reproduction_names_its_budgets_runs_and_analyses(catalog):
    text = describe(catalog, "paper")
    assert text.startswith("reproduction paper (plugin paper: ")
    assert "budget full: train_steps=5000, n_tasks=10000" in text
    assert "budget small: train_steps=500, n_tasks=2000" in text
    assert "copy-tf" in text and "steps=10000,eval_every=500" in text
    assert "suite linear-ood, aligned to gd:" in text
    assert {r["analysis"] for r in tables(text)[-1]} == {"interpolation", "interpolation-ood", "repeated", "weights", "gd++-conditioning", "sine-functions", "softmax-heads", "label-coupling"}


def test_analysis_is_described_like_a_learner(catalog):
    text = describe(catalog, "interpolation")
    rows = options(text)
    assert rows["alpha"]["bounds"] == ">= 0, <= 1" and rows["learner"]["default"] == "'lsa'"
    assert text.splitlines()[-1].startswith("example: iclbench analyze interpolation --analysis-config ")


def test_a_name_of_several_kinds_is_described_once_per_kind(catalog):
    text = describe(catalog, "sine")
    assert text.splitlines()[0] == "'sine' names a task and a suite"
    assert "\ntask sine (plugin sine: " in text and "\nsuite sine (plugin suites: " in text
    only = describe(catalog, "sine", "suite")
    assert only.startswith("suite sine ") and "\ntask sine " not in only


def test_unknown_names_suggest_the_closest(catalog):
    with pytest.raises(LookupError, match="did you mean 'gd'"):
        describe(catalog, "gdd")
    with pytest.raises(LookupError, match="unknown suite 'gd'"):
        describe(catalog, "gd", "suite")
    with pytest.raises(ValueError, match="kind must be one of"):
        describe(catalog, "gd", "model")


class Inner(StrictConfig):
    rate: float = Field(0.5, gt=0, le=1, description="a rate")
    period: int = Field(10, ge=1, description="how often", json_schema_extra=EXECUTION_ONLY)


class Outer(StrictConfig):
    mode: Literal["a", "b"] = "a"
    inner: Inner = Field(default_factory=Inner)


def test_option_rows_of_a_nested_config():
    rows = {r[0]: r for r in option_rows(Outer)}
    assert rows["mode"] == ["mode", "'a' | 'b'", "'a'", "", ""]
    assert rows["inner.rate"] == ["inner.rate", "float", "0.5", "> 0, <= 1", "a rate"]
    assert rows["inner.period"][4] == f"how often {EXECUTION_NOTE}"


def test_examples_are_valid_and_skip_execution_only_fields():
    assert example_overrides(Outer) == {"mode": "b", "inner.rate": 1.0}
    assert example_overrides(Inner) == {"rate": 1.0}
    assert type_name(dict[str, int] | None) == "dict[str, int] | None"
