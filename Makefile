# propel_jax: `make test` and `make demo` set up .venv themselves on a fresh machine.
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
# torch 2.13.0: this project's CI image holds its CPU wheel locally (a plain `torch` from PyPI
# pulls several GB of CUDA libraries). Any torch >= 1.10 works with torchpropel.
TORCH ?= torch==2.13.0
# Two workers: CI machines have two cores; tests each keep to one XLA thread pool.
PYTEST_WORKERS ?= 2

.PHONY: install docs test test-fast mutate demo bench gpu-check clean

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -e '.[experiments,test,docs]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(PYTHON) -m pip install -q '$(TORCH)' -e '.[experiments,test,docs,bench]'
	touch $@

install: $(STAMP)

# The API reference from the docstrings and the guides in docs/, into site/ (mkdocs.yml). Strict:
# a broken link or a docstring that does not parse is an error, so `make test` catches them.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

# Everything: the docs, unit tests, doctests of the pure core, the examples, the slow end-to-end runs.
test: $(STAMP) docs
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) --doctest-modules propel_jax tests

# The fast tier: everything but the end-to-end runs marked `slow`.
test-fast: $(STAMP) docs
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) -m 'not slow' --doctest-modules propel_jax tests

# Hand-written mutation testing of the core, the input pipeline and the checkpoints: would the
# tests notice each of ~60 plausible bugs? Not part of `make test` (30-40 minutes on 2 cores);
# scores and the equivalent mutants: docs/testing.md.
mutate: $(STAMP)
	$(PYTHON) tools/mutate.py

# `make demo`: build the synthetic ambiguous hands, train PROPEL on them for a few minutes on
# the CPU, evaluate, and say where the results are. Rerunning resumes (or just re-evaluates) the
# run in DEMO_DIR; `rm -rf` it to start over.
DEMO_DIR ?= /tmp/propel_jax_demo
demo: $(STAMP)
	$(PYTHON) -m experiments.build_dataset --dataset=synthetic_hands/ambiguous
	$(PYTHON) -m experiments.train --config=experiments/configs/synthetic.py:demo \
	    --workdir=$(DEMO_DIR)
	$(PYTHON) -m experiments.evaluate --workdir=$(DEMO_DIR)
	@echo "Metrics: $(DEMO_DIR)/eval_metrics.json (per-example outputs: eval_outputs.npz)"
	@echo "Plots:   $(DEMO_DIR)/plots/ (predicted_vs_true.png, density_*.png)"
	@echo "Log:     $(DEMO_DIR)/metrics.jsonl; TensorBoard: $(VENV)/bin/tensorboard --logdir=$(DEMO_DIR)"

bench: $(BENCH_STAMP)
	$(PYTHON) benchmarks/loss_benchmark.py

# Where an accelerator is lent: the loss, training-step and evaluation benchmarks and the test
# suite in one call, with one summary (benchmarks/gpu_check.sh; `--cpu` sizes for a dry run).
gpu-check: $(BENCH_STAMP)
	PYTHON=$(PYTHON) bash benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache
