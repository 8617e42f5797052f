"""Experiment binaries (absl) and their ml_collections configs."""
