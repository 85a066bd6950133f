"""iclbench's built-in learners, task families and suites.

Each module is a plugin registered through the `iclbench` entry-point group, exactly as a
third-party package would register its own; the core special-cases none of them.
"""
