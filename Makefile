# The README's two commands: `make verify` (failover verification on the embedded emulator) and
# `make test` (every check CI runs). Both bootstrap what they need first.
SHELL := /bin/bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c
ENV := source .build/env.sh &&
EXAMPLES := $(wildcard examples/*/)

.PHONY: verify test bootstrap lint terraform-checks terraform-test pytest-unit checkov harness docs bench

verify: bootstrap ## Failover verification: `pytest harness` on the embedded emulator.
	$(ENV) pytest harness $(PYTEST_ARGS)

test: bootstrap lint terraform-checks terraform-test pytest-unit checkov harness ## Everything CI runs.

bootstrap:
	@scripts/bootstrap.sh

lint:
	$(ENV) terraform fmt -check -recursive
	$(ENV) ruff check natkit harness tests bench
	$(ENV) ruff format --check natkit harness tests bench

terraform-checks:
	$(ENV) terraform init -backend=false -input=false >/dev/null && terraform validate
	$(ENV) for dir in $(EXAMPLES); do \
	  (cd "$$dir" && terraform init -backend=false -input=false >/dev/null && terraform validate) || exit 1; \
	done

terraform-test:
	$(ENV) terraform test

pytest-unit:
	$(ENV) pytest tests $(PYTEST_ARGS)

checkov:
	$(ENV) .venv-checkov/bin/checkov --directory . --framework terraform --skip-download --quiet --compact \
	  --skip-path harness --skip-path examples --skip-path .build

harness:
	$(ENV) pytest harness $(PYTEST_ARGS)

docs: bootstrap ## Regenerates the README's inputs/outputs tables.
	$(ENV) python -m natkit.readme_tables --write

bench: bootstrap
	$(ENV) python bench/nat_throughput.py
