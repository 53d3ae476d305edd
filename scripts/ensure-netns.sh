#!/usr/bin/env bash
# Make sure this machine can run the poller's packet-loss test
# (poller::failover::a_black_holed_lock_connection_is_dropped_by_the_server_after_the_leader_stepped_down).
# That test starts a PostgreSQL server of its own behind a router, each in a network namespace,
# and has the router drop one connection's packets. It needs:
#   - root (network namespaces, routing rules);
#   - iproute2 (`ip`), installed here when missing (as root, with apt-get);
#   - runuser and setpriv (util-linux), the `postgres` user and PostgreSQL's server binaries
#     (initdb, postgres; Debian's postgresql package has them).
# Without them it fails here, before anything is built, saying what is missing.
#
# Also removes what an interrupted run of that test left behind: namespaces named
# pulse-t-netns-* older than 10 minutes with no process in them (their links go with them),
# and their temporary folders.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TEST_NAME="poller::failover::a_black_holed_lock_connection_is_dropped_by_the_server_after_the_leader_stepped_down"

cannot() {
  die "$TEST_NAME cannot run here: $*. make test needs it (run as root on Linux)"
}

is_root || cannot "it needs root (it creates network namespaces); run make test as root, as CI does"

if ! have ip; then
  if can_apt; then
    apt_install iproute2 || cannot "apt-get install iproute2 failed"
  else
    cannot "iproute2 (ip) is not installed"
  fi
fi

# Leftovers of an interrupted run (the test removes its own when it ends, even failing).
now="$(date +%s)"
removed=0
while read -r ns _; do
  [[ "$ns" == pulse-t-netns-* ]] || continue
  created="$(stat -c %Y "/run/netns/$ns" 2>/dev/null || echo "$now")"
  ((now - created > 600)) || continue
  [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] || continue
  ip netns del "$ns" 2>/dev/null && removed=$((removed + 1))
done < <(ip netns list 2>/dev/null || true)
find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'pulse-t-netns-*' -type d -mmin +10 -exec rm -rf {} + 2>/dev/null || true
((removed == 0)) || log "removed $removed network namespace(s) left behind by an interrupted test"

probe="pulse-t-netns-probe-$$"
if ! err="$(ip netns add "$probe" 2>&1)"; then
  cannot "ip netns add failed: $err"
fi
ip netns del "$probe"

have runuser || cannot "runuser (util-linux) is not installed"
have setpriv || cannot "setpriv (util-linux) is not installed"
id postgres >/dev/null 2>&1 || cannot "there is no postgres user (apt-get install postgresql creates it)"
found=""
for bin in /usr/lib/postgresql/*/bin "$(pg_config --bindir 2>/dev/null || true)"; do
  if [[ -n "$bin" && -x "$bin/initdb" && -x "$bin/postgres" ]]; then
    found="$bin"
  fi
done
[[ -n "$found" ]] || cannot "PostgreSQL's server binaries (initdb, postgres) are not installed (apt-get install postgresql)"

log "network namespaces ok; a private PostgreSQL can be started from $found"
