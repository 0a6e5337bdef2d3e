# The two commands a newcomer needs: `make dev` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: dev test lint install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
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
	@$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; fi; \
	exit $$status

clean:
	-$(BIN)/notify-pipeline db stop
	rm -rf $(VENV) .notify_data .pytest_cache .ruff_cache
