"""A training's progress off a terminal: plain lines at its held-out evaluations (step, loss,
time, time left), where it resumed, when it came from the cache, and one closing line; the
numbers are the curve's."""

from __future__ import annotations

import io
import re

import pytest
import torch

from iclbench.checkpoints import Checkpoint
from iclbench.plugin_api import TrainConfig
from iclbench.train_progress import TrainProgress, duration, training_of
from iclbench.training import meta_train
from iclbench_plugins.tasks.linear_regression import LinearRegression

CFG = TrainConfig(steps=40, batch_size=16, eval_every=10, eval_tasks=32, checkpoint_every=20)


def loss_fn(model, episode):  # a context-free linear model: enough to train and to be evaluated
    return 0.5 * ((model(episode.query_x) - episode.query_y) ** 2).sum(-1).mean()


def train(checkpoint=None, monitors=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    with training_of("linear-regression, seed 3"):
        return meta_train(model, loss_fn, LinearRegression(), CFG, generator=torch.Generator().manual_seed(1),
                          device="cpu", lr=1e-2, checkpoint=checkpoint, monitors=monitors, desc="toy")


def lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_a_line_per_evaluation_and_a_closing_line(capsys, monkeypatch):
    monkeypatch.setenv("ICLBENCH_PROGRESS_SECONDS", "0")
    result = train()
    out = lines(capsys)
    assert len(out) == 5 and all(line.startswith("toy (linear-regression, seed 3): ") for line in out)
    for line, row in zip(out, result.curve):
        step, loss = re.search(r"step (\d+)/40, held-out loss ([0-9.e+-]+), .* elapsed, about .* left", line).groups()
        assert int(step) == row["step"] and float(loss) == pytest.approx(row["eval_loss"], rel=1e-3)
    assert re.search(r"trained 40 steps in \d+ s, held-out loss ", out[-1])


def test_lines_are_rate_limited_but_the_last_step_is_shown(capsys, monkeypatch):
    monkeypatch.setenv("ICLBENCH_PROGRESS_SECONDS", "3600")
    train()
    out = lines(capsys)
    assert [re.search(r"step (\d+)/", line).group(1) for line in out[:-1]] == ["10", "40"]  # first, then last


def test_resumed_and_cached_trainings_say_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ICLBENCH_PROGRESS_SECONDS", "3600")
    ckpt = Checkpoint(tmp_path, "toy")
    calls = []

    def killer(model, held_out):  # the third evaluation (step 30), after the step-20 checkpoint
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return 0.0

    with pytest.raises(KeyboardInterrupt):
        train(ckpt, {"kill": killer})
    capsys.readouterr()
    resumed = train(ckpt)
    out = lines(capsys)
    assert out[0] == "toy (linear-regression, seed 3): resumed at step 20 of 40" and resumed.resumed_at == 20
    assert "trained 40 steps in" in out[-1] and "(steps 21-40, resumed)" in out[-1]
    cached = train(ckpt)
    out = lines(capsys)
    assert cached.from_cache and len(out) == 1
    assert out[0].startswith("toy (linear-regression, seed 3): loaded from cache (40 steps, held-out loss ")
    assert f"{cached.curve[-1]['eval_loss']:.4g}" in out[0]


def test_off_silences_and_a_terminal_gets_a_bar(monkeypatch):
    monkeypatch.setenv("ICLBENCH_PROGRESS", "off")
    stream = io.StringIO()
    quiet = TrainProgress(10, "toy", stream=stream)
    quiet.say("hello")
    quiet.held_out([1.0])
    assert quiet.mode == "off" and stream.getvalue() == ""
    monkeypatch.delenv("ICLBENCH_PROGRESS")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    with TrainProgress(10, "toy", stream=Terminal()) as bar:
        assert bar.mode == "bar" and bar.bar is not None
    terminal = Terminal()
    note = TrainProgress(10, "toy", stream=terminal, bar=False)  # one message, no bar left behind
    note.say("loaded from cache")
    assert note.bar is None and terminal.getvalue() == "toy: loaded from cache\n"


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (4.2, 65, 3 * 3600 + 125)] == ["4 s", "1 min 05 s", "3 h 02 min"]
