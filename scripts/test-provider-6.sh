#!/usr/bin/env bash
# test-provider-6.sh: runs the module's `terraform test` against the newest hashicorp/aws the
# registry offers within versions.tf (6.x today), and fails on any deprecation warning. Needs
# registry.terraform.io; `make test` stays on the offline mirror's 5.100.0.
set -o errexit -o nounset -o pipefail

cd "$(dirname "$0")/.."
scripts/require-terraform.sh 1.11 "terraform test (override_during in tests/*.tftest.hcl)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cp -- *.tf "${work}/"
cp -r tests userdata "${work}/"
cd "${work}"
# An empty CLI config: providers come from the registry, not from the offline mirror.
export TF_CLI_CONFIG_FILE=/dev/null
if ! terraform init -backend=false -input=false -upgrade >init.log 2>&1; then
  cat init.log >&2
  printf 'terraform init failed: is registry.terraform.io reachable from here?\n' >&2
  exit 1
fi
sed -n 's/.*Installed hashicorp\/aws v\([0-9.]*\).*/testing with hashicorp\/aws \1/p' init.log
terraform test -no-color 2>&1 | tee test.log
if grep -qi "deprecat" test.log; then
  printf 'deprecation warnings above: the module must read no deprecated attribute\n' >&2
  exit 1
fi
