"""The built-in experiment trackers: TensorBoard and Weights & Biases (`--track NAME`).

Each mirrors a training's curve rows under the tracking folder; neither is needed to run
iclbench (`pip install iclbench[tracking]` installs both).
"""

from __future__ import annotations

import json
import netrc
import os
import re
from typing import Any
from urllib.parse import urlparse

import iclbench
from iclbench.plugin_api import Tracker


def folder_name(run_name: str) -> str:
    """`run_name` as one folder name: no separators, spaces or shell-unfriendly characters."""
    return re.sub(r"[^\w.,=+\-\[\]()]", "_", run_name)


class TensorBoardTracker(Tracker):
    """One SummaryWriter run folder per training, `<folder>/tensorboard/<run name>`; each curve
    column is a scalar of the same name. A resumed training writes into the same folder and
    hides what the interrupted one logged after its resumption step (`purge_step`)."""

    name = "tensorboard"
    requires = ("tensorboard",)

    def start(self, run_name: str, config: dict[str, Any], first_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.folder / "tensorboard" / folder_name(run_name)), purge_step=first_step + 1)
        if first_step == 0:
            self.writer.add_text("config", f"```\n{json.dumps(config, indent=1, default=str)}\n```", 0)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def finish(self) -> None:
        self.writer.close()


def wandb_api_key_configured() -> bool:
    """Whether W&B has credentials here: $WANDB_API_KEY or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbTracker(Tracker):
    """One W&B run per training, named like the TensorBoard folder, with the learner, task,
    seed and training config as its config; files under `<folder>/wandb/`. The mode is
    $WANDB_MODE, else offline when no API key is configured (works without a network;
    `wandb sync` uploads later). Project: $WANDB_PROJECT, else `iclbench`."""

    name = "wandb"
    requires = ("wandb",)

    def start(self, run_name: str, config: dict[str, Any], first_step: int = 0) -> None:
        import wandb

        self.folder.mkdir(parents=True, exist_ok=True)
        mode = None if os.environ.get("WANDB_MODE") else ("online" if wandb_api_key_configured() else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "iclbench", name=run_name,
                              config={**config, "first_step": first_step}, dir=str(self.folder), mode=mode,
                              reinit=_reinit(wandb.__version__), settings=wandb.Settings(console="off"))

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def finish(self) -> None:
        self.run.finish()


def _reinit(version: str) -> str | bool:
    """Runs side by side where wandb allows it (0.19.10 on), else one run at a time."""
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    return "create_new" if parts >= (0, 19, 10) else True


@iclbench.hookimpl
def register_trackers(register) -> None:
    register(TensorBoardTracker)
    register(WandbTracker)
