# The two commands a newcomer needs: `make dev` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Every package pinned (pip freeze of a working venv): the same set on every machine and in CI.
CONSTRAINTS := constraints.txt

.PHONY: dev test lint install clean audit constraints

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade -c $(CONSTRAINTS) pip setuptools
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the product locally: embedded PostgreSQL, migrations, Dagster UI on http://127.0.0.1:3000
dev: $(STAMP)
	$(BIN)/notify-pipeline dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Lint, then the test suite on a real PostgreSQL (embedded, or NOTIFY_TEST_DATABASE_URL)
test: lint
	@$(BIN)/pytest -n 2 --durations=25; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; fi; \
	exit $$status

## Known vulnerabilities of the installed packages (pip-audit; needs the network to PyPI's advisories)
audit: $(STAMP)
	@test -x $(BIN)/pip-audit || $(BIN)/pip install --quiet -c $(CONSTRAINTS) pip-audit
	$(BIN)/pip-audit --skip-editable --progress-spinner off

## After changing pyproject.toml's dependencies: install them unconstrained, then pin the result
constraints:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	{ sed -n '1,3p' $(CONSTRAINTS); $(BIN)/pip freeze --all --exclude-editable | grep -v '^#'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	@touch $(STAMP)

clean:
	-$(BIN)/notify-pipeline db stop
	rm -rf $(VENV) .notify_data .pytest_cache .ruff_cache
