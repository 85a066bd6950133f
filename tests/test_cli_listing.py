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
