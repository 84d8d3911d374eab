# The README's two commands: `make verify` (failover verification on the embedded emulator) and
# `make test` (every check CI runs). Both bootstrap what they need first.
SHELL := /bin/bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c
ENV := source .build/env.sh &&
EXAMPLES := $(wildcard examples/*/)

.PHONY: verify test bootstrap lint terraform-checks terraform-test terraform-test-provider-6 pytest-unit checkov harness docs bench

# One worker per lab, and a fifth, on two cores: each lab (one xdist_group: the largest work units,
# so xdist hands them out first) runs on its own worker from the start; much of a lab's time is
# waiting (the provider's fixed waits, the scaled AWS delays, the watchers' real-time windows), and
# the fifth worker runs the other tests in those gaps instead of behind a lab (make verify: -n 3
# ran two labs in a row on one worker; -n 4 181 s, -n 5 165 s: bench/verify_breakdown.md).
HARNESS_PARALLEL := -n 5 --dist loadgroup
# Without root, the harness runs inside user namespaces where they are allowed (else the data-plane
# tests skip and say why).
AS_NETNS_ROOT := $(shell [ "$$(id -u)" = 0 ] || ! unshare -Urn true 2>/dev/null || echo scripts/rootless.sh)

verify: bootstrap ## Failover verification: `pytest harness` on the embedded emulator.
	$(ENV) $(AS_NETNS_ROOT) pytest harness $(HARNESS_PARALLEL) $(PYTEST_ARGS)

test: bootstrap lint terraform-checks terraform-test pytest-unit checkov harness ## Everything CI runs.

bootstrap:
	@scripts/bootstrap.sh

lint:
	$(ENV) terraform fmt -check -recursive
	$(ENV) ruff check natlab harness tests bench
	$(ENV) ruff format --check natlab harness tests bench

terraform-checks:
	$(ENV) terraform init -backend=false -input=false >/dev/null && terraform validate
	$(ENV) for dir in $(EXAMPLES); do \
	  (cd "$$dir" && terraform init -backend=false -input=false >/dev/null && terraform validate) || exit 1; \
	done

terraform-test:
	scripts/require-terraform.sh 1.11 "terraform test (override_during in tests/*.tftest.hcl)"
	$(ENV) terraform test

terraform-test-provider-6: ## terraform test on the newest hashicorp/aws 6.x (needs the registry).
	scripts/test-provider-6.sh

pytest-unit:
	$(ENV) pytest tests $(PYTEST_ARGS)

checkov: ## Reads .checkov.yaml (offline, terraform only, reasons for every skip).
	$(ENV) .venv-checkov/bin/checkov --directory . --quiet

harness:
	$(ENV) $(AS_NETNS_ROOT) pytest harness $(HARNESS_PARALLEL) $(PYTEST_ARGS)

docs: bootstrap ## Regenerates the README's inputs/outputs tables.
	$(ENV) python -m natlab.module.readme_tables --write

bench: bootstrap ## Throughput, failover-outage and seed-vs-ours benchmarks (root: network namespaces).
	$(ENV) python bench/nat_throughput.py --repeat 3
	$(ENV) python bench/failover_outage.py --runs 5
	$(ENV) python bench/takeover_outage.py --runs 5
	$(ENV) python bench/seed_vs_ours.py --runs 10
