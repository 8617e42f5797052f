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

demo: $(STAMP)
	$(PYTHON) -m experiments.loss_demo

bench: $(STAMP)
	$(PYTHON) benchmarks/loss_benchmark.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
