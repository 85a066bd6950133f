"""The base of every usage error: something asked for is unusable and nothing has run.

It lives below every other module (it imports nothing of iclbench), so configs, registries,
plugin loading and workload estimates can all raise subclasses of it without an import
circle. `iclbench.api.UsageError` is this class; the command line exits 2 on it.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Something asked for is unusable (a bad option, name or value); nothing has run."""
