#!/usr/bin/env bash
# nat-boot: turns this instance into its zone's NAT and points the private route tables at it.
#
# Configuration: the NAT_* variables the user data sets above this script (docs/design.md), or the
# environment when run on its own. Outside addresses come from the environment too (NAT_IMDS_ENDPOINT,
# AWS_ENDPOINT_URL), which is how the failover harness runs this very script against an emulator.
# Order is make-before-break: the instance is a working NAT before any route moves to it, and every
# step that can fail runs before the routes move. Moving the routes is the commit point: before it a
# failure abandons the launch (Auto Scaling retries); after it the instance serves the zone, so a
# failure is logged and notified but never hands a serving NAT back to Auto Scaling.
set -o errexit -o nounset -o pipefail -o errtrace

readonly IMDS_ENDPOINT="${NAT_IMDS_ENDPOINT:-http://169.254.169.254}"
readonly LOG_FILE="${NAT_LOG_FILE:-/var/log/nat-instance-boot.log}"
readonly NFT_RULES_FILE="/etc/nftables/nat-instance.nft"
readonly NFT_SERVICE_CONFIG="/etc/sysconfig/nftables.conf"
readonly SYSCTL_FILE="/etc/sysctl.d/90-nat-instance.conf"
# AWS API calls (aws_query): attempts per call, as the CLI's AWS_MAX_ATTEMPTS in standard mode.
readonly API_MAX_ATTEMPTS="${AWS_MAX_ATTEMPTS:-5}"
# Per attempt: connect within 2 s, whole request within 5 s (the CLI's defaults are 60 s each: one
# lost packet would stall a step for a minute instead of letting the retries act).
readonly API_CONNECT_TIMEOUT="${NAT_AWS_CONNECT_TIMEOUT:-2}"
readonly API_REQUEST_TIMEOUT="${NAT_AWS_REQUEST_TIMEOUT:-5}"
# Route tables updated at once. One API call is one curl process: ~2.3 MiB PSS (10.6 MiB RSS), 8 at
# a time ~23 MiB with their subshells (measured: bench/boot_api_path.md); the aws CLI took ~59 MiB PSS
# per call, which capped this at 4 on a 512 MiB t4g.nano.
readonly ROUTE_PARALLELISM="${NAT_ROUTE_PARALLELISM:-8}"
# Query API version of each service the boot calls.
declare -rA API_VERSIONS=([ec2]=2016-11-15 [autoscaling]=2011-01-01 [sns]=2010-03-31 [monitoring]=2010-08-01)
# Error codes the CLI's standard retry mode retries, besides HTTP 500/502/503/504 and connection
# errors (botocore retries/standard.py: ThrottledRetryableChecker, TransientRetryableChecker).
readonly -a API_RETRYABLE_CODES=(
  Throttling ThrottlingException ThrottledException RequestThrottledException TooManyRequestsException
  ProvisionedThroughputExceededException TransactionInProgressException RequestLimitExceeded
  BandwidthLimitExceeded LimitExceededException RequestThrottled SlowDown PriorRequestNotComplete
  EC2ThrottledException RequestTimeout RequestTimeoutException
)
# curl exit codes of a failed connection or a timeout (resolve, connect, timeout, TLS, empty reply,
# send, receive): retried like botocore's ConnectionError and HTTPClientError.
readonly -a API_RETRYABLE_CURL_EXITS=(5 6 7 28 35 52 55 56)
# What the first boot keeps for later starts (user data runs only once, at the first boot): the
# configuration, this script, and the unit that runs it at every start (a warm pool's start, a reboot).
readonly CONFIG_FILE="${NAT_CONFIG_FILE:-/etc/nat-instance/config}"
readonly SCRIPT_FILE="/usr/local/sbin/nat-instance"
readonly UNIT_FILE="/etc/systemd/system/nat-instance.service"
# Written once this instance has served the zone: only then can a later start (a reboot) find the
# routes already here, so only then is that worth an API call on the way to serving.
readonly SERVED_MARKER="/var/lib/nat-instance/served"
# A start out of a warm pool must read InService; Auto Scaling updates the value as the instance
# "prepares to transition" (ASG user guide), so a Warmed:* answer then is read again for up to a minute.
readonly TARGET_STATE_ATTEMPTS="${NAT_TARGET_STATE_ATTEMPTS:-12}"
readonly TARGET_STATE_PAUSE="${NAT_TARGET_STATE_PAUSE:-5}"
# dnf install of nftables on images without it (standard AL2023). "Tens of seconds" on a nano with
# cold EBS (estimate, no public figure): 120 s is four times that, and two attempts (each with its
# 5 s kill grace) plus the pause and a ~30 s boot end before the launch hook's default 300 s heartbeat.
readonly DNF_TIMEOUT="${NAT_DNF_TIMEOUT:-120}"
readonly DNF_RETRY_PAUSE="${NAT_DNF_RETRY_PAUSE:-5}"
# Below 1 GiB of memory (a t4g.nano has 512 MiB) dnf can be OOM-killed (cfn-cheapest-nat #14): a
# swap file of 1 GiB is added for the install only (their fix, #16).
readonly SMALL_MEMORY_KIB=1048576
readonly INSTALL_SWAP_FILE="/var/lib/nat-instance/install.swap"
readonly INSTALL_SWAP_SIZE="1G"
# Metrics (NAT_METRICS_NAMESPACE set): counters in their own nftables table, published once a
# minute (CloudWatch's standard resolution) by a unit of their own; one PutMetricData per minute.
readonly METRICS_RULES_FILE="/etc/nftables/nat-instance-metrics.nft"
readonly METRICS_UNIT_FILE="/etc/systemd/system/nat-instance-metrics.service"
readonly METRICS_INTERVAL="${NAT_METRICS_INTERVAL:-60}"
# Zones this NAT covers besides its own, written by whatever moves another zone's routes here.
readonly COVERING_FILE="/run/nat-instance/covering"
# Takeover (NAT_TAKEOVER=peers, or a standby's): the watcher, a second unit running this script in "watch" mode.
readonly WATCH_UNIT_FILE="/etc/systemd/system/nat-instance-watch.service"
readonly WATCH_LOG_FILE="${NAT_WATCH_LOG_FILE:-/var/log/nat-instance-watch.log}"
# One probe per peer about every second; a peer is suspect after 3 misses in a row. The API then
# says whether it is dead (taken over at once) or running and healthy: a healthy peer that keeps
# failing the probes for the hold time is taken over too (its clients have no egress). After a
# zone is given back, "not forwarding" cannot fire for it again during the hold-down (no flapping).
readonly PROBE_INTERVAL="${NAT_PROBE_INTERVAL:-1}"
readonly PROBE_TIMEOUT="${NAT_PROBE_TIMEOUT:-0.9}"
readonly PROBE_MISSES="${NAT_PROBE_MISSES:-3}"
readonly NOT_FORWARDING_HOLD="${NAT_NOT_FORWARDING_HOLD:-8}"
readonly GIVE_BACK_HOLDDOWN="${NAT_GIVE_BACK_HOLDDOWN:-120}"
# Who serves each zone is read again this often (and at a peer's first missed probe).
readonly PEER_REFRESH_INTERVAL="${NAT_PEER_REFRESH_INTERVAL:-10}"
# Role credentials are read again this often (EC2 renews them hours before they expire).
readonly CREDENTIALS_REFRESH_INTERVAL=300
# One VXLAN link per peer: a /31 of this range per zone pair, carried over UDP 4789.
readonly TUNNEL_PREFIX="100.127"
readonly TUNNEL_RANGE="100.127.0.0/16"
readonly VXLAN_PORT=4789
readonly TUNNEL_TABLE_BASE=4200
# A watcher whose NAT took its routes this recently takes back what a survivor took meanwhile.
readonly RECLAIM_WINDOW=120
# Each round, for this long after its route step: a survivor's check and this boot's step crossed.
readonly CROSSED_WINDOW=10
# Spot: the watcher reads IMDS's interruption notice and rebalance recommendation this often (AWS
# suggests every 5 s; the notice comes 2 min ahead). An on-demand instance just never gets either.
readonly SPOT_CHECK_INTERVAL="${NAT_SPOT_CHECK_INTERVAL:-5}"

# A later start has no user data: the configuration comes from the file the first boot wrote.
if [[ -z "${NAT_ZONE:-}" && -r "${CONFIG_FILE}" ]]; then
  # shellcheck source=/dev/null
  source "${CONFIG_FILE}"
fi
# Empty or malformed values are reported by check_config, in the log, before anything changes.
NAT_ZONE="${NAT_ZONE:-}"
NAT_ASG_NAME="${NAT_ASG_NAME:-}"
NAT_ROUTE_TABLE_IDS="${NAT_ROUTE_TABLE_IDS:-}"
NAT_ROUTE_DESTINATION="${NAT_ROUTE_DESTINATION:-}"
NAT_SERVED_CIDRS="${NAT_SERVED_CIDRS:-}"
NAT_EIP_ALLOCATION_ID="${NAT_EIP_ALLOCATION_ID:-}"
NAT_LIFECYCLE_HOOK_NAME="${NAT_LIFECYCLE_HOOK_NAME:-}"
NAT_NOTIFICATION_TOPIC_ARN="${NAT_NOTIFICATION_TOPIC_ARN:-}"
NAT_METRICS_NAMESPACE="${NAT_METRICS_NAMESPACE:-}"
NAT_TAKEOVER="${NAT_TAKEOVER:-off}"
NAT_ROLE="${NAT_ROLE:-active}"
NAT_PEERS="${NAT_PEERS:-}"
NAT_PROBE_TARGET="${NAT_PROBE_TARGET:-}"

current_step="setup"
imds_token=""
instance_id=""
eni_id=""
mac=""
ifname=""
previous_eip_eni=""
target_state=""
eip_moved=0
committed=0
aws_region=""
aws_domain="amazonaws.com"
api_log_fd=2 # where aws_query notes retries; the console and log file once setup_logging ran
api_key_id=""
api_secret=""
api_token=""

# Timestamped log line (UTC, milliseconds) for the current step; stdout goes to console and log file.
# The time comes from bash itself (EPOCHREALTIME, printf %()T): a boot logs ~25 lines, and a `date`
# process for each was most of the processes a boot started.
log() {
  local now="${EPOCHREALTIME}" stamp fraction
  TZ=UTC0 printf -v stamp '%(%Y-%m-%dT%H:%M:%S)T' "${now%[.,]*}"
  fraction="${now#*[.,]}"
  printf '%s.%sZ nat-boot: step=%s %s\n' "${stamp}" "${fraction:0:3}" "${current_step}" "$*"
}

# Runs one boot step between "start" and "done" lines, so the log shows where the time went.
step() {
  current_step="$1"
  shift
  log "start"
  "$@"
  log "done"
}

# Any failing command ends the boot. Before the commit point the instance is handed back to Auto
# Scaling; after it, it keeps serving the zone and the failure is reported.
on_error() {
  local status=$? line="$1"
  trap - ERR
  if ((BASH_SUBSHELL > 0)); then
    exit "${status}" # the parent shell reports, once
  fi
  log "error line=${line} status=${status}"
  if ((committed)); then
    log "routes already point at ${eni_id}: staying in service"
    if runs_watcher; then # it serves: it watches the other zones too
      start_watcher || log "could not start the watcher"
    fi
    notify "NAT ${instance_id} in ${NAT_ZONE} serves the zone, but step ${current_step} failed (status ${status}); see ${LOG_FILE}"
  else
    hand_back_elastic_ip
    abandon_launch
  fi
  exit "${status}"
}

# Best effort: an operator hears of a failure the instance cannot fix itself.
notify() {
  [[ -n "${NAT_NOTIFICATION_TOPIC_ARN}" ]] || return 0
  aws_query sns Publish "TopicArn=${NAT_NOTIFICATION_TOPIC_ARN}" "Subject=NAT instance ${NAT_ASG_NAME}" \
    "Message=$1" >/dev/null || log "could not notify ${NAT_NOTIFICATION_TOPIC_ARN}"
}

# Sends everything to the console and the log file; aws_query's notes too, even from inside $(...).
setup_logging() {
  local file="${1:-${LOG_FILE}}"
  mkdir -p "$(dirname "${file}")"
  exec > >(tee -a "${file}") 2>&1
  exec {api_log_fd}>&1
}

imds_get() {
  curl --fail --silent --show-error --retry 5 --retry-connrefused --retry-delay 1 \
    --connect-timeout 2 --max-time 5 \
    -H "X-aws-ec2-metadata-token: ${imds_token}" "${IMDS_ENDPOINT}/latest/meta-data/$1"
}

# Several IMDS paths in one curl process, each answer followed by a newline, in order: a process per
# value was most of the boot's time before its first API call (bench/seed_vs_ours.md).
imds_get_lines() {
  local path
  local -a urls=()
  for path in "$@"; do
    urls+=("${IMDS_ENDPOINT}/latest/meta-data/${path}")
  done
  curl --fail --silent --show-error --retry 5 --retry-connrefused --retry-delay 1 \
    --connect-timeout 2 --max-time 5 --write-out '\n' \
    -H "X-aws-ec2-metadata-token: ${imds_token}" "${urls[@]}"
}

# The configuration's form, checked before anything changes: a malformed value stops the boot with a
# line naming the variable and what it must be (and the launch is abandoned), not half-way through.
# The rules are the module's own variable validations (variables.tf), for values set by hand.
check_config() {
  local bad=0 value
  local -r cidr='^((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$'
  config_matches NAT_ZONE "${NAT_ZONE}" '^[a-z]{2}(-[a-z0-9]+)+[a-z]$' "an availability zone such as us-east-1a" || bad=1
  config_matches NAT_ASG_NAME "${NAT_ASG_NAME}" '^[^[:cntrl:]]{1,255}$' "an Auto Scaling group name" || bad=1
  config_matches NAT_ROUTE_DESTINATION "${NAT_ROUTE_DESTINATION}" "${cidr}" "an IPv4 CIDR such as 0.0.0.0/0" || bad=1
  config_matches NAT_ROUTE_TABLE_IDS "${NAT_ROUTE_TABLE_IDS}" '[^[:space:]]' "a list of route table ids" || bad=1
  config_matches NAT_SERVED_CIDRS "${NAT_SERVED_CIDRS}" '[^[:space:]]' "a list of the private CIDRs" || bad=1
  for value in ${NAT_ROUTE_TABLE_IDS}; do
    config_matches NAT_ROUTE_TABLE_IDS "${value}" '^rtb-[0-9a-f]{8,17}$' "route table ids such as rtb-0123456789abcdef0" || bad=1
  done
  for value in ${NAT_SERVED_CIDRS}; do
    config_matches NAT_SERVED_CIDRS "${value}" "${cidr}" "IPv4 CIDRs such as 10.0.0.0/16" || bad=1
  done
  if [[ -n "${NAT_EIP_ALLOCATION_ID}" ]]; then
    config_matches NAT_EIP_ALLOCATION_ID "${NAT_EIP_ALLOCATION_ID}" '^eipalloc-[0-9a-f]{8,17}$' "empty or an allocation id such as eipalloc-0123456789abcdef0" || bad=1
  fi
  if [[ -n "${NAT_METRICS_NAMESPACE}" ]]; then
    config_matches NAT_METRICS_NAMESPACE "${NAT_METRICS_NAMESPACE}" '^[0-9A-Za-z._/#:-]{1,255}$' "empty or a CloudWatch namespace" || bad=1
  fi
  if [[ -n "${NAT_NOTIFICATION_TOPIC_ARN}" ]]; then
    config_matches NAT_NOTIFICATION_TOPIC_ARN "${NAT_NOTIFICATION_TOPIC_ARN}" '^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+(\.fifo)?$' "empty or an SNS topic ARN" || bad=1
  fi
  check_takeover_config || bad=1
  return "${bad}"
}

# The takeover settings: a mode and a role; a watcher needs its zones' groups and tables and a probe target.
check_takeover_config() {
  local bad=0 value roles='^active$'
  config_matches NAT_TAKEOVER "${NAT_TAKEOVER}" '^(peers|standby|off)$' "peers, standby or off" || return 1
  [[ "${NAT_TAKEOVER}" != standby ]] || roles='^(active|standby)$'
  config_matches NAT_ROLE "${NAT_ROLE}" "${roles}" "active (standby only with NAT_TAKEOVER=standby)" || return 1
  watches || return 0
  config_matches NAT_PROBE_TARGET "${NAT_PROBE_TARGET}" '^[A-Za-z0-9.-]+:[0-9]{1,5}$' "host:port" || bad=1
  config_matches NAT_PEERS "${NAT_PEERS}" '[^[:space:]]' "zone:group:rtb,... for every zone" || bad=1
  for value in ${NAT_PEERS}; do
    config_matches NAT_PEERS "${value}" '^[a-z]{2}(-[a-z0-9]+)+[a-z]:[^:[:space:]]+:rtb-[0-9a-f]{8,17}(,rtb-[0-9a-f]{8,17})*$' \
      "zone:group:rtb-...[,rtb-...] entries such as us-east-1a:egress-us-east-1a:rtb-0123456789abcdef0" || bad=1
  done
  return "${bad}"
}

# True when this instance runs the watcher: every NAT with peers, only the standby with a standby.
watches() {
  [[ "${NAT_TAKEOVER}" == peers || "${NAT_ROLE}" == standby ]]
}

# True when the watcher unit runs here: a watcher, or a NAT with a standby (for Spot notices only).
runs_watcher() {
  watches || [[ "${NAT_TAKEOVER}" == standby ]]
}

# True when $2 (the value of variable $1) matches the regex $3; else logs what $1 must be ($4).
config_matches() {
  [[ "$2" =~ $3 ]] && return 0
  log "config ${1}='${2}' is malformed: it must be ${4}"
  return 1
}

# IMDSv2 (token first): who and where this instance is, its primary ENI and (without credentials in
# the environment) its role's credentials, in three IMDS round trips and no API call.
read_identity() {
  imds_token="$(curl --fail --silent --show-error --retry 5 --retry-connrefused --retry-delay 1 \
    --connect-timeout 2 --max-time 5 -X PUT \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 900" "${IMDS_ENDPOINT}/latest/api/token")"
  local answers region zone role=""
  local -a values paths=(instance-id mac placement/region placement/availability-zone services/domain)
  environment_credentials || paths+=(iam/security-credentials/)
  answers="$(imds_get_lines "${paths[@]}")"
  mapfile -t values <<<"${answers}"
  # Defaults: the abandon path calls this after a failure, with errexit off but nounset on.
  instance_id="${values[0]:-}" mac="${values[1]:-}" region="${values[2]:-}" zone="${values[3]:-}"
  aws_region="${region}" aws_domain="${values[4]:-amazonaws.com}" role="${values[5]:-}"
  # The ENI needs the MAC; the role's document (several lines, so last) needs the role's name.
  paths=("network/interfaces/macs/${mac}/interface-id")
  [[ -z "${role}" ]] || paths+=("iam/security-credentials/${role}")
  answers="$(imds_get_lines "${paths[@]}")"
  eni_id="${answers%%$'\n'*}"
  [[ -z "${role}" ]] || use_role_credentials "${role}" "${answers#*$'\n'}"
  if [[ "${zone}" != "${NAT_ZONE}" ]]; then
    log "instance is in ${zone} but configured for ${NAT_ZONE}: refusing to take over another zone's routes"
    return 1
  fi
  ifname="$(primary_interface)"
  if [[ -z "${ifname}" ]]; then
    log "no interface has MAC ${mac}"
    return 1
  fi
  log "instance=${instance_id} eni=${eni_id} mac=${mac} interface=${ifname} region=${region} zone=${zone}"
}

# The first match of the regex $1's group in stdin, read by bash itself (no grep/sed process).
first_match() {
  local text=""
  IFS= read -r -d '' text || true
  [[ "${text}" =~ $1 ]] && printf '%s\n' "${BASH_REMATCH[1]}"
  return 0
}

# The text of the first <name> element of the XML on stdin, entities decoded (empty if none).
xml_value() {
  local value
  value="$(first_match "<$1>([^<]*)</$1>")"
  if [[ "${value}" == *"&"* ]]; then # only messages carry entities
    value="$(sed "s/&quot;/\"/g;s/&apos;/'/g;s/&lt;/</g;s/&gt;/>/g;s/&amp;/\\&/g" <<<"${value}")"
  fi
  printf '%s\n' "${value}"
}

# The string value of "name" in the JSON on stdin (IMDS credential documents are flat; empty if none).
json_string() {
  first_match "\"$1\"[[:space:]]*:[[:space:]]*\"([^\"]*)\""
}

# Credentials for aws_query, found as the CLI finds them on EC2: the environment's, else the instance
# role's from IMDS. Role credentials stay valid for hours (EC2 renews them well before Expiration);
# the boot needs them for seconds.
load_credentials() {
  if environment_credentials; then
    return 0
  fi
  local roles role
  roles="$(imds_get iam/security-credentials/)"
  role="${roles%%$'\n'*}"
  use_role_credentials "${role}" "$(imds_get "iam/security-credentials/${role}")"
}

# True (and the credentials taken) when the environment has them, as the CLI would take them.
environment_credentials() {
  [[ -n "${AWS_ACCESS_KEY_ID:-}" && -n "${AWS_SECRET_ACCESS_KEY:-}" ]] || return 1
  api_key_id="${AWS_ACCESS_KEY_ID}"
  api_secret="${AWS_SECRET_ACCESS_KEY}"
  api_token="${AWS_SESSION_TOKEN:-}"
  log "credentials from the environment"
}

# The credentials in the IMDS document ($2) of the instance role $1.
use_role_credentials() {
  local role="$1" document="$2"
  api_key_id="$(json_string AccessKeyId <<<"${document}")"
  api_secret="$(json_string SecretAccessKey <<<"${document}")"
  api_token="$(json_string Token <<<"${document}")"
  if [[ -z "${api_key_id}" || -z "${api_secret}" ]]; then
    log "IMDS has no usable credentials for role ${role}"
    return 1
  fi
  log "credentials of role ${role}, expiring $(json_string Expiration <<<"${document}")"
}

# One signed POST of a Query API form to SERVICE; prints the body, then the HTTP status on a line of
# its own, and returns curl's exit status. The secrets reach curl through its config on stdin, never
# its command line (which any local user can read).
api_request() {
  local service="$1" config
  shift
  config="user = \"${api_key_id}:${api_secret}\""
  if [[ -n "${api_token}" ]]; then
    config+=$'\n'"header = \"X-Amz-Security-Token: ${api_token}\""
  fi
  curl --silent --config - --connect-timeout "${API_CONNECT_TIMEOUT}" --max-time "${API_REQUEST_TIMEOUT}" \
    --aws-sigv4 "aws:amz:${aws_region}:${service}" --write-out '\n%{http_code}' "$@" \
    "${AWS_ENDPOINT_URL:-https://${service}.${aws_region}.${aws_domain}}" <<<"${config}"
}

# True when the CLI's standard mode retries a failure: curl's exit status, the HTTP status, the code.
api_retryable() {
  if (($1 != 0)); then
    [[ " ${API_RETRYABLE_CURL_EXITS[*]} " == *" $1 "* ]]
  else
    [[ " 500 502 503 504 " == *" $2 "* || " ${API_RETRYABLE_CODES[*]} " == *" $3 "* ]]
  fi
}

# aws_query SERVICE ACTION [Name=Value...]: one AWS Query API call (curl signs it with SigV4; curl
# >= 7.75), retried like the CLI's standard mode. Prints the XML answer; on failure prints
# "Code: Message" on stderr and returns 1. Retries are logged as they happen.
aws_query() {
  local service="$1" action="$2" param attempt status answer http code error cap delay
  shift 2
  local -a form=(--data-urlencode "Action=${action}" --data-urlencode "Version=${API_VERSIONS[${service}]}")
  for param in "$@"; do
    form+=(--data-urlencode "${param}")
  done
  # A failure before the identity step loaded them still abandons the launch (on_error).
  if [[ -z "${api_key_id}" ]]; then
    load_credentials >&"${api_log_fd}" || return 1
  fi
  for ((attempt = 1; ; attempt++)); do
    status=0
    answer="$(api_request "${service}" "${form[@]}")" || status=$?
    http="${answer##*$'\n'}"
    answer="${answer%$'\n'*}"
    if ((status == 0)) && [[ "${http}" == 2?? ]]; then
      printf '%s\n' "${answer}"
      return 0
    fi
    code=""
    error="RequestError: no answer from ${service} (curl exit ${status}: connection failed or timed out)"
    if ((status == 0)); then
      code="$(xml_value Code <<<"${answer}")"
      error="${code:-HTTP ${http}}: $(xml_value Message <<<"${answer}")"
    fi
    if ! api_retryable "${status}" "${http}" "${code}" || ((attempt >= API_MAX_ATTEMPTS)); then
      printf '%s (%s %s, attempt %d of %d)\n' "${error}" "${service}" "${action}" "${attempt}" "${API_MAX_ATTEMPTS}" >&2
      return 1
    fi
    # botocore standard mode (retries/standard.py, ExponentialBackoff): before retry i, sleep
    # rand(0,1) * min(2^(i-1), 20) s with base 1 s: at most 1, 2, 4, 8 s for 5 attempts.
    cap=$((1000 << (attempt - 1)))
    cap=$((cap > 20000 ? 20000 : cap))
    delay=$((RANDOM * cap / 32767))
    log "${service} ${action} attempt ${attempt} of ${API_MAX_ATTEMPTS} failed (${error}); retrying in ${delay} ms" >&"${api_log_fd}"
    sleep "$((delay / 1000)).$(printf '%03d' "$((delay % 1000))")"
  done
}

# Kernel forwarding now and after a reboot; no ICMP redirects (private hosts must keep using the
# route). The kernel sends redirects if `all` OR the interface says so: both are turned off, and
# `default` for interfaces that appear later.
enable_forwarding() {
  mkdir -p "$(dirname "${SYSCTL_FILE}")"
  printf '%s\n' 'net.ipv4.ip_forward = 1' 'net.ipv4.conf.all.send_redirects = 0' \
    'net.ipv4.conf.default.send_redirects = 0' "net.ipv4.conf.${ifname}.send_redirects = 0" >"${SYSCTL_FILE}"
  sysctl -q -p "${SYSCTL_FILE}"
}

# The interface carrying the primary ENI, found by MAC (Amazon Linux 2023 names it ens5).
primary_interface() {
  ip -o link show | awk -v mac="${mac}" '$0 ~ "link/ether " mac " " { sub(/@.*/, "", $2); sub(/:$/, "", $2); print $2; exit }'
}

# nftables masquerade for the served CIDRs, written to a file the nftables service loads at boot.
configure_masquerade() {
  if ! command -v nft >/dev/null; then
    step install install_nftables
    current_step="masquerade"
  fi
  local cidrs
  local -a served
  read -r -a served <<<"${NAT_SERVED_CIDRS}"
  if [[ "${NAT_TAKEOVER}" != off ]]; then
    served+=("${TUNNEL_RANGE}") # a peer's (or the standby's) probes leave through here like client traffic
  fi
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

# True when memory is small and no swap is active: dnf may then run out of memory.
install_needs_swap() {
  local mem_kib
  mem_kib="$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
  ((mem_kib < SMALL_MEMORY_KIB)) && [[ -z "$(awk 'NR > 1' /proc/swaps)" ]]
}

# A swap file for the install only (cfn-cheapest-nat #16: their dnf was OOM-killed on a nano).
add_install_swap() {
  mkdir -p "$(dirname "${INSTALL_SWAP_FILE}")"
  fallocate --length "${INSTALL_SWAP_SIZE}" "${INSTALL_SWAP_FILE}"
  chmod 600 "${INSTALL_SWAP_FILE}"
  mkswap "${INSTALL_SWAP_FILE}" >/dev/null
  swapon "${INSTALL_SWAP_FILE}"
  log "swap ${INSTALL_SWAP_FILE} (${INSTALL_SWAP_SIZE}) on for the install"
}

# The swap goes once dnf is done: a NAT that swaps while forwarding stalls its flows, and the file
# would keep 1 GiB of the root volume. Failing to remove it is logged, not fatal.
remove_install_swap() {
  if swapoff "${INSTALL_SWAP_FILE}" && rm -f "${INSTALL_SWAP_FILE}"; then
    log "swap ${INSTALL_SWAP_FILE} removed"
  else
    log "could not remove swap ${INSTALL_SWAP_FILE}"
  fi
}

# Why an install attempt ended, from its exit status.
install_failure() {
  case "$1" in
    124) printf 'timed out after %s s' "${DNF_TIMEOUT}" ;;
    137) printf 'killed (SIGKILL: out of memory?)' ;;
    *) printf 'exit status %s' "$1" ;;
  esac
}

# nftables for images without it (the standard AL2023 AMI): no weak dependencies (less to download
# and hold in memory), bounded in time, one retry. Giving up fails the step, before any route moves.
install_nftables() {
  local attempt status swap=0
  if install_needs_swap; then
    add_install_swap
    swap=1
  fi
  for attempt in 1 2; do
    status=0
    timeout --kill-after=5 "${DNF_TIMEOUT}" dnf install -y --setopt=install_weak_deps=False nftables || status=$?
    if ((status == 0)); then
      break
    fi
    log "dnf install nftables failed: $(install_failure "${status}") (attempt ${attempt} of 2)"
    if ((attempt < 2)); then
      sleep "${DNF_RETRY_PAUSE}"
    fi
  done
  if ((swap)); then
    remove_install_swap
  fi
  if ((status != 0)); then
    log "giving up: nftables could not be installed"
    return 1
  fi
  log "nftables installed"
}

# A NAT forwards packets that are not addressed to it: EC2 drops those unless the check is off.
disable_source_dest_check() {
  aws_query ec2 ModifyNetworkInterfaceAttribute "NetworkInterfaceId=${eni_id}" SourceDestCheck.Value=false >/dev/null
}

# The zone's Elastic IP follows each replacement, so the egress address users allow-list stays put.
# It moves right before the routes; where it was is remembered, to give it back if no route moves.
associate_elastic_ip() {
  if [[ -z "${NAT_EIP_ALLOCATION_ID}" ]]; then
    log "no Elastic IP configured"
    return 0
  fi
  previous_eip_eni="$(aws_query ec2 DescribeAddresses "AllocationId.1=${NAT_EIP_ALLOCATION_ID}" |
    xml_value networkInterfaceId)"
  aws_query ec2 AssociateAddress "AllocationId=${NAT_EIP_ALLOCATION_ID}" "NetworkInterfaceId=${eni_id}" \
    AllowReassociation=true >/dev/null
  eip_moved=1
  log "elastic ip ${NAT_EIP_ALLOCATION_ID} -> ${eni_id} (was on ${previous_eip_eni})"
}

# No route moved after all: the NAT that still owns the routes gets its address back.
hand_back_elastic_ip() {
  if ((eip_moved == 0)) || [[ -z "${previous_eip_eni}" || "${previous_eip_eni}" == "None" ]]; then
    return 0
  fi
  if aws_query ec2 AssociateAddress "AllocationId=${NAT_EIP_ALLOCATION_ID}" \
    "NetworkInterfaceId=${previous_eip_eni}" AllowReassociation=true >/dev/null; then
    log "elastic ip ${NAT_EIP_ALLOCATION_ID} handed back to ${previous_eip_eni}"
  else
    log "could not hand elastic ip ${NAT_EIP_ALLOCATION_ID} back to ${previous_eip_eni}"
  fi
}

# One route table: replace the route, or create it when the table has none. Any other error
# (throttling, permissions) is logged as it came and fails the table.
point_route() {
  local table="$1" error
  local -a route=("RouteTableId=${table}" "DestinationCidrBlock=${NAT_ROUTE_DESTINATION}" "NetworkInterfaceId=${eni_id}")
  if error="$(aws_query ec2 ReplaceRoute "${route[@]}" 2>&1 >/dev/null)"; then
    log "replaced ${NAT_ROUTE_DESTINATION} in ${table}"
    return 0
  fi
  if [[ "${error}" != *"no route"*"CreateRoute"* && "${error}" != *"InvalidRoute.NotFound"* ]]; then
    log "replace-route in ${table} failed: ${error//$'\n'/ }"
    return 1
  fi
  if ! error="$(aws_query ec2 CreateRoute "${route[@]}" 2>&1 >/dev/null)"; then
    log "create-route in ${table} failed: ${error//$'\n'/ }"
    return 1
  fi
  log "created ${NAT_ROUTE_DESTINATION} in ${table}"
}

# Points the given route tables here, ROUTE_PARALLELISM at a time; prints the tables that failed.
point_route_tables() {
  local table
  local -A running=()
  for table in "$@"; do
    if ((${#running[@]} >= ROUTE_PARALLELISM)); then
      reap_route_job running
    fi
    (
      trap - ERR
      point_route "${table}"
    ) >&2 & # stdout carries only the failed tables
    running["$!"]="${table}"
  done
  while ((${#running[@]} > 0)); do
    reap_route_job running
  done
}

# Waits for one job of the named pid -> table array to end, and prints its table if it failed.
reap_route_job() {
  local -n jobs="$1"
  local pid
  for pid in "${!jobs[@]}"; do
    wait "${pid}" || printf '%s\n' "${jobs[${pid}]}"
    unset "jobs[${pid}]"
    return 0
  done
}

# Every route table of the zone, in parallel, so the outage is a round trip or two, not one per
# table. Once any route points here this instance serves the zone (the commit point): tables that
# failed get one more try, then are reported, and the boot goes on.
point_routes() {
  local -a tables failed
  read -r -a tables <<<"${NAT_ROUTE_TABLE_IDS}"
  mapfile -t failed < <(point_route_tables "${tables[@]}")
  if ((${#failed[@]} == ${#tables[@]})); then
    log "no route table could be pointed at ${eni_id}"
    return 1
  fi
  committed=1
  if ((${#failed[@]} > 0)); then
    mapfile -t failed < <(point_route_tables "${failed[@]}")
  fi
  if ((${#failed[@]} > 0)); then
    log "serving the zone without ${failed[*]}: their routes do not point at ${eni_id}"
    notify "NAT ${instance_id} in ${NAT_ZONE} could not take over route tables ${failed[*]}; see ${LOG_FILE}"
    return 0
  fi
  log "routes ${NAT_ROUTE_TABLE_IDS} -> ${eni_id}"
}

lifecycle_action() {
  aws_query autoscaling CompleteLifecycleAction "LifecycleHookName=${NAT_LIFECYCLE_HOOK_NAME}" \
    "AutoScalingGroupName=${NAT_ASG_NAME}" "InstanceId=${instance_id}" "LifecycleActionResult=$1" >/dev/null
}

# Puts the instance in service: only reached when every step before succeeded. The routes already
# point here, so a refusal is retried (beyond the CLI's own retries) rather than given up: if the hook
# times out, its default result abandons this serving NAT.
complete_launch() {
  if [[ -z "${NAT_LIFECYCLE_HOOK_NAME}" ]]; then
    log "no launch lifecycle hook configured"
    return 0
  fi
  local attempt
  for attempt in 1 2 3; do
    lifecycle_action CONTINUE && return 0
    log "complete-lifecycle-action failed (attempt ${attempt} of 3)"
    sleep "$((attempt * 2))"
  done
  return 1
}

# Best effort: a broken NAT must not stay in service, so Auto Scaling launches a fresh one.
# The instance id and region, for an abandon after a failure that came before the identity step: one
# quick try (an IMDS that is down must not hold the boot's end up for long).
learn_instance_id() {
  local answers
  imds_token="$(curl --fail --silent --connect-timeout 2 --max-time 3 -X PUT \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 900" "${IMDS_ENDPOINT}/latest/api/token")" || return 0
  answers="$(imds_get_lines instance-id placement/region)" || return 0
  instance_id="${answers%%$'\n'*}" aws_region="${answers#*$'\n'}"
}

abandon_launch() {
  if [[ -z "${instance_id}" ]]; then # failed before the identity step: who am I, best effort
    learn_instance_id
  fi
  if [[ -z "${NAT_LIFECYCLE_HOOK_NAME}" || -z "${instance_id}" ]]; then
    log "cannot abandon the launch (no lifecycle hook or no instance id yet)"
    return 0
  fi
  lifecycle_action ABANDON || log "abandoning the launch failed too"
  log "launch abandoned"
}

# What a first run on a real account must confirm about the image and the boot, logged once (README,
# "First run on a real account"). Reading them can fail; the boot never does because of it.
record_facts() {
  local nft_rpm nft_unit cgroup peak="unknown"
  # Both exit non-zero for "not installed"/"disabled"; that is a fact to log, not a failure.
  nft_rpm="$(rpm -q nftables 2>/dev/null)" || nft_rpm="none"
  nft_unit="$(systemctl is-enabled nftables 2>/dev/null)" || nft_unit="${nft_unit:-unknown}"
  nft_unit="${nft_unit%%$'\n'*}"
  cgroup="$(sed -n 's/^0:://p' /proc/self/cgroup 2>/dev/null || true)"
  if [[ -n "${cgroup}" && -r "/sys/fs/cgroup${cgroup}/memory.peak" ]]; then
    peak="$(($(cat "/sys/fs/cgroup${cgroup}/memory.peak") / 1024))"
  fi
  log "facts nftables-rpm=${nft_rpm// /_} nftables-unit=${nft_unit// /_} boot-memory-peak-kib=${peak}$(takeover_facts)"
}

# With takeover on: what the watcher needs of this image, which the lab cannot show (its kernel and
# curl are the host's): a VXLAN link, and curl's --parallel.
takeover_facts() {
  local vxlan="missing" parallel="no"
  [[ "${NAT_TAKEOVER}" != off ]] || return 0
  if ip link add nat-fact-vxlan type vxlan id 1 dstport "${VXLAN_PORT}" dev "${ifname}" 2>/dev/null; then
    vxlan="ok"
    ip link del nat-fact-vxlan 2>/dev/null || true
  fi
  [[ "$(curl --help all 2>/dev/null)" != *--parallel* ]] || parallel="yes"
  printf ' vxlan=%s curl-parallel=%s' "${vxlan}" "${parallel}"
}

# Where Auto Scaling is taking this instance: InService, or Warmed:Stopped/Warmed:Running while it
# enters a warm pool. No answer (no group, or IMDS without the path) means in service, as before.
read_target_state() {
  target_state="$(imds_get autoscaling/target-lifecycle-state 2>/dev/null)" || target_state="InService"
  log "target lifecycle state ${target_state}"
}

# At a later start Warmed:* would complete the hook of an instance leaving the pool without serving:
# an InService instance with no route. Read again until InService; still Warmed:* fails the boot,
# which abandons the launch, and Auto Scaling replaces the instance.
wait_for_in_service() {
  local attempt
  for ((attempt = 1; attempt <= TARGET_STATE_ATTEMPTS; attempt++)); do
    log "target lifecycle state ${target_state} at a start: reading it again in ${TARGET_STATE_PAUSE} s"
    sleep "${TARGET_STATE_PAUSE}"
    read_target_state
    [[ "${target_state}" != Warmed:* ]] && return 0
  done
  log "still ${target_state} after ${TARGET_STATE_ATTEMPTS} reads: not serving from a warm pool state"
  return 1
}

# The configuration as sourceable bash, so a later start runs with the very values of the first boot.
persist_config() {
  local name
  mkdir -p "$(dirname "${CONFIG_FILE}")"
  for name in NAT_ZONE NAT_ASG_NAME NAT_ROUTE_TABLE_IDS NAT_ROUTE_DESTINATION NAT_SERVED_CIDRS \
    NAT_EIP_ALLOCATION_ID NAT_LIFECYCLE_HOOK_NAME NAT_NOTIFICATION_TOPIC_ARN NAT_METRICS_NAMESPACE \
    NAT_TAKEOVER NAT_ROLE NAT_PEERS NAT_PROBE_TARGET; do
    printf '%s=%q\n' "${name}" "${!name}"
  done >"${CONFIG_FILE}"
}

# This script without the user data's configuration part: from its last shebang line on (the
# configuration part has its own at the top; run on its own, the script has only one).
persist_script() {
  local source_file="${BASH_SOURCE[0]}"
  mkdir -p "$(dirname "${SCRIPT_FILE}")"
  awk 'FNR == NR { if ($0 == "#!/usr/bin/env bash") last = FNR; next } FNR >= last' \
    "${source_file}" "${source_file}" >"${SCRIPT_FILE}"
  chmod 0755 "${SCRIPT_FILE}"
}

# A oneshot unit that runs the script at every later start, once the network is up.
install_unit() {
  mkdir -p "$(dirname "${UNIT_FILE}")"
  cat >"${UNIT_FILE}" <<EOF
# Written by nat-boot: forwarding and masquerade at every start; the zone's routes when in service.
[Unit]
Description=NAT instance of ${NAT_ASG_NAME}
Wants=network-online.target
After=network-online.target nftables.service

[Service]
Type=oneshot
ExecStart=${SCRIPT_FILE} start
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
EOF
  systemctl enable "$(basename "${UNIT_FILE}")"
}

# First boot only: what a later start needs, since user data never runs again.
persist_for_restarts() {
  persist_config
  persist_script
  install_unit
  install_watch_unit
  log "persisted ${CONFIG_FILE} ${SCRIPT_FILE} ${UNIT_FILE}"
}

# Later start: the kernel settings and the rules the first boot wrote, loaded again.
reapply_forwarding() {
  sysctl -q -p "${SYSCTL_FILE}"
}

reapply_masquerade() {
  nft -f "${NFT_RULES_FILE}"
  [[ ! -e "${METRICS_RULES_FILE}" ]] || nft -f "${METRICS_RULES_FILE}"
  log "masquerade from ${NFT_RULES_FILE}"
}

# True when every route table's route already targets this instance (a reboot of the serving NAT).
routes_point_here() {
  local -a tables ids=()
  local answer chunk i found=0
  read -r -a tables <<<"${NAT_ROUTE_TABLE_IDS}"
  for i in "${!tables[@]}"; do
    ids+=("RouteTableId.$((i + 1))=${tables[i]}")
  done
  answer="$(aws_query ec2 DescribeRouteTables "${ids[@]}")"
  # Each route is an <item> without nested items: the text up to the next <item> is one route.
  while IFS= read -r -d $'\x1e' chunk; do
    [[ "${chunk}" == *"<destinationCidrBlock>${NAT_ROUTE_DESTINATION}</destinationCidrBlock>"* ]] || continue
    [[ "${chunk}" == *"<networkInterfaceId>${eni_id}</networkInterfaceId>"* ]] || return 1
    found=$((found + 1))
  done < <(printf '%s\x1e' "${answer//<item>/$'\x1e'}")
  ((found == ${#tables[@]}))
}

# The routes point here: a later start of this instance is a reboot of a serving NAT.
remember_serving() {
  mkdir -p "$(dirname "${SERVED_MARKER}")"
  date -u +%Y-%m-%dT%H:%M:%SZ >"${SERVED_MARKER}"
}

# In a warm pool: prepared, so the launch completes and Auto Scaling stops the instance. No route
# and no Elastic IP is touched: the zone's NAT is another instance. Logged first: the stop that
# follows the hook may end this script before its last lines.
wait_in_warm_pool() {
  log "prepared, waiting in the warm pool (${target_state})"
  complete_launch
}

# A standby is prepared like its zone's NAT (forwarding, masquerade, check off) and in service, but
# takes no route and no Elastic IP: its watcher moves them here when the zone's NAT fails.
prepare_standby() {
  step source-dest-check disable_source_dest_check
  [[ "$1" == start ]] || step lifecycle complete_launch
  step watcher start_watcher
  [[ "$1" == start ]] || step facts record_facts
  current_step="ready"
  log "standby ready: ${instance_id} watches the NAT of ${NAT_ZONE}"
}

# The zone's NAT, with a standby: the far end of the standby's probe tunnel, passive (no remote).
# The kernel learns the standby's address from its first packet (ARP included), so the NAT needs no
# API call and no knowledge of its standby, and a new standby is answered without a word.
open_standby_tunnel() {
  local mine theirs vni link _table
  read -r theirs mine vni link _table < <(tunnel_of "${NAT_ZONE}")
  ip link del "${link}" 2>/dev/null || true
  ip link add "${link}" type vxlan id "${vni}" local "$(own_ip)" dev "${ifname}" dstport "${VXLAN_PORT}" learning
  ip addr add "${mine}/31" dev "${link}"
  ip link set "${link}" up
  log "standby tunnel ${link} vni=${vni} ${mine}: passive, learns its standby"
}

# --- metrics -------------------------------------------------------------------------------------

# Counts every forwarded packet (both directions) in a table of its own, loaded now and at boot.
configure_metrics_counters() {
  mkdir -p "$(dirname "${METRICS_RULES_FILE}")"
  cat >"${METRICS_RULES_FILE}" <<EOF
# Written by nat-boot: what the metrics unit publishes as ForwardedBytes/ForwardedPackets.
table ip nat_instance_metrics
delete table ip nat_instance_metrics
table ip nat_instance_metrics {
  counter forwarded {}
  chain forward {
    type filter hook forward priority filter; policy accept;
    counter name "forwarded"
  }
}
EOF
  nft -f "${METRICS_RULES_FILE}"
  if ! grep -qsF "include \"${METRICS_RULES_FILE}\"" "${NFT_SERVICE_CONFIG}"; then
    printf 'include "%s"\n' "${METRICS_RULES_FILE}" >>"${NFT_SERVICE_CONFIG}"
  fi
  install_metrics_unit
  log "metrics to ${NAT_METRICS_NAMESPACE} every ${METRICS_INTERVAL} s"
}

install_metrics_unit() {
  cat >"${METRICS_UNIT_FILE}" <<EOF
# Written by nat-boot: publishes this NAT's counters to CloudWatch once a minute.
[Unit]
Description=Metrics of NAT instance of ${NAT_ASG_NAME}
After=nat-instance.service

[Service]
Type=simple
ExecStart=${SCRIPT_FILE} metrics
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
EOF
  systemctl enable "$(basename "${METRICS_UNIT_FILE}")"
}

# One sample: forwarded bytes and packets, conntrack entries and maximum, the interface's dropped
# packets (both directions) and the zones covered. The counters only grow until a reboot.
metrics_sample() {
  local counter bytes=0 packets=0 drops=0 covering=0 name
  counter="$(nft list counter ip nat_instance_metrics forwarded 2>/dev/null)" || counter=""
  if [[ "${counter}" =~ packets\ ([0-9]+)\ bytes\ ([0-9]+) ]]; then
    packets="${BASH_REMATCH[1]}" bytes="${BASH_REMATCH[2]}"
  fi
  for name in rx_dropped tx_dropped; do
    drops=$((drops + $(cat "/sys/class/net/${ifname}/statistics/${name}" 2>/dev/null || echo 0)))
  done
  [[ ! -r "${COVERING_FILE}" ]] || covering="$(wc -w <"${COVERING_FILE}")"
  printf '%s %s %s %s %s %s\n' "${bytes}" "${packets}" \
    "$(cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0)" \
    "$(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null || echo 0)" "${drops}" "${covering}"
}

# put_metrics NAME=VALUE:UNIT...: one PutMetricData call, each metric for this NAT's group.
put_metrics() {
  local item name value unit i=0
  local -a form=("Namespace=${NAT_METRICS_NAMESPACE}")
  for item in "$@"; do
    i=$((i + 1))
    name="${item%%=*}" value="${item#*=}"
    unit="${value#*:}" value="${value%%:*}"
    form+=("MetricData.member.${i}.MetricName=${name}" "MetricData.member.${i}.Value=${value}"
      "MetricData.member.${i}.Unit=${unit}"
      "MetricData.member.${i}.Dimensions.member.1.Name=AutoScalingGroupName"
      "MetricData.member.${i}.Dimensions.member.1.Value=${NAT_ASG_NAME}")
  done
  aws_query monitoring PutMetricData "${form[@]}" >/dev/null
}

# An event each time routes move here ($1 says why: boot, takeover): a RoutesMoved data point of 1.
metrics_route_event() {
  [[ -n "${NAT_METRICS_NAMESPACE}" ]] || return 0
  put_metrics "RoutesMoved=1:Count" || log "could not publish the RoutesMoved event"
  log "RoutesMoved event ($1)"
}

# The metrics unit's loop: every METRICS_INTERVAL s, the counters' growth since the last sample (the
# whole value after a reset) and the gauges. $1 (tests) ends it after that many publications.
metrics_loop() {
  local rounds="${1:-0}" published=0 i
  local -a last current grown
  read -r -a last <<<"$(metrics_sample)"
  log "publishing metrics to ${NAT_METRICS_NAMESPACE} every ${METRICS_INTERVAL} s"
  while ((rounds == 0 || published < rounds)); do
    sleep "${METRICS_INTERVAL}"
    read -r -a current <<<"$(metrics_sample)"
    grown=("${current[@]}")
    for i in 0 1 4; do
      if ((current[i] >= last[i])); then
        grown[i]=$((current[i] - last[i]))
      fi
    done
    put_metrics "ForwardedBytes=${grown[0]}:Bytes" "ForwardedPackets=${grown[1]}:Count" \
      "ConntrackEntries=${current[2]}:Count" "ConntrackMax=${current[3]}:Count" \
      "DroppedPackets=${grown[4]}:Count" "CoveringZones=${current[5]}:Count" ||
      log "could not publish metrics (next try in ${METRICS_INTERVAL} s)"
    last=("${current[@]}")
    published=$((published + 1))
  done
}

# --- Takeover watcher ("watch" mode, the nat-instance-watch unit) ---------------------------------

# The watcher's unit: started by this script once the instance serves its zone (never in a warm
# pool), restarted a second after any exit. Not enabled for boot: nat-instance.service starts it at
# every start that ends in service.
install_watch_unit() {
  runs_watcher || return 0
  cat >"${WATCH_UNIT_FILE}" <<UNIT
# Written by nat-boot: probes the other zones' NATs and takes a dead zone's routes over.
[Unit]
Description=NAT instance takeover watcher of ${NAT_ASG_NAME}
After=nat-instance.service
# Never give up restarting (systemd's default stops after 5 starts in 10 s).
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart=${SCRIPT_FILE} watch
Restart=always
RestartSec=1s
UNIT
}

# The watcher runs from here on: the instance is in service and its routes point at it.
start_watcher() {
  systemctl start --no-block "$(basename "${WATCH_UNIT_FILE}")"
  log "watcher $(basename "${WATCH_UNIT_FILE}") started"
}

declare -a zones_sorted=() peers_sorted=()
declare -A zone_index=() zone_tables=() peer_eni=() peer_ip=() peer_instance=() peer_owner=()
declare -A tunnel_remote=() tunnel_eni=() tunnel_addr=() served_eni=() answered=() misses=() miss_since=() holddown_until=() last_decision=()
credentials_read_at=0
peers_read_at=0

# NAT_PEERS ("zone:group:rtb,rtb" sorted by zone) into the zone arrays.
parse_peers() {
  local entry zone rest i=0
  for entry in ${NAT_PEERS}; do
    zone="${entry%%:*}" rest="${entry#*:}"
    zones_sorted+=("${zone}")
    [[ "${zone}" == "${NAT_ZONE}" && "${NAT_ROLE}" != standby ]] || peers_sorted+=("${zone}")
    zone_index["${zone}"]="${i}"
    zone_tables["${zone}"]="${rest#*:}"
    i=$((i + 1))
  done
  if [[ -z "${zone_index[${NAT_ZONE}]:-}" ]]; then
    log "NAT_PEERS has no entry for this zone ${NAT_ZONE}"
    return 1
  fi
}

# The top-level <item> elements of the XML on stdin (a response's set), one per line. Their fields
# come in no fixed order (AWS's and moto's differ), and items nest (a table's routes).
xml_items() {
  tr -d '\n' | awk 'BEGIN { RS = "<" } NR > 1 {
    if ($0 ~ /^item>/) depth++
    if (depth > 0) item = item "<" $0
    if ($0 ~ /^\/item>/ && --depth == 0) { print item; item = "" }
  }'
}

# Route table -> the ENI its route to NAT_ROUTE_DESTINATION targets, "table eni" per line. A filter,
# not RouteTableId.N: a table that no longer exists is left out instead of failing the whole answer.
route_targets() {
  local -a ids=(Filter.1.Name=route-table-id)
  local answer item chunk table i=1 rtb
  (($# > 0)) || return 0 # a filter without values would describe every table of the account
  for rtb in "$@"; do
    ids+=("Filter.1.Value.${i}=${rtb}")
    i=$((i + 1))
  done
  answer="$(aws_query ec2 DescribeRouteTables "${ids[@]}")" || return 1
  while IFS= read -r item; do
    table="$(first_match '<routeTableId>([^<]+)</routeTableId>' <<<"${item}")"
    # A route is an <item> without nested items: the text up to the next <item> is one route.
    while IFS= read -r -d $'\x1e' chunk; do
      [[ "${chunk}" == *"<destinationCidrBlock>${NAT_ROUTE_DESTINATION}</destinationCidrBlock>"* ]] || continue
      printf '%s %s\n' "${table}" "$(first_match '<networkInterfaceId>([^<]+)</networkInterfaceId>' <<<"${chunk}")"
    done < <(printf '%s\x1e' "${item//<item>/$'\x1e'}")
  done < <(xml_items <<<"${answer}")
}

# "eni zone ip instance" per ENI found (a deleted ENI is left out, not an error; "-" for no instance).
describe_enis() {
  local -a form=(Filter.1.Name=network-interface-id)
  local answer item i=1 eni instance
  (($# > 0)) || return 0 # no filter value would describe every interface of the account
  for eni in "$@"; do
    form+=("Filter.1.Value.${i}=${eni}")
    i=$((i + 1))
  done
  answer="$(aws_query ec2 DescribeNetworkInterfaces "${form[@]}")" || return 1
  while IFS= read -r item; do
    instance="$(first_match '<instanceId>([^<]+)</instanceId>' <<<"${item}")"
    printf '%s %s %s %s\n' "$(first_match '<networkInterfaceId>([^<]+)</networkInterfaceId>' <<<"${item}")" \
      "$(first_match '<availabilityZone>([^<]+)</availabilityZone>' <<<"${item}")" \
      "$(first_match '<privateIpAddress>([^<]+)</privateIpAddress>' <<<"${item}")" "${instance:--}"
  done < <(xml_items <<<"${answer}")
}

# Who serves each other zone now: its own NAT (probed through a tunnel), this instance (covering it),
# or another zone's NAT. A zone given back to its own NAT starts its hold-down.
refresh_peers() {
  local zone table eni az ip instance owner
  local -a tables=()
  local -A zone_eni=() eni_zone=() eni_ip=() eni_instance=()
  local -a own=()
  for zone in "${peers_sorted[@]}"; do
    IFS=, read -r -a own <<<"${zone_tables[${zone}]}"
    tables+=("${own[@]}")
  done
  while read -r table eni; do
    for zone in "${peers_sorted[@]}"; do
      if [[ "${zone_tables[${zone}]%%,*}" == "${table}" ]]; then
        zone_eni["${zone}"]="${eni}"
      fi
    done
  done < <(route_targets "${tables[@]}")
  while read -r eni az ip instance; do
    eni_zone["${eni}"]="${az}" eni_ip["${eni}"]="${ip}" eni_instance["${eni}"]="${instance#-}"
  done < <(describe_enis "${zone_eni[@]}")
  peers_read_at="${EPOCHSECONDS}"
  for zone in "${peers_sorted[@]}"; do
    eni="${zone_eni[${zone}]:-}"
    if [[ "${eni}" == "${eni_id}" ]]; then
      owner="me"
    elif [[ -n "${eni_instance[${eni}]:-}" && "${eni_zone[${eni}]}" == "${zone}" ]]; then
      owner="own"
    elif [[ -n "${eni_zone[${eni}]:-}" && "${eni_zone[${eni}]}" != "${zone}" ]]; then
      owner="${eni_zone[${eni}]}"
    elif [[ -n "${eni}" && "${eni}" == "${peer_eni[${zone}]:-}" ]]; then
      owner="own" # the ENI went with its terminated instance: still the same (dead) peer
    else
      owner="none" # no NAT yet (the route's initial, never-attached target)
    fi
    note_owner "${zone}" "${owner}" "${eni}"
    if [[ "${owner}" == own && -n "${eni_ip[${eni}]:-}" ]]; then
      peer_eni["${zone}"]="${eni}" peer_ip["${zone}"]="${eni_ip[${eni}]}" peer_instance["${zone}"]="${eni_instance[${eni}]}"
      ensure_tunnel "${zone}"
    fi
  done
}

# Logs who serves a zone when that changes; a zone this instance covered and no longer does was
# given back (its replacement took its routes at boot).
note_owner() {
  local zone="$1" owner="$2" eni="$3" previous="${peer_owner[$1]:-}"
  peer_owner["${zone}"]="${owner}"
  [[ "${owner}" != "${previous}" || "${eni}" != "${served_eni[${zone}]:-}" ]] || return 0
  served_eni["${zone}"]="${eni}"
  if [[ "${previous}" == me && "${owner}" != me ]]; then
    log "give-back zone=${zone} routes now on ${eni} (${owner})"
  fi
  # A zone back on a NAT of its own after being covered: its new NAT gets time to settle in. A zone's
  # first NAT (after "none", the never-attached placeholder) was not covered: nothing was given back.
  if [[ "${owner}" == own && -n "${previous}" && "${previous}" != own && "${previous}" != none ]]; then
    holddown_until["${zone}"]=$((EPOCHSECONDS + GIVE_BACK_HOLDDOWN))
    log "hold-down zone=${zone} ${GIVE_BACK_HOLDDOWN} s: peer-not-forwarding will not fire for it"
  fi
  misses["${zone}"]=0
  answered["${zone}"]=0
  last_decision["${zone}"]=""
  log "peer zone=${zone} served by ${owner} eni=${eni:-none}"
  record_covering
}

# The zones this NAT covers besides its own, for the metrics' CoveringZones (one word each).
record_covering() {
  local zone
  local -a covered=()
  for zone in "${!peer_owner[@]}"; do
    [[ "${peer_owner[${zone}]}" != me ]] || covered+=("${zone}")
  done
  mkdir -p "$(dirname "${COVERING_FILE}")"
  printf '%s\n' "${covered[*]}" >"${COVERING_FILE}"
}

# This zone's and the peer's tunnel addresses, the VNI and the link of the pair with zone $1.
# A standby and its zone's NAT: one fixed pair (.0 the standby, .1 the NAT), each zone's pair apart.
tunnel_of() {
  if [[ "${NAT_TAKEOVER}" == standby ]]; then
    printf '%s %s 4095 natstandby %s\n' "${TUNNEL_PREFIX}.255.0" "${TUNNEL_PREFIX}.255.1" "${TUNNEL_TABLE_BASE}"
    return 0
  fi
  local me="${zone_index[${NAT_ZONE}]}" peer="${zone_index[$1]}" low high
  low=$((me < peer ? me : peer)) high=$((me < peer ? peer : me))
  local base="${TUNNEL_PREFIX}.${low}" mine theirs
  mine=$((2 * high + (me == low ? 0 : 1)))
  theirs=$((2 * high + (me == low ? 1 : 0)))
  printf '%s %s %s natpeer%s %s\n' "${base}.${mine}" "${base}.${theirs}" "$((4096 + low * 256 + high))" \
    "${peer}" "$((TUNNEL_TABLE_BASE + peer))"
}

# A VXLAN link to zone $1's NAT and a policy route: what leaves from this end's address goes through
# the peer, which forwards it like a client's packet. Made again for a new NAT even at the same
# address (a replacement may get it): the new tunnel end has another MAC, which a kept neighbour
# entry would miss until it went stale (~30 s of probes lost, seen in the lab).
ensure_tunnel() {
  local zone="$1" mine theirs vni link table remote="${peer_ip[$1]}" eni="${peer_eni[$1]}"
  [[ "${tunnel_remote[${zone}]:-}" != "${remote}" || "${tunnel_eni[${zone}]:-}" != "${eni}" ]] || return 0
  read -r mine theirs vni link table < <(tunnel_of "${zone}")
  ip link del "${link}" 2>/dev/null || true
  ip link add "${link}" type vxlan id "${vni}" remote "${remote}" local "$(own_ip)" dev "${ifname}" dstport "${VXLAN_PORT}"
  ip addr add "${mine}/31" dev "${link}"
  sysctl -q -w "net.ipv4.conf.${link}.rp_filter=2" # replies from the internet arrive through the tunnel
  ip link set "${link}" up
  ip route replace default via "${theirs}" dev "${link}" table "${table}"
  ip rule del from "${mine}" lookup "${table}" 2>/dev/null || true
  ip rule add from "${mine}" lookup "${table}" priority "${table}"
  tunnel_remote["${zone}"]="${remote}" tunnel_eni["${zone}"]="${eni}" tunnel_addr["${zone}"]="${mine}"
  answered["${zone}"]=0
  log "tunnel ${link} vni=${vni} ${mine} -> ${theirs} via ${remote} (zone ${zone})"
}

# This instance's primary private address.
own_ip() {
  ip -o -4 addr show dev "${ifname}" | awk '{ sub(/\/.*/, "", $4); print $4; exit }'
}

# One TCP connect to the probe target through each zone served by its own NAT, all in one curl
# process (one transfer per tunnel, in parallel): "zone ok|miss" per line. A probe connected when
# curl reports a connect time, whatever the answer (EC2's endpoint may refuse plain HTTP).
probe_round() {
  local zone output seconds
  local -a args=() probed=()
  local -A connect=()
  for zone in "${peers_sorted[@]}"; do
    [[ "${peer_owner[${zone}]:-}" == own && -n "${tunnel_addr[${zone}]:-}" ]] || continue
    ((${#args[@]} == 0)) || args+=(--next)
    args+=(--silent --output /dev/null --interface "${tunnel_addr[${zone}]}" --connect-timeout "${PROBE_TIMEOUT}"
      --max-time "${PROBE_TIMEOUT}" --write-out "${zone} %{time_connect}\n" "http://${NAT_PROBE_TARGET}/")
    probed+=("${zone}")
  done
  ((${#probed[@]} > 0)) || return 0
  output="$(curl --parallel --parallel-immediate "${args[@]}" 2>/dev/null)" || true
  while read -r zone seconds; do
    [[ -z "${zone}" ]] || connect["${zone}"]="${seconds}"
  done <<<"${output}"
  for zone in "${probed[@]}"; do
    seconds="${connect[${zone}]:-0}"
    if [[ "${seconds}" =~ ^[0-9.]+$ && "${seconds}" =~ [1-9] ]]; then
      echo "${zone} ok"
    else
      echo "${zone} miss"
    fi
  done
}

# What the API says of zone $1's NAT: "dead <why>", "healthy", or "unknown" (no answer).
confirm_peer() {
  local instance="${peer_instance[$1]:-}" answer error state instance_status system_status
  if [[ -z "${instance}" ]]; then
    echo "dead no-instance"
    return 0
  fi
  if ! answer="$(aws_query ec2 DescribeInstanceStatus "InstanceId.1=${instance}" IncludeAllInstances=true 2>&1)"; then
    if [[ "${answer}" == *InvalidInstanceID.NotFound* ]]; then
      echo "dead gone"
    else
      echo "unknown"
    fi
    return 0
  fi
  state="$(first_match '<name>(pending|running|shutting-down|terminated|stopping|stopped)</name>' <<<"${answer}")"
  instance_status="$(first_match '<instanceStatus>[[:space:]]*<status>([a-z-]+)</status>' <<<"${answer}")"
  system_status="$(first_match '<systemStatus>[[:space:]]*<status>([a-z-]+)</status>' <<<"${answer}")"
  if [[ -z "${state}" ]]; then
    echo "dead gone"
  elif [[ "${state}" != running && "${state}" != pending ]]; then
    echo "dead ${state}"
  elif [[ "${instance_status}" == impaired || "${system_status}" == impaired ]]; then
    echo "dead impaired"
  else
    echo "healthy"
  fi
}

# The zone that acts for dead zone $1: the next zone after it, in sorted order, whose own NAT this
# watcher sees alive (itself included). Every survivor computes the same answer from the same view.
successor_of() {
  local dead="$1" count="${#zones_sorted[@]}" i zone
  if [[ "${NAT_ROLE}" == standby ]]; then # a standby is its zone's only successor
    printf '%s\n' "${NAT_ZONE}"
    return 0
  fi
  for ((i = 1; i < count; i++)); do
    zone="${zones_sorted[$(((zone_index[${dead}] + i) % count))]}"
    if [[ "${zone}" == "${NAT_ZONE}" ]]; then
      printf '%s\n' "${zone}"
      return 0
    fi
    if [[ "${peer_owner[${zone}]:-}" == own ]] && ((${misses[${zone}]:-0} < PROBE_MISSES)); then
      printf '%s\n' "${zone}"
      return 0
    fi
  done
}

# Logs a decision (with the misses so far) once while it stays the same.
decide() {
  local zone="$1"
  shift
  [[ "${last_decision[${zone}]:-}" != "$*" ]] || return 0
  last_decision["${zone}"]="$*"
  log "decision zone=${zone} misses=${misses[${zone}]} $*"
}

# Zone $1's NAT failed its probes again: confirm through the API, then act if this watcher is the one.
judge_peer() {
  local zone="$1" verdict rule successor now="${EPOCHSECONDS}"
  misses["${zone}"]=$((${misses[${zone}]:-0} + 1))
  if ((misses[${zone}] == 1)); then
    miss_since["${zone}"]="${now}"
  fi
  ((misses[${zone}] >= PROBE_MISSES)) || return 0
  verdict="$(confirm_peer "${zone}")"
  case "${verdict}" in
    dead*) rule="peer-dead" ;;
    healthy)
      # Only a NAT that forwarded our probes before can have stopped: one that never did may just
      # not have its tunnel end yet (its watcher starts after its boot), or this end may be wrong.
      if ((${answered[${zone}]:-0} == 0)); then
        decide "${zone}" "api=healthy, never answered through this NAT: peer-not-forwarding does not apply"
        return 0
      fi
      if ((now - miss_since[${zone}] < NOT_FORWARDING_HOLD)); then
        decide "${zone}" "api=healthy: holding ${NOT_FORWARDING_HOLD} s before peer-not-forwarding"
        return 0
      fi
      if ((now < ${holddown_until[${zone}]:-0})); then
        decide "${zone}" "api=healthy: peer-not-forwarding held down after a give-back"
        return 0
      fi
      rule="peer-not-forwarding"
      ;;
    *)
      decide "${zone}" "api=no-answer: not acting"
      return 0
      ;;
  esac
  successor="$(successor_of "${zone}")"
  if [[ "${successor}" != "${NAT_ZONE}" ]]; then
    decide "${zone}" "rule=${rule} (${verdict}): zone ${successor:-none} acts, not this one"
    peers_read_at=0 # read who serves the zone next round: the successor's takeover shows there
    return 0
  fi
  decide "${zone}" "rule=${rule} (${verdict}): taking over"
  take_over "${zone}" "${rule}" "${verdict}"
}

# Points the dead zone's tables that still target its NAT here, then has its group replace it now
# (a terminated instance is being replaced already: nothing to mark).
take_over() {
  local zone="$1" rule="$2" verdict="$3" dead_eni="${peer_eni[$1]}" table eni other
  local -a tables=() failed=() all=() own=() carried=("$1")
  local -A table_zone=()
  # Every peer's tables: a zone the dead NAT was covering goes with it (they point at the same ENI).
  for other in "${peers_sorted[@]}"; do
    IFS=, read -r -a own <<<"${zone_tables[${other}]}"
    for table in "${own[@]}"; do
      table_zone["${table}"]="${other}"
    done
    all+=("${own[@]}")
  done
  while read -r table eni; do
    if [[ "${eni}" == "${dead_eni}" ]]; then
      tables+=("${table}")
      other="${table_zone[${table}]}"
      [[ " ${carried[*]} " == *" ${other} "* ]] || carried+=("${other}")
    fi
  done < <(route_targets "${all[@]}")
  if ((${#tables[@]} == 0)); then
    log "takeover zone=${zone} rule=${rule} skipped: its routes no longer target ${dead_eni}"
    refresh_peers
    return 0
  fi
  [[ "${NAT_ROLE}" != standby ]] || take_elastic_ip || log "could not move elastic ip ${NAT_EIP_ALLOCATION_ID} here"
  mapfile -t failed < <(point_route_tables "${tables[@]}")
  log "takeover zone=${zone} rule=${rule} tables=${tables[*]} from=${dead_eni} to=${eni_id} failed=${failed[*]:-none}"
  if [[ "${verdict}" == "dead terminated" || "${verdict}" == "dead shutting-down" || "${verdict}" == "dead gone" ]]; then
    log "${peer_instance[${zone}]:-the peer} is ${verdict#dead }: its group replaces it already"
  elif aws_query autoscaling SetInstanceHealth "InstanceId=${peer_instance[${zone}]}" HealthStatus=Unhealthy \
    ShouldRespectGracePeriod=false >/dev/null 2>&1; then
    log "marked ${peer_instance[${zone}]} unhealthy: its group replaces it now"
  else
    log "could not mark ${peer_instance[${zone}]} unhealthy (already gone?)"
  fi
  ((${#carried[@]} == 1)) || log "also took ${carried[*]:1}, which the dead NAT of ${zone} covered"
  for other in "${carried[@]}"; do
    note_owner "${other}" me "${eni_id}"
  done
  metrics_route_event "takeover of ${carried[*]}"
}

# A standby takes the zone's Elastic IP before its routes: the zone keeps its egress address while
# covered. One call (where it was does not matter: the zone's replacement takes it back at boot).
take_elastic_ip() {
  [[ -n "${NAT_EIP_ALLOCATION_ID}" ]] || return 0
  aws_query ec2 AssociateAddress "AllocationId=${NAT_EIP_ALLOCATION_ID}" "NetworkInterfaceId=${eni_id}" \
    AllowReassociation=true >/dev/null || return 1 # called in a || list: errexit does not apply
  log "elastic ip ${NAT_EIP_ALLOCATION_ID} -> ${eni_id}"
}

# A survivor that took this zone over just as this instance booted (its check of the routes and
# this boot's route step crossed) keeps the zone: the watcher of a NAT that took its routes in the
# last RECLAIM_WINDOW seconds takes back the tables another zone's NAT holds. Only then: an older NAT
# whose zone was taken over may be the hung one.
reclaim_own_zone() {
  local window="${1:-${RECLAIM_WINDOW}}" table eni az _ip _instance age
  local -a own=() taken=()
  local -A eni_zone=()
  [[ -e "${SERVED_MARKER}" ]] || return 0
  age=$((EPOCHSECONDS - $(stat -c %Y "${SERVED_MARKER}")))
  ((age <= window)) || return 0
  read -r -a own <<<"${NAT_ROUTE_TABLE_IDS}"
  local -A target=()
  while read -r table eni; do
    [[ "${eni}" == "${eni_id}" ]] || target["${table}"]="${eni}"
  done < <(route_targets "${own[@]}")
  ((${#target[@]} > 0)) || return 0
  while read -r eni az _ip _instance; do
    eni_zone["${eni}"]="${az}"
  done < <(describe_enis "${target[@]}")
  for table in "${!target[@]}"; do
    az="${eni_zone[${target[${table}]}]:-}"
    if [[ -n "${az}" && "${az}" != "${NAT_ZONE}" ]]; then
      taken+=("${table}")
    fi
  done
  ((${#taken[@]} > 0)) || return 0
  point_route_tables "${taken[@]}" >/dev/null
  log "reclaim zone=${NAT_ZONE} tables=${taken[*]} from another zone's NAT (booted ${age} s ago)"
}

# --- Spot interruption (watch mode; README, "Spot instances") ----------------------------------

# A NAT with a standby: the standby's ENI, found by the address its probes come from (what the passive
# tunnel end learned) in this subnet. Nothing learned (no standby probing): nothing printed.
standby_eni() {
  local link address subnet
  read -r _ _ _ link _ < <(tunnel_of "${NAT_ZONE}")
  address="$(bridge fdb show dev "${link}" 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dst") { print $(i + 1); exit } }')"
  [[ -n "${address}" ]] || return 0
  subnet="$(imds_get "network/interfaces/macs/${mac}/subnet-id")" || return 0
  aws_query ec2 DescribeNetworkInterfaces Filter.1.Name=addresses.private-ip-address "Filter.1.Value.1=${address}" \
    Filter.2.Name=subnet-id "Filter.2.Value.1=${subnet}" | first_match '<networkInterfaceId>([^<]+)</networkInterfaceId>'
}

spot_checked_at=0
handed_over=0
rebalance_seen=0

# A new IMDSv2 token: the first lasts 900 s, the watcher runs for days.
renew_imds_token() {
  imds_token="$(curl --fail --silent --show-error --connect-timeout 2 --max-time 5 -X PUT \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 900" "${IMDS_ENDPOINT}/latest/api/token")" ||
    log "could not renew the IMDS token"
}

# This instance's Spot notices, both paths in one curl (each 404 while EC2 has nothing to say), each
# answer its body, a newline, its HTTP code and \x1e: "interruption <action> <time>",
# "rebalance <time>", "expired" (the token) or "none" (a failed read too: tried again next time).
spot_notice() {
  local answer action rebalance
  answer="$(curl --silent --connect-timeout 1 --max-time 2 -H "X-aws-ec2-metadata-token: ${imds_token}" \
    --write-out $'\n%{http_code}\x1e' "${IMDS_ENDPOINT}/latest/meta-data/spot/instance-action" \
    "${IMDS_ENDPOINT}/latest/meta-data/events/recommendations/rebalance")" || true
  action="${answer%%$'\x1e'*}" rebalance="${answer#*$'\x1e'}"
  rebalance="${rebalance%%$'\x1e'*}"
  if [[ "${action##*$'\n'}" == 401 ]]; then
    echo expired
  elif [[ "${action##*$'\n'}" == 200 ]]; then
    echo "interruption $(json_string action <<<"${action}") $(json_string time <<<"${action}")"
  elif [[ "${rebalance##*$'\n'}" == 200 ]]; then
    echo "rebalance $(json_string noticeTime <<<"${rebalance}")"
  else
    echo none
  fi
}

# Every SPOT_CHECK_INTERVAL s: an interruption notice hands the routes over; a rebalance
# recommendation is logged only (its replacement takes the routes at boot, handing over early would
# only add a cross-zone period).
check_spot() {
  local notice
  ((EPOCHSECONDS - spot_checked_at >= SPOT_CHECK_INTERVAL)) || return 0
  spot_checked_at="${EPOCHSECONDS}"
  notice="$(spot_notice)"
  case "${notice}" in
    expired) renew_imds_token ;;
    interruption*) ((handed_over)) || hand_over "${notice#interruption }" ;;
    rebalance*)
      ((rebalance_seen)) || log "spot rebalance recommendation (${notice#rebalance }): staying until a notice"
      rebalance_seen=1
      ;;
  esac
}

# Interruption notice ($1: "action time"): every table that targets this NAT (its zone's and any it
# covers) goes to the NAT that would act for this zone, by successor_of among the peers seen alive;
# then the watcher only waits for EC2 to take the instance.
hand_over() {
  local successor target table eni zone
  local -a all=() own=() tables=() failed=()
  if [[ "${NAT_TAKEOVER}" == standby ]]; then
    successor=standby
    target="$(standby_eni)" || target="" # its standby's; none when not found (logged below)
  else
    successor="$(successor_of "${NAT_ZONE}")"
    target="${peer_eni[${successor:-none}]:-}"
  fi
  if [[ -z "${successor}" || "${successor}" == "${NAT_ZONE}" || -z "${target}" ]]; then
    [[ "${last_decision[${NAT_ZONE}]:-}" == no-peer ]] ||
      log "handover zone=${NAT_ZONE} rule=spot-interruption impossible: no live peer to hand to (notice $1)"
    last_decision["${NAT_ZONE}"]=no-peer
    return 0
  fi
  for zone in "${zones_sorted[@]}"; do
    IFS=, read -r -a own <<<"${zone_tables[${zone}]}"
    all+=("${own[@]}")
  done
  ((${#all[@]} > 0)) || read -r -a all <<<"${NAT_ROUTE_TABLE_IDS}" # a NAT with a standby knows its own only
  while read -r table eni; do
    [[ "${eni}" != "${eni_id}" ]] || tables+=("${table}")
  done < <(route_targets "${all[@]}")
  # A standby has no public address of its own to spare: the zone's Elastic IP goes with the routes.
  if [[ "${successor}" == standby ]]; then
    eni_id="${target}" take_elastic_ip || log "could not hand elastic ip ${NAT_EIP_ALLOCATION_ID} to ${target}"
  fi
  # point_route targets eni_id: here, for these tables only, the successor's ENI.
  ((${#tables[@]} == 0)) || mapfile -t failed < <(eni_id="${target}" point_route_tables "${tables[@]}")
  log "handover zone=${NAT_ZONE} rule=spot-interruption to=${target} (${successor}) tables=${tables[*]:-none} failed=${failed[*]:-none} notice=$1"
  ((${#failed[@]} > 0)) || handed_over=1
  ((${#tables[@]} == 0)) || metrics_route_event "handover to ${successor}"
}

# A crash of the watcher is logged; systemd starts it again a second later.
on_watch_error() {
  local status=$?
  trap - ERR
  if ((BASH_SUBSHELL > 0)); then
    exit "${status}"
  fi
  log "watcher error line=$1 status=${status}: exiting (systemd restarts it)"
  exit "${status}"
}

# Sleeps what is left of the probe interval started at $1 (EPOCHREALTIME).
sleep_rest_of_interval() {
  local start_us="${1/[.,]/}" now_us="${EPOCHREALTIME/[.,]/}" left_ms
  left_ms=$((PROBE_INTERVAL * 1000 - (now_us - start_us) / 1000))
  ((left_ms > 0)) || return 0
  sleep "$((left_ms / 1000)).$(printf '%03d' "$((left_ms % 1000))")"
}

# One round: probe, judge the misses, read who serves what when due.
watch_round() {
  local zone result
  local -a results
  mapfile -t results < <(probe_round)
  for result in "${results[@]}"; do
    zone="${result% *}"
    if [[ "${result}" == *" ok" ]]; then
      if ((${misses[${zone}]:-0} > 0 || ${answered[${zone}]:-0} == 0)); then
        log "probes zone=${zone} answer (after ${misses[${zone}]:-0} misses)"
      fi
      answered["${zone}"]=1
      misses["${zone}"]=0
      last_decision["${zone}"]=""
    elif ((${misses[${zone}]:-0} == 0)) && ((EPOCHSECONDS - peers_read_at > 0)); then
      refresh_peers # first miss: maybe the zone has a new NAT (or is served by another)
      [[ "${peer_owner[${zone}]}" != own ]] || judge_peer "${zone}"
    else
      judge_peer "${zone}"
    fi
  done
  if ((EPOCHSECONDS - peers_read_at >= PEER_REFRESH_INTERVAL)); then
    refresh_peers
  fi
  # A survivor's takeover that lands just after this boot's route step (they crossed) is taken back at
  # once: no rule can judge this NAT hung that soon (3 misses and the 8 s hold take 11 s).
  reclaim_own_zone "${CROSSED_WINDOW}"
  refresh_credentials
}

# The role's credentials again every CREDENTIALS_REFRESH_INTERVAL (they expire after hours).
refresh_credentials() {
  if ((EPOCHSECONDS - credentials_read_at >= CREDENTIALS_REFRESH_INTERVAL)) && [[ -z "${AWS_ACCESS_KEY_ID:-}" ]]; then
    api_key_id=""
    renew_imds_token
    load_credentials >/dev/null && credentials_read_at="${EPOCHSECONDS}"
  fi
}

# The watcher: probes each other zone's NAT through itself every PROBE_INTERVAL and takes a dead or
# hung zone's routes over (README, "Seconds-level failover"). Runs until stopped.
watch_main() {
  local started
  setup_logging "${WATCH_LOG_FILE}"
  trap 'on_watch_error ${LINENO}' ERR
  current_step="watch"
  check_config
  if ! runs_watcher; then
    log "takeover ${NAT_TAKEOVER}, role ${NAT_ROLE}: nothing to watch"
    return 0
  fi
  if ! watches; then
    read_identity
    credentials_read_at="${EPOCHSECONDS}"
    log "spot notices only: the standby watches this NAT"
    while ((! handed_over)); do
      check_spot
      refresh_credentials
      sleep "${SPOT_CHECK_INTERVAL}"
    done
    sleep infinity # handed over: nothing more to do until EC2 takes the instance
  fi
  parse_peers
  read_identity
  credentials_read_at="${EPOCHSECONDS}"
  refresh_peers
  check_spot # a watcher started again after a handover must not reclaim
  ((handed_over)) || reclaim_own_zone
  log "watching ${peers_sorted[*]} every ${PROBE_INTERVAL} s through ${NAT_PROBE_TARGET}"
  while true; do
    started="${EPOCHREALTIME}"
    check_spot
    ((handed_over)) || watch_round # handed over: no probing, no reclaiming until EC2 takes it
    sleep_rest_of_interval "${started}"
  done
}

# First boot (user data, no argument): prepare, then serve unless going into a warm pool (or a
# standby: prepared, it only watches).
# Later start (the unit, "start"): load the persisted settings, then serve if Auto Scaling puts this
# instance in service and the routes are not already here.
main() {
  local mode="${1:-first-boot}"
  if [[ "${mode}" == "metrics" ]]; then
    read_identity >/dev/null
    metrics_loop "${2:-0}"
    return 0
  fi
  if [[ "${mode}" == watch ]]; then
    watch_main
    return 0
  fi
  setup_logging
  trap 'on_error ${LINENO}' ERR
  log "boot mode ${mode}"
  step config check_config
  step identity read_identity
  if [[ "${mode}" == "start" ]]; then
    step forwarding reapply_forwarding
    step masquerade reapply_masquerade
  else
    step forwarding enable_forwarding
    step masquerade configure_masquerade
    step persist persist_for_restarts
    [[ -z "${NAT_METRICS_NAMESPACE}" ]] || step metrics configure_metrics_counters
  fi
  step target-state read_target_state
  if [[ "${mode}" == "start" && "${target_state}" == Warmed:* ]]; then
    step in-service wait_for_in_service
  fi
  if [[ "${target_state}" == Warmed:* ]]; then
    step warm-pool wait_in_warm_pool
    return 0
  fi
  if [[ "${NAT_ROLE}" == standby ]]; then
    prepare_standby "${mode}"
    return 0
  fi
  if [[ "${mode}" == "start" && -e "${SERVED_MARKER}" ]] && routes_point_here; then
    log "routes already point at ${eni_id}: serving since before this start"
    ! runs_watcher || step watcher start_watcher
    [[ "${NAT_TAKEOVER}" != standby ]] || step standby-tunnel open_standby_tunnel
    return 0
  fi
  step source-dest-check disable_source_dest_check
  step elastic-ip associate_elastic_ip
  step routes point_routes
  remember_serving
  metrics_route_event boot
  step lifecycle complete_launch
  ! runs_watcher || step watcher start_watcher
  [[ "${NAT_TAKEOVER}" != standby ]] || step standby-tunnel open_standby_tunnel
  step facts record_facts
  current_step="ready"
  [[ -z "${NAT_METRICS_NAMESPACE}" ]] || systemctl start --no-block "$(basename "${METRICS_UNIT_FILE}")" || true
  log "NAT ready: ${instance_id} routes ${NAT_ROUTE_TABLE_IDS}"
}

# Tests source this file with NAT_BOOT_FUNCTIONS_ONLY=1 to call its functions one by one.
[[ "${NAT_BOOT_FUNCTIONS_ONLY:-0}" == 1 ]] && return 0
main "$@"
