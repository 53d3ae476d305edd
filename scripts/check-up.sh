#!/usr/bin/env bash
# A test of `make up` / `make down`, run by `make test`: start the whole stack the way a
# newcomer does, on free ports with its own state folder, database and demo tenant (so it runs
# beside a developer's own stack and beside other tests), then check that:
#   - a port already in use is refused with a clear message before anything starts;
#   - NATS is started from the installed server when none answers at NATS_URL;
#   - every service comes up ready and the printed dashboard URL answers;
#   - a printed demo login works, the fleet has demo devices, a WebSocket ticket names both
#     gateways, and the dashboard is served when it was built;
#   - a second `make up` is refused while the first runs, and leaves the first running;
#   - `make down` stops every process it recorded and nothing else: not a NATS server that
#     `make test` started.
#
# Environment: DATABASE_URL (its server is used; the database is pulse_t_up_<random>), NATS_URL,
# PULSE_UP_PROFILE (debug here: `make test` has just built the debug binaries), CARGO_TARGET_DIR.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PULSE_ROOT"

need_tool curl curl "to check make up"
need_tool python3 python3 "to read the API's JSON"

run_id="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
tenant="upchk$run_id"
server_url="${DATABASE_URL:-$PULSE_DEFAULT_DATABASE_URL}"
server_url="${server_url%/*}"
db="pulse_t_up_$run_id"
state="$(mktemp -d)"
cookies="$state/cookies"
out="$state/up.out"

# Seven free ports in a random stretch above the usual service ports and below those the
# kernel hands to outgoing connections (one of those could be taken by the time a service
# binds it), each tried by binding it.
read -r ephemeral_low _ 2>/dev/null </proc/sys/net/ipv4/ip_local_port_range || ephemeral_low=32768
((ephemeral_low > 21000)) || ephemeral_low=61000
port_free() {
  python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}
ports=()
candidate=$((20000 + RANDOM % (ephemeral_low - 20000 - 500)))
while ((${#ports[@]} < 7)); do
  if port_free "$candidate"; then
    ports+=("$candidate")
  fi
  candidate=$((candidate + 1))
done
web_port="${ports[0]}"

# NATS on a port where none runs: make up must start one of its own (from the installed
# nats-server, data in the state folder), and make down must stop it.
nats_private_port="${ports[5]}"
shared_nats_url="${NATS_URL:-$PULSE_DEFAULT_NATS_URL}"
export NATS_URL="nats://127.0.0.1:$nats_private_port"
export DATABASE_URL="$server_url/$db"
export PULSE_STATE_DIR="$state/pulse"
export PULSE_WEB_PORT="$web_port"
export PULSE_WEB_OPS_PORT="${ports[6]}"
export PULSE_GATEWAY_PORTS="${ports[1]} ${ports[2]}"
export PULSE_POLLER_PORTS="${ports[3]} ${ports[4]}"
export PULSE_UP_DETACH=1
export PULSE_UP_PROFILE="${PULSE_UP_PROFILE:-debug}"
# The binaries make up built: CARGO_TARGET_DIR when set, as for cargo itself.
bin="${CARGO_TARGET_DIR:-$PULSE_ROOT/target}/$PULSE_UP_PROFILE"
export PULSE_SIM_TENANTS="$tenant"
export PULSE_SIM_DEVICES=20

# Why the check failed, repeated after the services' logs so that it is the last thing shown.
reason=""

cleanup() {
  local rc=$?
  bash scripts/down.sh >/dev/null 2>&1 || true
  # The NATS step 5 starts as `make test` would, which `make down` leaves alone.
  local nats_pid
  nats_pid="$(cat "$PULSE_STATE_DIR/nats/nats.pid" 2>/dev/null || true)"
  # Only while it is still the nats-server recorded (a process id can be reused), and gone
  # before its store is removed below: a server still writing there would fail the removal.
  if [[ -n "$nats_pid" ]] && recorded_pid_alive "$nats_pid"; then
    kill "$nats_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      pid_alive "$nats_pid" || break
      sleep 0.1
    done
    if pid_alive "$nats_pid"; then
      kill -KILL "$nats_pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  psql -X -w -q "$server_url/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
    </dev/null >/dev/null 2>&1 || true
  if ((rc != 0)) && [[ -d "$PULSE_STATE_DIR/logs" ]]; then
    for f in "$PULSE_STATE_DIR"/logs/*.log; do
      echo "---- $(basename "$f") (last 20 lines)" >&2
      tail -n 20 "$f" >&2 || true
    done
  fi
  rm -rf "$state" || warn "could not remove $state"
  [[ -z "$reason" ]] || printf 'pulse: error: make up check: %s\n' "$reason" >&2
  exit "$rc"
}
trap cleanup EXIT

fail() {
  reason="$*"
  die "make up check: $*"
}

# 1. A port in use is refused before anything starts: the shared NATS port is surely taken.
nats_port="${shared_nats_url##*:}"
if PULSE_WEB_PORT="$nats_port" bash scripts/up.sh >"$out" 2>&1; then
  fail "make up started although port $nats_port was in use"
fi
grep -q "port $nats_port is already in use" "$out" ||
  fail "no clear message for a port in use; it printed: $(cat "$out")"
[[ -z "$(ls -A "$PULSE_STATE_DIR/run" 2>/dev/null)" ]] ||
  fail "make up recorded processes although it refused to start"
log "make up check: a port in use is refused clearly"

# 2. The stack comes up.
bash scripts/up.sh >"$out" 2>&1 || fail "make up failed: $(tail -n 30 "$out")"
grep -q "Dashboard   http://127.0.0.1:$web_port/" "$out" || fail "no dashboard URL printed"
nats_pid="$(cat "$PULSE_STATE_DIR/nats/nats.pid" 2>/dev/null)" ||
  fail "make up did not start NATS although none ran at $NATS_URL"
grep -q "starting .*nats-server" "$out" || fail "make up did not say that it started NATS"
grep -q "admin@$tenant.example / pulse-demo" "$out" || fail "the demo login was not printed"
mapfile -t pids < <(cat "$PULSE_STATE_DIR"/run/*.pid)
((${#pids[@]} == 6)) || fail "expected 6 recorded processes, found ${#pids[@]}"
log "make up check: ${#pids[@]} processes ready"

base="http://127.0.0.1:$web_port"
status="$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$base/" || true)"
if [[ -f web/dist/index.html ]]; then
  [[ "$status" == 200 ]] || fail "the dashboard URL answered $status"
fi

status="$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -c "$cookies" -H 'content-type: application/json' \
  -d "{\"email\":\"admin@$tenant.example\",\"password\":\"pulse-demo\"}" "$base/api/v2/login" || true)"
[[ "$status" == 200 || "$status" == 204 ]] || fail "demo login answered $status"

deadline=$((SECONDS + 30))
total=0
while ((SECONDS < deadline)); do
  total="$(curl -s --max-time 10 -b "$cookies" "$base/api/v2/fleet" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["total"])' 2>/dev/null || echo 0)"
  ((total > 0)) && break
  sleep 0.5
done
((total == PULSE_SIM_DEVICES)) || fail "the demo fleet has $total devices, expected $PULSE_SIM_DEVICES"

gateways="$(curl -s --max-time 10 -b "$cookies" "$base/api/v2/ws-ticket" |
  python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["gateways"]))')"
for port in ${PULSE_GATEWAY_PORTS}; do
  [[ " $gateways " == *":$port/"* ]] || fail "the ticket's gateways ($gateways) miss port $port"
done
log "make up check: demo login, $total demo devices, ticket names both gateways"

ops="http://127.0.0.1:$PULSE_WEB_OPS_PORT"
status="$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$ops/readyz" || true)"
[[ "$status" == 200 ]] || fail "the web service's ops port answered /readyz with $status"
status="$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$base/metrics" || true)"
[[ "$status" == 404 ]] || fail "the public web port answered /metrics with $status, not 404"
log "make up check: the web service's ops endpoints are on their own port only"

# The images' health checks: each binary asks its own running service.
read -r -a gw_ports <<<"$PULSE_GATEWAY_PORTS"
read -r -a pl_ports <<<"$PULSE_POLLER_PORTS"
PULSE_WEB_OPS_ADDR="127.0.0.1:$PULSE_WEB_OPS_PORT" "$bin"/pulse-web healthcheck ||
  fail "pulse-web healthcheck failed against the running web service"
PULSE_GATEWAY_ADDR="127.0.0.1:${gw_ports[0]}" "$bin"/pulse-gateway healthcheck ||
  fail "pulse-gateway healthcheck failed against the running gateway"
PULSE_POLLER_ADDR="127.0.0.1:${pl_ports[0]}" "$bin"/pulse-poller healthcheck live ||
  fail "pulse-poller healthcheck live failed against the running poller"
# Read whole before matching: `grep -q` stops at the first match, and curl writing the rest
# into a closed pipe fails the pipeline under pipefail however healthy the service is.
web_metrics="$(curl -s --max-time 10 "$ops/metrics" || true)"
grep -q '^process_resident_memory_bytes ' <<<"$web_metrics" ||
  fail "the web service's /metrics has no process_resident_memory_bytes"
log "make up check: healthcheck subcommands and process metrics answer"

# 3. A second make up is refused and the first keeps running.
if bash scripts/up.sh >"$out" 2>&1; then
  fail "a second make up started while the first was running"
fi
grep -q "already running" "$out" || fail "no clear message for a second make up: $(cat "$out")"
for pid in "${pids[@]}"; do
  pid_alive "$pid" || fail "process $pid died after the second make up"
done
log "make up check: a second make up is refused and the stack keeps running"

# 4. make down stops everything it recorded.
bash scripts/down.sh >"$out" 2>&1 || fail "make down failed: $(cat "$out")"
for pid in "${pids[@]}"; do
  if pid_alive "$pid"; then
    fail "process $pid is still running after make down"
  fi
done
for port in "${ports[@]}"; do
  if port_open 127.0.0.1 "$port"; then
    fail "port $port is still open after make down"
  fi
done
if pid_alive "$nats_pid"; then
  fail "the NATS server make up started (pid $nats_pid) still runs after make down"
fi
if PULSE_WEB_OPS_ADDR="127.0.0.1:$PULSE_WEB_OPS_PORT" "$bin"/pulse-web healthcheck 2>/dev/null; then
  fail "pulse-web healthcheck passed with the web service stopped"
fi
log "make up check: make down stopped all ${#pids[@]} processes and the NATS it started"

# 5. A NATS started for `make test` (in the same state folder) is not make down's to stop.
bash scripts/ensure-nats.sh >"$out" 2>&1 || fail "ensure-nats.sh failed: $(cat "$out")"
test_nats_pid="$(cat "$PULSE_STATE_DIR/nats/nats.pid" 2>/dev/null)" ||
  fail "ensure-nats.sh started no private NATS on port $nats_private_port"
bash scripts/down.sh >"$out" 2>&1 || fail "make down failed: $(cat "$out")"
pid_alive "$test_nats_pid" ||
  fail "make down stopped the NATS server (pid $test_nats_pid) that make test had started"
kill "$test_nats_pid"
log "make up check: make down leaves a NATS that make test started"
