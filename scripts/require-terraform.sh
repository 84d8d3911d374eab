#!/usr/bin/env bash
# require-terraform.sh MIN WHY: stops with one line when the Terraform on PATH is older than MIN.
# The module itself needs 1.9; its `terraform test` files need 1.11 (`override_during`).
set -o errexit -o nounset -o pipefail

readonly minimum="$1" why="$2"
version="$(terraform version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([0-9.]*\)".*/\1/p')"
if [[ -z "${version}" ]]; then
  printf 'Terraform CLI not found on PATH: %s needs Terraform >= %s\n' "${why}" "${minimum}" >&2
  exit 1
fi
if [[ "$(printf '%s\n%s\n' "${minimum}" "${version}" | sort -V | head -n 1)" != "${minimum}" ]]; then
  printf 'Terraform %s is too old: %s needs >= %s (https://developer.hashicorp.com/terraform/install)\n' \
    "${version}" "${why}" "${minimum}" >&2
  exit 1
fi
