# Two commands on a fresh machine with only python3:  `make lab`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NB ?= notebooks/01_sinusoid_maml.ipynb
PORT ?= 8866

.PHONY: lab test test-fast test-browser site present benchmarks checkpoints results clean

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
## The browser tests are left to `make test-browser`.
test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks -m "not browser" --nbval-lax --nbval-current-env --nbval-cell-timeout=600

## Unit tests only.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not browser"

## The widgets used in headless Chromium: JupyterLab runs each notebook, Voilà presents one (needs /usr/bin/chromium).
test-browser: $(STAMP)
	$(BIN)/python -m pytest tests/browser -m browser -v

## Execute every notebook and write a static site to site/: one page per notebook, an index, widgets as their last state.
site: $(STAMP)
	$(BIN)/python tools/build_site.py --out site

## Present a notebook as an app without its code cells (Voilà), e.g. make present NB=notebooks/02_baselines_pretrain_oracle.ipynb
present: $(STAMP)
	$(BIN)/voila $(NB) --no-browser --Voila.ip=127.0.0.1 --port=$(PORT) --show_tracebacks=True

## Speed benchmarks (print ratios against baselines measured in the same run).
benchmarks: $(STAMP)
	$(BIN)/python benchmarks/sinusoid_meta_step.py
	$(BIN)/python benchmarks/widget_latency.py

## Retrain the shipped checkpoints with the paper's schedules.
checkpoints: $(STAMP)
	$(BIN)/python -m helpers train sinusoid_maml --fresh
	$(BIN)/python -m helpers train sinusoid_maml --fresh --seed 1 --out data/checkpoints/sinusoid_maml_seed1.pt
	$(BIN)/python -m helpers train sinusoid_pretrained --fresh
	$(BIN)/python -m helpers train sinusoid_oracle --fresh

## After a training leg: complete the checkpoints' records, then rewrite the README's and docs' tables from them.
results: $(STAMP)
	$(BIN)/python tools/record_validation_tasks.py
	$(BIN)/python tools/record_test_history.py
	$(BIN)/python -m helpers results --update-readme --update-docs

clean:
	rm -rf $(VENV) .pytest_cache
