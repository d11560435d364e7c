# Two commands on a fresh machine with only python3:  `make lab`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test test-fast benchmarks checkpoints clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

## Start JupyterLab on the notebooks.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

## Every unit test, then every notebook top to bottom under nbval (a cell may take at most 600 s).
test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=600

## Unit tests only.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests

## Speed benchmarks (print ratios against baselines measured in the same run).
benchmarks: $(STAMP)
	$(BIN)/python benchmarks/sinusoid_meta_step.py
	$(BIN)/python benchmarks/widget_latency.py

## Retrain the shipped checkpoints with the paper's schedules.
checkpoints: $(STAMP)
	$(BIN)/python -m helpers train sinusoid_maml --fresh

clean:
	rm -rf $(VENV) .pytest_cache
