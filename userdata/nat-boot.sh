#!/usr/bin/env bash
# nat-boot: turns this instance into its zone's NAT and points the private route tables at it.
#
# Configuration: the NAT_* variables the user data sets above this script (docs/design.md), or the
# environment when run on its own. Outside addresses come from the environment too (NAT_IMDS_ENDPOINT,
# AWS_ENDPOINT_URL), which is how the failover harness runs this very script against an emulator.
# Order is make-before-break: the instance is a working NAT before any route moves to it.
set -o errexit -o nounset -o pipefail -o errtrace

readonly IMDS_ENDPOINT="${NAT_IMDS_ENDPOINT:-http://169.254.169.254}"
readonly LOG_FILE="${NAT_LOG_FILE:-/var/log/nat-instance-boot.log}"
readonly NFT_RULES_FILE="/etc/nftables/nat-instance.nft"
readonly NFT_SERVICE_CONFIG="/etc/sysconfig/nftables.conf"
readonly SYSCTL_FILE="/etc/sysctl.d/90-nat-instance.conf"
export AWS_RETRY_MODE="${AWS_RETRY_MODE:-standard}"
export AWS_MAX_ATTEMPTS="${AWS_MAX_ATTEMPTS:-5}"
export AWS_PAGER=""

: "${NAT_ZONE:?NAT_ZONE must name the availability zone of this NAT}"
: "${NAT_ASG_NAME:?NAT_ASG_NAME must name the Auto Scaling group of this NAT}"
: "${NAT_ROUTE_TABLE_IDS:?NAT_ROUTE_TABLE_IDS must list the private route tables}"
: "${NAT_ROUTE_DESTINATION:?NAT_ROUTE_DESTINATION must be a CIDR such as 0.0.0.0/0}"
: "${NAT_SERVED_CIDRS:?NAT_SERVED_CIDRS must list the private CIDRs to masquerade}"
NAT_EIP_ALLOCATION_ID="${NAT_EIP_ALLOCATION_ID:-}"
NAT_ALARM_NAME="${NAT_ALARM_NAME:-}"
NAT_LIFECYCLE_HOOK_NAME="${NAT_LIFECYCLE_HOOK_NAME:-}"

current_step="setup"
imds_token=""
instance_id=""
eni_id=""
mac=""

# Timestamped log line (UTC, milliseconds) for the current step; stdout goes to console and log file.
log() {
  printf '%s nat-boot: step=%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "${current_step}" "$*"
}

# Runs one boot step between "start" and "done" lines, so the log shows where the time went.
step() {
  current_step="$1"
  shift
  log "start"
  "$@"
  log "done"
}

# Any failing command ends the boot: say where, and hand the instance back to Auto Scaling.
on_error() {
  local status=$? line="$1"
  trap - ERR
  if ((BASH_SUBSHELL > 0)); then
    exit "${status}" # the parent shell reports and abandons, once
  fi
  log "error line=${line} status=${status}"
  abandon_launch
  exit "${status}"
}

# Sends everything to the console and the log file.
setup_logging() {
  mkdir -p "$(dirname "${LOG_FILE}")"
  exec > >(tee -a "${LOG_FILE}") 2>&1
}

imds_get() {
  curl --fail --silent --show-error --retry 5 --retry-connrefused --retry-delay 1 \
    --connect-timeout 2 --max-time 5 \
    -H "X-aws-ec2-metadata-token: ${imds_token}" "${IMDS_ENDPOINT}/latest/meta-data/$1"
}

# IMDSv2 (token first): who and where this instance is, and its primary ENI without any API call.
read_identity() {
  imds_token="$(curl --fail --silent --show-error --retry 5 --retry-connrefused --retry-delay 1 \
    --connect-timeout 2 --max-time 5 -X PUT \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 900" "${IMDS_ENDPOINT}/latest/api/token")"
  instance_id="$(imds_get instance-id)"
  mac="$(imds_get mac)"
  eni_id="$(imds_get "network/interfaces/macs/${mac}/interface-id")"
  local region zone
  region="$(imds_get placement/region)"
  zone="$(imds_get placement/availability-zone)"
  export AWS_DEFAULT_REGION="${region}"
  if [[ "${zone}" != "${NAT_ZONE}" ]]; then
    log "instance is in ${zone} but configured for ${NAT_ZONE}: refusing to take over another zone's routes"
    return 1
  fi
  log "instance=${instance_id} eni=${eni_id} mac=${mac} region=${region} zone=${zone}"
}

# Kernel forwarding now and after a reboot; no ICMP redirects (private hosts must keep using the route).
enable_forwarding() {
  mkdir -p "$(dirname "${SYSCTL_FILE}")"
  printf '%s\n' 'net.ipv4.ip_forward = 1' 'net.ipv4.conf.all.send_redirects = 0' >"${SYSCTL_FILE}"
  sysctl -q -p "${SYSCTL_FILE}"
}

# The interface carrying the primary ENI, found by MAC (Amazon Linux 2023 names it ens5).
primary_interface() {
  ip -o link show | awk -v mac="${mac}" '$0 ~ "link/ether " mac " " { sub(/@.*/, "", $2); sub(/:$/, "", $2); print $2; exit }'
}

# nftables masquerade for the served CIDRs, written to a file the nftables service loads at boot.
configure_masquerade() {
  if ! command -v nft >/dev/null; then
    log "installing nftables"
    dnf install -y nftables
  fi
  local ifname cidrs
  local -a served
  ifname="$(primary_interface)"
  if [[ -z "${ifname}" ]]; then
    log "no interface has MAC ${mac}"
    return 1
  fi
  read -r -a served <<<"${NAT_SERVED_CIDRS}"
  cidrs="$(printf '%s, ' "${served[@]}")"
  mkdir -p "$(dirname "${NFT_RULES_FILE}")"
  cat >"${NFT_RULES_FILE}" <<EOF
# Written by nat-boot: masquerade traffic from the private CIDRs leaving through ${ifname}.
table ip nat_instance
delete table ip nat_instance
table ip nat_instance {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${ifname}" ip saddr { ${cidrs%, } } masquerade
  }
}
EOF
  nft -f "${NFT_RULES_FILE}"
  if ! grep -qsF "include \"${NFT_RULES_FILE}\"" "${NFT_SERVICE_CONFIG}"; then
    mkdir -p "$(dirname "${NFT_SERVICE_CONFIG}")"
    printf 'include "%s"\n' "${NFT_RULES_FILE}" >>"${NFT_SERVICE_CONFIG}"
  fi
  systemctl enable nftables
  log "masquerade on ${ifname} for ${NAT_SERVED_CIDRS}"
}

# A NAT forwards packets that are not addressed to it: EC2 drops those unless the check is off.
disable_source_dest_check() {
  aws ec2 modify-network-interface-attribute --network-interface-id "${eni_id}" --no-source-dest-check
}

# The zone's Elastic IP follows each replacement, so the egress address users allow-list stays put.
associate_elastic_ip() {
  if [[ -z "${NAT_EIP_ALLOCATION_ID}" ]]; then
    log "no Elastic IP configured"
    return 0
  fi
  aws ec2 associate-address --allocation-id "${NAT_EIP_ALLOCATION_ID}" \
    --network-interface-id "${eni_id}" --allow-reassociation --output text >/dev/null
}

# One route table: replace the route, or create it when the table has none.
point_route() {
  local table="$1"
  if aws ec2 replace-route --route-table-id "${table}" --destination-cidr-block "${NAT_ROUTE_DESTINATION}" \
    --network-interface-id "${eni_id}" 2>/dev/null; then
    log "replaced ${NAT_ROUTE_DESTINATION} in ${table}"
  else
    aws ec2 create-route --route-table-id "${table}" --destination-cidr-block "${NAT_ROUTE_DESTINATION}" \
      --network-interface-id "${eni_id}" --output text >/dev/null
    log "created ${NAT_ROUTE_DESTINATION} in ${table}"
  fi
}

# All route tables at once: the outage is one API round trip, not one per table.
point_routes() {
  local tables table pid failed=0
  local -a pids=()
  read -r -a tables <<<"${NAT_ROUTE_TABLE_IDS}"
  for table in "${tables[@]}"; do
    (
      trap - ERR
      point_route "${table}"
    ) &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do
    wait "${pid}" || failed=1
  done
  if ((failed)); then
    log "could not point every route table at ${eni_id}"
    return 1
  fi
  log "routes ${NAT_ROUTE_TABLE_IDS} -> ${eni_id}"
}

# Same alarm, new InstanceId: the definition Terraform wrote is read back and kept, only the dimension moves.
repoint_alarm() {
  if [[ -z "${NAT_ALARM_NAME}" ]]; then
    log "no status-check alarm configured"
    return 0
  fi
  local definition
  # Unset fields come back as null, which put-metric-alarm rejects: drop those lines (AlarmName,
  # never null, is last so no dangling comma is left).
  definition="$(aws cloudwatch describe-alarms --alarm-names "${NAT_ALARM_NAME}" --output json \
    --query 'MetricAlarms[0].{AlarmDescription: AlarmDescription, ActionsEnabled: ActionsEnabled, OKActions: OKActions, AlarmActions: AlarmActions, InsufficientDataActions: InsufficientDataActions, MetricName: MetricName, Namespace: Namespace, Statistic: Statistic, ExtendedStatistic: ExtendedStatistic, Unit: Unit, Period: Period, EvaluationPeriods: EvaluationPeriods, DatapointsToAlarm: DatapointsToAlarm, Threshold: Threshold, ComparisonOperator: ComparisonOperator, TreatMissingData: TreatMissingData, EvaluateLowSampleCountPercentile: EvaluateLowSampleCountPercentile, AlarmName: AlarmName}' |
    sed '/": null,$/d')"
  if [[ "${definition}" == "null" ]]; then
    log "alarm ${NAT_ALARM_NAME} does not exist"
    return 1
  fi
  aws cloudwatch put-metric-alarm --cli-input-json "${definition}" \
    --dimensions "Name=InstanceId,Value=${instance_id}"
  log "alarm ${NAT_ALARM_NAME} -> ${instance_id}"
}

lifecycle_action() {
  aws autoscaling complete-lifecycle-action --lifecycle-hook-name "${NAT_LIFECYCLE_HOOK_NAME}" \
    --auto-scaling-group-name "${NAT_ASG_NAME}" --instance-id "${instance_id}" \
    --lifecycle-action-result "$1"
}

# Puts the instance in service: only reached when every step before succeeded.
complete_launch() {
  if [[ -z "${NAT_LIFECYCLE_HOOK_NAME}" ]]; then
    log "no launch lifecycle hook configured"
    return 0
  fi
  lifecycle_action CONTINUE
}

# Best effort: a broken NAT must not stay in service, so Auto Scaling launches a fresh one.
abandon_launch() {
  if [[ -z "${NAT_LIFECYCLE_HOOK_NAME}" || -z "${instance_id}" ]]; then
    log "cannot abandon the launch (no lifecycle hook or no instance id yet)"
    return 0
  fi
  lifecycle_action ABANDON || log "abandoning the launch failed too"
  log "launch abandoned"
}

main() {
  setup_logging
  trap 'on_error ${LINENO}' ERR
  step identity read_identity
  step forwarding enable_forwarding
  step masquerade configure_masquerade
  step source-dest-check disable_source_dest_check
  step elastic-ip associate_elastic_ip
  step routes point_routes
  step alarm repoint_alarm
  step lifecycle complete_launch
  current_step="ready"
  log "NAT ready: ${instance_id} routes ${NAT_ROUTE_TABLE_IDS}"
}

main "$@"
