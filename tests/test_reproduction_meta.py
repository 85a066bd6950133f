"""reproduction.json has a schema: a field of the wrong type is one line naming the file and the
field, never a KeyError in a render; Results work the same from records held in memory."""

from __future__ import annotations

import json

import pytest

from iclbench.cli import main
from iclbench.reproduce import ReproductionFileError, Results, read_meta, write_meta

RECORD = {"suite": "linear", "label": "gd", "task_label": "linear", "seed": 0, "status": "ok", "align_to": None,
          "in_distribution": True, "metrics": {"loss": 0.25, "loss_ci95": 0.01}}


@pytest.mark.parametrize("meta,field", [({"labels": {"gd": 3}}, "labels.gd"), ({"seeds": ["a"]}, "seeds.0"),
                                        ({"runs": [{"suite": "linear"}]}, "runs.0.learners"),
                                        ({"wall_seconds": "long"}, "wall_seconds")])
def test_a_malformed_field_is_named(tmp_path, capsys, meta, field):
    (tmp_path / "reproduction.json").write_text(json.dumps({"reproduction": "paper", **meta}))
    with pytest.raises(ReproductionFileError, match=f"reproduction.json: field {field}:"):
        read_meta(tmp_path)
    assert main(["publish", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"field {field}" in err and len(err.splitlines()) == 1


def test_written_meta_is_checked_and_old_folders_still_read(tmp_path):
    with pytest.raises(Exception, match="seeds"):
        write_meta(tmp_path, {"seeds": "0,1"})
    write_meta(tmp_path, {"labels": {}})  # a folder from before most fields existed
    assert read_meta(tmp_path) == {"labels": {}}


def test_results_from_records_look_up_as_from_a_folder(tmp_path):
    meta = {"labels": {"gd": "gd"}, "runs": [{"suite": "linear", "align_to": None, "learners": ["gd"]}]}
    stale = {**RECORD, "label": "lsa", "metrics": {"loss": 9.0}}  # a run no longer in the spec
    write_meta(tmp_path, meta)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (RECORD, stale)))
    on_disk, in_memory = Results(tmp_path), Results.from_records([RECORD, stale], meta=meta)
    assert in_memory.records == on_disk.records == [RECORD]
    assert in_memory.values("gd", "linear") == on_disk.values("gd", "linear") == [0.25]
