# Two commands for a new user: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench postgres clean fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pseudowa demo

# The PostgreSQL tests start their own throwaway server; this makes sure its binaries exist.
postgres:
	bash .ci/ensure-postgres

# mypy reads the folders under the names they install as (pseudowa.proxy, ...): a tree of
# links gives it that view without a build.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	mkdir -p .mypy_tree/pseudowa
	for d in proxy addons storage migrations; do ln -sfn ../../$$d .mypy_tree/pseudowa/$$d; done
	MYPYPATH=.mypy_tree $(BIN)/mypy -p pseudowa.proxy -p pseudowa.addons -p pseudowa.storage -p pseudowa.migrations

test: $(STAMP) postgres lint
	$(BIN)/python -m pytest

# The fake Graph API's property-based fuzz test with its long profile (20,000+ generated
# requests; `make test` runs a short one); prints the request and 5xx counts.
fuzz: $(STAMP)
	PSEUDOWA_FUZZ=long $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/proxy/sandbox/test_graph_fuzz.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .mypy_tree
