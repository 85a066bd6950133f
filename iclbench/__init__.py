"""iclbench: a benchmark harness for in-context learners on synthetic regression tasks.

The public plugin contract: subclass `Learner` / `Task` (each with a pydantic `Config`),
build batches as `Episode`s, and register them with `@hookimpl` functions.
"""

from iclbench.episode import Episode
from iclbench.hookspecs import hookimpl
from iclbench.learner import Learner, LearnerConfig
from iclbench.task import Task, TaskConfig

__version__ = "0.1.0"

__all__ = ["Episode", "Learner", "LearnerConfig", "Task", "TaskConfig", "hookimpl", "__version__"]
