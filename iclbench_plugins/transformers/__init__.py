"""Transformers that learn in context (von Oswald et al. 2023): model, GD constructions, learners, analyses."""
