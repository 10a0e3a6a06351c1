# Two commands do all set-up on a fresh machine: `make demo` and `make test`. They install everything:
# the lean runtime (`pip install routecast`), the training stack ([train]), the MLflow UI ([ui]) and
# the test tools ([test]).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Bytecode is compiled at install time: with PYTHONDONTWRITEBYTECODE=1 set on this machine,
# importing torch/lightning/mlflow from source costs ~16 s per process otherwise.
INSTALL_ENV := PYTHONDONTWRITEBYTECODE=

.PHONY: venv demo test bench clean help

help:
	@echo "make demo  - create .venv, install routecast, train routers on the built-in data, print the leaderboard"
	@echo "make test  - same set-up, then the whole test suite"
	@echo "make bench - the benchmarks under benchmarks/ (slow; results in benchmarks/results/)"

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(INSTALL_ENV) $(BIN)/pip install --quiet --disable-pip-version-check -e ".[train,ui,test,ray]"
	$(INSTALL_ENV) $(BIN)/python -m compileall -q -j 2 $(VENV)/lib > /dev/null || true
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/routecast demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
