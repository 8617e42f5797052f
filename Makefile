# propel_jax: `make test` and `make demo` set up .venv themselves on a fresh machine.
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Two workers: CI machines have two cores; tests each keep to one XLA thread pool.
PYTEST_WORKERS ?= 2

.PHONY: install test demo bench clean

$(STAMP): requirements.txt requirements-torch.txt setup.cfg pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -r requirements.txt -r requirements-torch.txt
	$(PYTHON) -m pip install -q --no-deps -e .
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) tests

# `make demo`: build the synthetic ambiguous hands, train PROPEL on them for a few minutes on
# the CPU, evaluate, and say where the results are. Rerunning resumes (or just re-evaluates) the
# run in DEMO_DIR; `rm -rf` it to start over.
DEMO_DIR ?= /tmp/propel_jax_demo
demo: $(STAMP)
	$(PYTHON) -m propel_jax.datasets.build --dataset=synthetic_hands/ambiguous
	$(PYTHON) -m experiments.train --config=experiments/configs/synthetic.py:demo \
	    --workdir=$(DEMO_DIR)
	$(PYTHON) -m experiments.evaluate --workdir=$(DEMO_DIR)
	@echo "Metrics: $(DEMO_DIR)/eval_metrics.json (per-example outputs: eval_outputs.npz)"
	@echo "Plots:   $(DEMO_DIR)/plots/ (predicted_vs_true.png, density_*.png)"
	@echo "Log:     $(DEMO_DIR)/metrics.jsonl; TensorBoard: tensorboard --logdir=$(DEMO_DIR)"

bench: $(STAMP)
	$(PYTHON) benchmarks/loss_benchmark.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
