"""README's example of a plugin that trains its own nn.Module through `meta_train` works as shown:
it meta-trains to one tuned GD step (the construction it can represent), aligned with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from iclbench.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def example() -> str:
    """The README's `tiny_lsa.py` code block."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith("# tiny_lsa.py")]
    return block


def test_the_readme_model_trains_through_meta_train_to_one_gd_step(tmp_path):
    plugin = tmp_path / "tiny_lsa.py"
    plugin.write_text(example())
    out = tmp_path / "out"
    assert main(["evaluate", "--plugin", str(plugin), "--learners", "tiny-lsa,gd,zero", "--align-to", "gd",
                 "--task", "linear-regression", "--n-tasks", "2000", "--device", "cpu", "--out", str(out),
                 "--quiet"]) == 0
    recs = {r["learner"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    tiny, gd, zero = (recs[n]["metrics"] for n in ("tiny-lsa", "gd", "zero"))
    assert tiny["loss"] < 0.6 * zero["loss"]  # it learned in context
    assert tiny["loss"] < 1.05 * gd["loss"] and tiny["sens_cos"] > 0.99  # to one tuned GD step, aligned
    curve = recs["tiny-lsa"]["fit_info"]["curve"]
    assert curve[-1]["eval_loss"] < curve[0]["eval_loss"] and curve[-1]["step"] == 300
    assert any((out / "checkpoints").glob("*.pt"))  # trained once, in the evaluation's cache
