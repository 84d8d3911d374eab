#!/usr/bin/env bash
# Installs what the README's two commands need on a fresh machine, and nothing twice:
# Debian packages (when root), the pinned virtualenvs, and the Terraform CLI config for an offline
# provider mirror. Writes .build/env.sh, which the Makefile sources before every command.
set -o errexit -o nounset -o pipefail

cd "$(dirname "$0")/.."
readonly BUILD_DIR=".build"
readonly DEBIAN_PACKAGES=(iproute2 nftables iptables iputils-ping conntrack iperf3 curl)
mkdir -p "${BUILD_DIR}"

log() { printf 'bootstrap: %s\n' "$*" >&2; }

require_python() {
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    log "Python >= 3.11 is required (python3 on PATH is $(python3 --version 2>&1 || echo missing))"
    exit 1
  fi
}

require_terraform() {
  if ! command -v terraform >/dev/null; then
    log "Terraform CLI not found on PATH: install Terraform >= 1.9 (https://developer.hashicorp.com/terraform/install)"
    exit 1
  fi
}

# The data plane needs ip, nft and friends; only root can install them, others get told what is missing.
install_debian_packages() {
  local missing=() pkg
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${pkg}")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ ${EUID} -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "missing Debian packages (data-plane tests will skip): ${missing[*]}"
    return 0
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# venv DIR REQUIREMENTS: (re)creates DIR when the pinned requirements changed.
venv() {
  local dir="$1" requirements="$2" stamp
  stamp="$(sha256sum "${requirements}" | cut -d' ' -f1)"
  if [[ -f "${dir}/.requirements.sha256" && "$(cat "${dir}/.requirements.sha256")" == "${stamp}" ]]; then
    return 0
  fi
  log "creating ${dir} from ${requirements}"
  python3 -m venv "${dir}"
  "${dir}/bin/pip" install --quiet --disable-pip-version-check -r "${requirements}"
  printf '%s\n' "${stamp}" >"${dir}/.requirements.sha256"
}

# The harness library, editable: `import natlab` works from tests, benches and scripts without path edits.
install_natlab() {
  # -P: the check must not find natlab/ through the current directory (that is not the install).
  if .venv/bin/python -P -c 'import natlab, pathlib, sys; sys.exit(pathlib.Path(natlab.__file__).parent != pathlib.Path("natlab").resolve())' 2>/dev/null; then
    return 0
  fi
  log "installing natlab (editable) into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --editable .
}

# Only where the machine carries a filesystem mirror of the aws provider: elsewhere the registry is used.
terraform_cli_config() {
  local provider mirror=""
  provider="$(find /opt /usr/share /usr/local/share -path '*registry.terraform.io/hashicorp/aws/*' \
    -name 'terraform-provider-aws_*' 2>/dev/null | head -n 1 || true)"
  if [[ -n "${provider}" ]]; then
    mirror="${provider%%/registry.terraform.io/*}"
    cat >"${BUILD_DIR}/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "${mirror}"
    include = ["registry.terraform.io/hashicorp/aws"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/aws"]
  }
}
RC
    printf 'export TF_CLI_CONFIG_FILE=%q\n' "${PWD}/${BUILD_DIR}/terraformrc"
    log "Terraform provider mirror: ${mirror}"
  fi
}

main() {
  require_python
  require_terraform
  install_debian_packages
  venv .venv requirements.txt
  install_natlab
  venv .venv-checkov requirements-checkov.txt
  {
    # shellcheck disable=SC2016 # $PATH is expanded when env.sh is sourced, not now
    printf 'export PATH=%q:"$PATH"\n' "${PWD}/.venv/bin"
    terraform_cli_config
  } >"${BUILD_DIR}/env.sh"
}

main "$@"
