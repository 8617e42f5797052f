"""Compares output heads on one dataset: the runner, the report and its plots."""
