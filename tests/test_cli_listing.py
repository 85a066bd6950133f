"""`iclbench list` and `iclbench plugins`: every registered name says what it is, columns
align whatever the names' lengths, `--json` gives the same rows as data; warnings print as one
line."""

from __future__ import annotations

import json
import warnings

import pytest

from iclbench import cli
from iclbench.cli import main

KINDS = ["learners", "tasks", "suites", "analyses", "reproductions", "executors", "trackers"]


@pytest.mark.parametrize("what", KINDS)
def test_every_registered_name_has_a_description(capsys, what):
    assert main(["list", what, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(set(r) == {"name", "plugin", "description"} for r in rows)
    assert [r["name"] for r in rows if not r["description"].strip()] == []


def test_columns_align_past_twenty_characters(capsys):
    assert main(["plugins"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(lines)
    width = max(len(r["name"]) for r in rows)
    for line, row in zip(lines, rows):  # the source column starts at one place on every line
        assert line.startswith(row["name"]) and line[width + 2:].startswith(row["source"])


def test_a_warning_is_one_line_without_source(monkeypatch):
    seen = []

    def command(args):  # what a warning raised inside a command prints
        seen.append(warnings.formatwarning("something to know", UserWarning, "/x/y.py", 3, "raise Something()"))
        seen.append(warnings.formatwarning("old", DeprecationWarning, "/x/y.py", 3))
        return 0

    monkeypatch.setattr("iclbench.commands.run", command)
    assert main(["list", "learners"]) == 0
    assert seen == ["iclbench: warning: something to know\n", "iclbench: warning: old (DeprecationWarning)\n"]
    assert warnings.formatwarning is not cli.one_line_warning  # restored after the command


def test_quiet_prints_nothing_but_problems(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ICLBENCH_PROGRESS_SECONDS", "0")  # a training would print a line per evaluation
    args = ["--learners", "zero,lsa[train.steps=20,train.eval_every=10,train.batch_size=64]", "--n-tasks", "100",
            "--device", "cpu", "--out", str(tmp_path)]
    assert main(["evaluate", *args, "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["evaluate", *args, "--force"]) == 0  # the same run, not quiet: tables and lines
    out, err = capsys.readouterr()
    assert "zero" in out and "loaded from cache" in err and "records in" in err
    assert main(["analyze", "weights", "--analysis-config", "learner=lsa[train.steps=20,train.eval_every=10,"
                 "train.batch_size=64]", "--n-tasks", "100", "--device", "cpu", "--out", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
