"""The default executor, `local`: evaluation in this process, as iclbench always ran it; on a
CPU, `reproduce --jobs N` first trains in N single-threaded worker processes (`pretrain`),
and `--stack-seeds` trains a configuration's seeds as one model. It belongs to the core, which
registers it in every plugin manager (`plugins.make_plugin_manager`) through the same hook a
backend plugin uses; other backends (`ray`) are plugins.
"""

from __future__ import annotations

from iclbench.checkpoints import cache_dir
from iclbench.executors import Executor, ExecutorError, Outcome
from iclbench.hookspecs import hookimpl


class LocalExecutor(Executor):
    name = "local"
    description = "this process; on a CPU, `reproduce --jobs N` trains in N worker processes first (the default)"

    def __init__(self, options=None) -> None:
        super().__init__(options)
        if self.options.address:
            raise ExecutorError(f"--ray-address {self.options.address} needs --executor ray; "
                                "the local executor runs on this machine")

    def pretrain(self, catalog, runs, seeds, device, cache, progress) -> None:
        stack = self.options.stack_seeds if cache is not None else None
        if stack or (self.options.jobs > 1 and cache is not None and device.type == "cpu"):
            from iclbench.pretrain import pretrain, train_jobs

            jobs = train_jobs(catalog, runs, seeds)
            pretrain(jobs, self.options.jobs, device, cache, self.options.plugin_files, progress, stack=stack)

    def evaluate(self, catalog, plans, store, cache, progress=None, announce=None) -> Outcome:
        from iclbench.runner import Evaluation

        outcome = Outcome()
        with cache_dir(cache):
            for i, plan in enumerate(plans):
                if announce:
                    announce(i)
                evaluation = Evaluation(catalog, plan, store, progress=progress)
                outcome.records += evaluation.run()
                outcome.failures += evaluation.failures
        return outcome


@hookimpl
def register_executors(register) -> None:
    register(LocalExecutor)
