#!/usr/bin/env bash
# Runs a command as root of fresh user, network and mount namespaces, so a user without root can
# still build the harness's network namespaces: /run gets a private tmpfs (for /run/netns) and the
# new network namespace its loopback. Nothing outside these namespaces is touched.
#
# Each run also gets its own temp space, TMPDIR=/run/tmp on that private tmpfs. Inside the user
# namespace every user is "root", so pytest would pick /tmp/pytest-of-root, which belongs to
# whoever made it first (the real root, another user) and stops the run with "not owned by the
# current user"; and a run writing it would stop root's next run the same way. Why TMPDIR on the
# private tmpfs rather than the alternatives:
# - a tmpfs over /tmp would hide everything under the real /tmp, a checkout or venv kept there too;
# - a per-user --basetemp is wiped by pytest at start (two runs of one user would delete each
#   other's files) and covers pytest alone;
# - TMPDIR is honoured by pytest, Python's tempfile (the instance sandboxes), Terraform and mktemp,
#   and the tmpfs vanishes with the namespace, even after kill -9: nothing to clean up.
set -o errexit -o nounset -o pipefail

if [[ $# -eq 0 ]]; then
  printf 'usage: %s COMMAND [ARG...]\n' "$0" >&2
  exit 2
fi
# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare --user --map-root-user --net --mount --propagation private \
  bash -c '
    set -o errexit
    mount -t tmpfs tmpfs /run
    mkdir -m 0700 /run/tmp
    PATH="${PATH}:/usr/sbin:/sbin" ip link set lo up
    TMPDIR=/run/tmp exec "$@"
  ' rootless "$@"
