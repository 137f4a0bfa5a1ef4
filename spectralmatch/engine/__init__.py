"""Windowed passes over a collection, as side-effect-free tasks run by an executor."""
