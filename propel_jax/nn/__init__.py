"""Flax NNX layers, the paper's CNN and the output heads (extra `experiments`)."""

from propel_jax import _extras

_extras.require('propel_jax.nn', 'experiments', ('flax', 'ml_collections'))
