#!/usr/bin/env bash
# Runs a command as root of fresh user, network and mount namespaces, so a user without root can
# still build the harness's network namespaces: /run gets a private tmpfs (for /run/netns) and the
# new network namespace its loopback. Nothing outside these namespaces is touched.
set -o errexit -o nounset -o pipefail

if [[ $# -eq 0 ]]; then
  printf 'usage: %s COMMAND [ARG...]\n' "$0" >&2
  exit 2
fi
# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare --user --map-root-user --net --mount --propagation private \
  bash -c 'mount -t tmpfs tmpfs /run && ip link set lo up && exec "$@"' rootless "$@"
