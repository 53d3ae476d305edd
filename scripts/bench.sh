#!/usr/bin/env bash
# What `make bench` runs: every pulse-bench scenario at full size against a release gateway
# on this machine, the results as JSON under target/bench/<timestamp>/ and a table against
# the targets of docs/BENCHMARKS.md.
#
#   1. build pulse-gateway and pulse-bench in release mode;
#   2. make sure NATS is reachable (scripts/ensure-nats.sh);
#   3. raise the open-files limit to the hard limit (bench processes hold at most 15,000
#      connections each; pulse-bench starts more processes when a scenario needs more);
#   4. per scenario: start a fresh gateway on 127.0.0.1:$BENCH_PORT with the connection caps
#      raised (every bench client is the same user), run the scenario with --gateway-pid (CPU
#      and RSS from /proc), stop it.
#   5. events: make sure PostgreSQL is reachable (scripts/ensure-postgres.sh), create a
#      database of its own on the DATABASE_URL server (pulse_bench_<timestamp>), migrate it
#      (pulse-poller migrate), start a poller on it (ops port $BENCH_POLLER_PORT) and two
#      gateways ($BENCH_PORT and $BENCH_PORT + 1); the bench creates its tenant there, writes
#      events through the outbox and kills the first gateway mid-run. Everything is stopped and
#      the database dropped afterwards.
#   6. rolling: the events scenario's stack, with gateways that drain over
#      $BENCH_ROLLING_DRAIN_SECONDS; mid-run the bench sends each gateway SIGTERM in turn
#      (--restart-pid) and this script, as their supervisor, starts each again on its port as
#      soon as it has exited.
#   7. peers: one broadcast load, the same flags, against three fan-outs one after another: a
#      fresh gateway (results peers-gateway.*); the Node `ws` peer of
#      services/bench/peers/node-ws on $BENCH_NODE_PEER_PORT (peers-node-ws.*); and a
#      nats-server of its own with WebSocket on $BENCH_NATS_PEER_PORT + 1, which the bench's
#      clients speak NATS to and its publisher publishes to (peers-nats-ws.*). Each is measured
#      by its own process's CPU (--gateway-pid), as the gateway is.
#
# Sizes (environment): BENCH_SCENARIOS (default "idle broadcast telemetry sweep churn storm
# events rolling"; "peers" is run only when named), BENCH_IDLE_CONNECTIONS (15000), BENCH_BROADCAST_CONNECTIONS (5000),
# BENCH_BROADCAST_RATE (10), BENCH_TELEMETRY_CONNECTIONS (5000), BENCH_SECONDS (30),
# BENCH_SWEEP_RATES, BENCH_SWEEP_SECONDS (10), BENCH_CHURN_CYCLES (100000),
# BENCH_STORM_CONNECTIONS (15000), BENCH_EVENTS_CONNECTIONS (1000), BENCH_EVENTS_RATE (200),
# BENCH_EVENTS_KILL (1; 0 runs the events scenario without killing a gateway, as a control),
# BENCH_ROLLING_DRAIN_SECONDS (5: PULSE_DRAIN_SECONDS of the rolling scenario's gateways; the
# rolling scenario uses the sizes of events), BENCH_PEERS_CONNECTIONS (5000; peers uses
# BENCH_BROADCAST_RATE), BENCH_PORT (18081), BENCH_POLLER_PORT (19090), BENCH_NODE_PEER_PORT
# (18091), BENCH_NATS_PEER_PORT (14223).
# Gateway settings (PULSE_WS_*, PULSE_CLIENT_QUEUE_EVENTS, ...) set in the environment reach
# the gateway unchanged, so knobs can be compared run against run.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$PULSE_ROOT"
export_service_urls

SCENARIOS="${BENCH_SCENARIOS:-idle broadcast telemetry sweep churn storm events rolling}"
PORT="${BENCH_PORT:-18081}"
POLLER_PORT="${BENCH_POLLER_PORT:-19090}"
SECONDS_EACH="${BENCH_SECONDS:-30}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$PULSE_ROOT/target/bench/$STAMP"
GATEWAY_URL="ws://127.0.0.1:$PORT/api/v2/ws"
SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
GW_PID=""
# The peer being measured (peers).
PEER_PID=""
# The events scenario's stack: second gateway, poller, database.
GW2_PID=""
POLLER_PID=""
EVENTS_DB=""

need_tool jq jq "to summarise the results"
have curl || die "curl is needed to wait for the gateway (apt-get install curl)"

ensure_cargo
stage "build: cargo build --release -p pulse-gateway -p pulse-poller -p pulse-bench"
cargo build --release -p pulse-gateway -p pulse-poller -p pulse-bench
# Where that build put them: a CARGO_TARGET_DIR set elsewhere would leave ./target stale.
bin="${CARGO_TARGET_DIR:-$PULSE_ROOT/target}/release"

stage "services: NATS"
bash "$PULSE_ROOT/scripts/ensure-nats.sh"

ulimit -n "$(ulimit -Hn)" || warn "could not raise the open-files limit"
log "open files per process: $(ulimit -n)"
mkdir -p "$OUT"
log "results: ${OUT#"$PULSE_ROOT"/}"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "load at start: $(cat /proc/loadavg)"
  echo "open files: $(ulimit -n)"
} | tee "$OUT/machine.txt" >&2

# stop_pid PID — stop a process this script started (SIGTERM) and reap it; a process that is
# already gone (the events scenario kills a gateway itself) is only reaped.
stop_pid() {
  local pid="$1"
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_gateway() {
  stop_pid "$GW_PID"
  GW_PID=""
}

stop_events_stack() {
  stop_gateway
  stop_pid "$GW2_PID"
  stop_pid "$POLLER_PID"
  GW2_PID="" POLLER_PID=""
  if [[ -n "$EVENTS_DB" ]]; then
    psql -X -w -q "$DATABASE_URL" </dev/null -c "DROP DATABASE IF EXISTS $EVENTS_DB WITH (FORCE)" ||
      warn "could not drop database $EVENTS_DB"
    EVENTS_DB=""
  fi
}
stop_peer() {
  stop_pid "$PEER_PID"
  PEER_PID=""
}
trap 'stop_events_stack; stop_peer' EXIT

# launch_gateway PORT — start a gateway on 127.0.0.1:PORT, its pid in LAUNCHED, and wait
# until it is ready.
LAUNCHED=""
launch_gateway() {
  local port="$1"
  PULSE_GATEWAY_ADDR="127.0.0.1:$port" \
    PULSE_JWT_SECRET="$SECRET" \
    PULSE_MAX_CONNECTIONS="${PULSE_MAX_CONNECTIONS:-200000}" \
    PULSE_MAX_CONNECTIONS_PER_TENANT="${PULSE_MAX_CONNECTIONS_PER_TENANT:-200000}" \
    PULSE_MAX_CONNECTIONS_PER_USER="${PULSE_MAX_CONNECTIONS_PER_USER:-200000}" \
    PULSE_MAX_CONNECTIONS_PER_ADDRESS="${PULSE_MAX_CONNECTIONS_PER_ADDRESS:-200000}" \
    PULSE_MAX_SUBJECTS_PER_TENANT="${PULSE_MAX_SUBJECTS_PER_TENANT:-200000}" \
    PULSE_MAX_SUBJECTS_PER_USER="${PULSE_MAX_SUBJECTS_PER_USER:-200000}" \
    PULSE_DRAIN_SECONDS="${PULSE_DRAIN_SECONDS:-0}" \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$bin"/pulse-gateway >>"$OUT/gateway.log" 2>&1 &
  LAUNCHED=$!
  local deadline=$((SECONDS + 20))
  until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 "$LAUNCHED" 2>/dev/null || die "the gateway exited; see $OUT/gateway.log"
    ((SECONDS < deadline)) || {
      stop_pid "$LAUNCHED"
      die "the gateway was not ready within 20 s; see $OUT/gateway.log"
    }
    sleep 0.2
  done
}

start_gateway() {
  stop_gateway
  launch_gateway "$PORT"
  GW_PID="$LAUNCHED"
}

# bench NAME SCENARIO ARGS... — one scenario against a fresh gateway.
bench() {
  local name="$1" scenario="$2"
  shift 2
  stage "$name: pulse-bench run $scenario $*"
  log "load before: $(cat /proc/loadavg)"
  start_gateway
  PULSE_JWT_SECRET="$SECRET" RUST_LOG="${BENCH_LOG:-warn}" "$bin"/pulse-bench run "$scenario" \
    --gateway "$GATEWAY_URL" --gateway-pid "$GW_PID" --processes 0 \
    --json "$OUT/$name.json" "$@" | tee "$OUT/$name.txt"
  stop_gateway
}

# listening PORT PID NAME — wait until something accepts on 127.0.0.1:PORT, while process PID
# (NAME) runs.
listening() {
  local port="$1" pid="$2" name="$3" deadline=$((SECONDS + 20))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "$name exited; see $OUT/$name.log"
    ((SECONDS < deadline)) || die "$name did not listen on port $port within 20 s; see $OUT/$name.log"
    sleep 0.2
  done
}

# peer_bench NAME URL ARGS... — a scenario against the peer PEER_PID serving URL.
peer_bench() {
  local name="$1" url="$2"
  shift 2
  stage "$name: pulse-bench run $*"
  log "load before: $(cat /proc/loadavg)"
  PULSE_JWT_SECRET="$SECRET" RUST_LOG="${BENCH_LOG:-warn}" "$bin"/pulse-bench run "$@" \
    --gateway "$url" --gateway-pid "$PEER_PID" --processes 0 \
    --json "$OUT/$name.json" | tee "$OUT/$name.txt"
}

# peers ARGS... — the broadcast load ARGS against the gateway, the Node `ws` peer and
# nats-server's WebSocket, one after another.
peers() {
  bench peers-gateway broadcast "$@"

  ensure_node
  local node_dir="$PULSE_ROOT/services/bench/peers/node-ws" node_port="${BENCH_NODE_PEER_PORT:-18091}"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) >>"$OUT/peer-node-ws.log" 2>&1 ||
    die "could not install the node-ws peer's packages; see $OUT/peer-node-ws.log"
  PORT="$node_port" PULSE_JWT_SECRET="$SECRET" node "$node_dir/server.mjs" >>"$OUT/peer-node-ws.log" 2>&1 &
  PEER_PID=$!
  listening "$node_port" "$PEER_PID" peer-node-ws
  peer_bench peers-node-ws "ws://127.0.0.1:$node_port/api/v2/ws" broadcast "$@"
  stop_peer

  local nats_bin="" candidate nats_port="${BENCH_NATS_PEER_PORT:-14223}"
  for candidate in "$(command -v nats-server || true)" /usr/sbin/nats-server /usr/local/bin/nats-server \
    "$PULSE_STATE_DIR/nats/pip/bin/nats-server" "${HOME:-/nonexistent}/.local/bin/nats-server"; do
    [[ -n "$candidate" && -x "$candidate" ]] && nats_bin="$candidate" && break
  done
  [[ -n "$nats_bin" ]] || die "nats-server is needed for the peers scenario (scripts/ensure-nats.sh installs it)"
  printf 'listen: "127.0.0.1:%s"\nwebsocket {\n  listen: "127.0.0.1:%s"\n  no_tls: true\n}\n' \
    "$nats_port" $((nats_port + 1)) >"$OUT/peer-nats-ws.conf"
  "$nats_bin" -c "$OUT/peer-nats-ws.conf" >>"$OUT/peer-nats-ws.log" 2>&1 &
  PEER_PID=$!
  listening $((nats_port + 1)) "$PEER_PID" peer-nats-ws
  peer_bench peers-nats-ws "ws://127.0.0.1:$((nats_port + 1))/" broadcast "$@" \
    --protocol nats --nats-url "nats://127.0.0.1:$nats_port"
  stop_peer
}

# ended PID — whether process PID has exited (gone, or a zombie not reaped yet).
ended() {
  local state=""
  [[ -r "/proc/$1/stat" ]] || return 0
  read -r _ _ state _ <"/proc/$1/stat" || return 0
  [[ "$state" == Z ]]
}

# restart_gateway PID PORT — reap the gateway PID that listened on PORT and start another
# there; its pid in LAUNCHED.
restart_gateway() {
  local pid="$1" port="$2" status=0
  wait "$pid" || status=$?
  if [[ $status == 0 ]]; then
    log "the gateway on port $port (pid $pid) drained and exited; starting it again"
  else
    warn "the gateway on port $port (pid $pid) exited with status $status; starting it again"
  fi
  launch_gateway "$port"
}

# supervise_gateways BENCH_PID — until the bench ends, start each gateway again on its port
# as soon as it has exited, as a process supervisor does in a rolling restart.
supervise_gateways() {
  local bench="$1"
  while ! ended "$bench"; do
    if ended "$GW_PID"; then
      restart_gateway "$GW_PID" "$PORT"
      GW_PID="$LAUNCHED"
    fi
    if ended "$GW2_PID"; then
      restart_gateway "$GW2_PID" $((PORT + 1))
      GW2_PID="$LAUNCHED"
    fi
    sleep 0.05
  done
}

# events_bench MODE ARGS... — the events scenario: PostgreSQL with a database of its own, a
# poller relaying its outbox, two gateways. MODE kill: the bench kills the first gateway
# mid-run (results: events.*); MODE rolling: the bench restarts both in turn, this script
# starting each again once it has drained (results: rolling.*).
events_bench() {
  local mode="$1" name=events
  shift
  # Exported for the gateways launch_gateway starts, and restored afterwards.
  local drain_before="${PULSE_DRAIN_SECONDS-}"
  if [[ "$mode" == rolling ]]; then
    name=rolling
    export PULSE_DRAIN_SECONDS="${BENCH_ROLLING_DRAIN_SECONDS:-5}"
  fi
  stage "$name: PostgreSQL, a database of its own, a poller, two gateways"
  have psql || die "psql is needed for the events scenario (apt-get install postgresql-client)"
  bash "$PULSE_ROOT/scripts/ensure-postgres.sh"
  EVENTS_DB="pulse_bench_$(tr '[:upper:]' '[:lower:]' <<<"$STAMP")"
  psql -X -w -q "$DATABASE_URL" </dev/null -c "CREATE DATABASE $EVENTS_DB" ||
    die "could not create database $EVENTS_DB"
  local base="${DATABASE_URL%%\?*}" query=""
  [[ "$DATABASE_URL" != *\?* ]] || query="?${DATABASE_URL#*\?}"
  local db_url="${base%/*}/$EVENTS_DB$query"
  DATABASE_URL="$db_url" RUST_LOG="${RUST_LOG:-warn}" "$bin"/pulse-poller migrate \
    >>"$OUT/poller.log" 2>&1 || die "migrations failed; see $OUT/poller.log"
  DATABASE_URL="$db_url" PULSE_POLLER_ADDR="127.0.0.1:$POLLER_PORT" RUST_LOG="${RUST_LOG:-warn}" \
    "$bin"/pulse-poller >>"$OUT/poller.log" 2>&1 &
  POLLER_PID=$!
  local deadline=$((SECONDS + 30))
  until curl -fsS "http://127.0.0.1:$POLLER_PORT/metrics" 2>/dev/null | grep -qx 'pulse_poller_active 1'; do
    kill -0 "$POLLER_PID" 2>/dev/null || die "the poller exited; see $OUT/poller.log"
    ((SECONDS < deadline)) || die "the poller was not active within 30 s; see $OUT/poller.log"
    sleep 0.2
  done
  start_gateway
  launch_gateway $((PORT + 1))
  GW2_PID="$LAUNCHED"
  local fault=()
  if [[ "$mode" == rolling ]]; then
    fault=(--restart-pid "$GW_PID,$GW2_PID")
  elif [[ "${BENCH_EVENTS_KILL:-1}" != 0 ]]; then
    fault=(--kill-pid "$GW_PID")
  fi
  stage "$name: pulse-bench run events ${fault[*]} $*"
  log "load before: $(cat /proc/loadavg)"
  PULSE_JWT_SECRET="$SECRET" RUST_LOG="${BENCH_LOG:-warn}" "$bin"/pulse-bench run events \
    --gateway "$GATEWAY_URL,ws://127.0.0.1:$((PORT + 1))/api/v2/ws" \
    --gateway-pid "$GW_PID,$GW2_PID" "${fault[@]}" \
    --database-url "$db_url" --poller-metrics "http://127.0.0.1:$POLLER_PORT/metrics" \
    --processes 0 --json "$OUT/$name.json" "$@" > >(tee "$OUT/$name.txt") &
  local bench_pid=$!
  [[ "$mode" != rolling ]] || supervise_gateways "$bench_pid"
  wait "$bench_pid"
  [[ "$mode" != kill || ${#fault[@]} -eq 0 ]] ||
    log "the gateway on port $PORT (pid $GW_PID) was killed by the bench, as planned"
  stop_events_stack
  if [[ -n "$drain_before" ]]; then
    export PULSE_DRAIN_SECONDS="$drain_before"
  else
    unset PULSE_DRAIN_SECONDS
  fi
}

for scenario in $SCENARIOS; do
  case "$scenario" in
    idle)
      bench idle idle --connections "${BENCH_IDLE_CONNECTIONS:-15000}" --seconds 10 \
        --connect-concurrency 256
      ;;
    broadcast)
      bench broadcast broadcast --connections "${BENCH_BROADCAST_CONNECTIONS:-5000}" \
        --msgs-per-second "${BENCH_BROADCAST_RATE:-10}" --seconds "$SECONDS_EACH"
      ;;
    telemetry)
      bench telemetry telemetry --connections "${BENCH_TELEMETRY_CONNECTIONS:-5000}" \
        --devices 1000 --per-client 5 --hz 1 --seconds "$SECONDS_EACH"
      ;;
    sweep)
      bench sweep sweep --connections "${BENCH_BROADCAST_CONNECTIONS:-5000}" \
        --sweep-rates "${BENCH_SWEEP_RATES:-10,12,14,16,18,20,25,30,40,60}" \
        --seconds "${BENCH_SWEEP_SECONDS:-10}"
      ;;
    churn)
      bench churn churn --cycles "${BENCH_CHURN_CYCLES:-100000}" --churn-concurrency 64
      ;;
    storm)
      bench storm storm --connections "${BENCH_STORM_CONNECTIONS:-15000}" --seconds 5 \
        --connect-concurrency 256
      ;;
    peers)
      peers --connections "${BENCH_PEERS_CONNECTIONS:-5000}" \
        --msgs-per-second "${BENCH_BROADCAST_RATE:-10}" --seconds "$SECONDS_EACH"
      ;;
    events | rolling)
      mode="kill"
      [[ "$scenario" == events ]] || mode=rolling
      events_bench "$mode" --connections "${BENCH_EVENTS_CONNECTIONS:-1000}" \
        --events-per-second "${BENCH_EVENTS_RATE:-200}" --seconds "$SECONDS_EACH"
      ;;
    *) die "unknown scenario $scenario in BENCH_SCENARIOS" ;;
  esac
done

# ---------------------------------------------------------------------------
stage "summary (targets: docs/BENCHMARKS.md)"
{
  printf '%-12s %-40s %-22s %s\n' scenario figure measured target
  j() { jq -r "$2" "$OUT/$1.json"; }
  if [[ -f "$OUT/idle.json" ]]; then
    printf '%-12s %-40s %-22s %s\n' idle "connections held" "$(j idle '.connections.held')" ">= 15000"
    printf '%-12s %-40s %-22s %s\n' idle "gateway RSS per connection" \
      "$(j idle '.gateway.rss_per_connection_bytes // 0 | ./1024*100|round/100 | tostring + " KiB"')" "<= 6 KiB"
    printf '%-12s %-40s %-22s %s\n' idle "connection setups per second" \
      "$(j idle '.connections.per_second | round')" ">= 5000"
  fi
  for s in broadcast telemetry; do
    [[ -f "$OUT/$s.json" ]] || continue
    target_p99=$([[ $s == broadcast ]] && echo 50 || echo 20)
    printf '%-12s %-40s %-22s %s\n' "$s" "deliveries/s" "$(j "$s" '.stages[0].deliveries_per_second | round')" ""
    printf '%-12s %-40s %-22s %s\n' "$s" "missing / duplicated" \
      "$(j "$s" '"\(.stages[0].missing) / \(.stages[0].duplicated)"')" "0 / 0"
    printf '%-12s %-40s %-22s %s\n' "$s" "latency p50 / p99 / max (ms)" \
      "$(j "$s" '.stages[0].latency | "\(.p50_ms) / \(.p99_ms) / \(.max_ms)"')" "p99 <= $target_p99"
    printf '%-12s %-40s %-22s %s\n' "$s" "deliveries per gateway CPU-second" \
      "$(j "$s" '.stages[0].deliveries_per_gateway_cpu_second // 0 | round')" \
      "$([[ $s == broadcast ]] && echo '>= 250000')"
  done
  if [[ -f "$OUT/peers-gateway.json" ]]; then
    gateway_rate="$(j peers-gateway '.stages[0].deliveries_per_gateway_cpu_second // 0')"
    for peer in peers-gateway peers-node-ws peers-nats-ws; do
      [[ -f "$OUT/$peer.json" ]] || continue
      # A peer that refused connections would show fewer deliveries expected, and no loss.
      printf '%-12s %-40s %-22s %s\n' peers "${peer#peers-}: connections established / failed" \
        "$(j "$peer" '.connections | "\(.established) / \(.failed)"')" \
        "$(j "$peer" 'if .connections.established < .connections.attempted then "NOT ALL CONNECTED" else "" end')"
      printf '%-12s %-40s %-22s %s\n' peers "${peer#peers-}: deliveries per CPU-second" \
        "$(j "$peer" '.stages[0].deliveries_per_gateway_cpu_second // 0 | round')" \
        "$(jq -r --argjson gw "$gateway_rate" '.stages[0].deliveries_per_gateway_cpu_second // 0 | if . > 0 then "gateway/peer x\($gw / . * 100 | round / 100)" else "" end' "$OUT/$peer.json")"
      printf '%-12s %-40s %-22s %s\n' peers "${peer#peers-}: missing; p50 / p99 (ms)" \
        "$(j "$peer" '.stages[0] | "\(.missing); \(.latency.p50_ms) / \(.latency.p99_ms)"')" ""
    done
  fi
  if [[ -f "$OUT/sweep.json" ]]; then
    printf '%-12s %-40s %-22s %s\n' sweep "highest rate with p99 <= 100 ms, no loss" \
      "$(j sweep '[.stages[] | select(.latency.p99_ms <= 100 and .missing == 0)] | max_by(.deliveries_per_second) // {} | "\(.deliveries_per_second // 0 | round)/s"')" "report"
    printf '%-12s %-40s %-22s %s\n' sweep "highest rate with p99 <= 100 ms" \
      "$(j sweep '[.stages[] | select(.latency.p99_ms <= 100)] | max_by(.deliveries_per_second) // {} | "\(.deliveries_per_second // 0 | round)/s (\(.missing // 0) missing)"')" "report"
  fi
  if [[ -f "$OUT/churn.json" ]]; then
    printf '%-12s %-40s %-22s %s\n' churn "cycles completed / failed" \
      "$(j churn '"\(.churn.completed) / \(.churn.failed)"')" "100000 / 0"
    printf '%-12s %-40s %-22s %s\n' churn "cycles per second" "$(j churn '.churn.cycles_per_second | round')" ""
    printf '%-12s %-40s %-22s %s\n' churn "leak-free (/metrics back to 0)" "$(j churn '.churn.leak_free')" "true"
    printf '%-12s %-40s %-22s %s\n' churn "RSS warm -> end (MiB)" \
      "$(j churn '.churn | "\((.rss_warm_bytes // 0)/1048576*10|round/10) -> \((.rss_end_bytes // 0)/1048576*10|round/10)"')" "no growth"
  fi
  if [[ -f "$OUT/storm.json" ]]; then
    printf '%-12s %-40s %-22s %s\n' storm "reconnected / failed" \
      "$(j storm '"\(.storm.reconnected) / \(.storm.failed)"')" ""
    printf '%-12s %-40s %-22s %s\n' storm "all reconnected within (s)" "$(j storm '.storm.seconds_to_all*100|round/100')" ""
    printf '%-12s %-40s %-22s %s\n' storm "reconnect p50 / p99 (ms)" \
      "$(j storm '.storm.reconnect_latency | "\(.p50_ms) / \(.p99_ms)"')" ""
  fi
  if [[ -f "$OUT/events.json" ]]; then
    printf '%-12s %-40s %-22s %s\n' events "missing / duplicated" \
      "$(j events '"\(.stages[0].missing) / \(.stages[0].duplicated)"')" "0 / 0"
    printf '%-12s %-40s %-22s %s\n' events "lost / resumed / failed; resets" \
      "$(j events '.events | "\(.lost) / \(.resumed) / \(.resume_failed); \(.resets)"')" "all resumed; 0"
    printf '%-12s %-40s %-22s %s\n' events "kill -> subscribed again p50 / p99 (ms)" \
      "$(j events '.events.resubscribe_latency | if .count == 0 then "no kill" else "\(.p50_ms) / \(.p99_ms)" end')" ""
    printf '%-12s %-40s %-22s %s\n' events "kill -> first event p50 / p99 (ms)" \
      "$(j events '.events.resume_latency | if .count == 0 then "no kill" else "\(.p50_ms) / \(.p99_ms)" end')" ""
    printf '%-12s %-40s %-22s %s\n' events "insert -> client p50 / p99 (ms)" \
      "$(j events '.stages[0].latency | "\(.p50_ms) / \(.p99_ms)"')" ""
    printf '%-12s %-40s %-22s %s\n' events "inserted / relayed per second" \
      "$(j events '.events | "\(.inserted_per_second*10|round/10) / \(.relayed_per_second*10|round/10)"')" ""
  fi
  if [[ -f "$OUT/rolling.json" ]]; then
    printf '%-12s %-40s %-22s %s\n' rolling "missing / duplicated; behind at the end" \
      "$(j rolling '"\(.stages[0].missing) / \(.stages[0].duplicated); \(.events.behind)"')" "0 / 0; 0"
    printf '%-12s %-40s %-22s %s\n' rolling "lost / 1012 / resumed / failed; resets" \
      "$(j rolling '.events | "\(.lost) / \(.lost_drained) / \(.resumed) / \(.resume_failed); \(.resets)"')" "all 1012, resumed; 0"
    printf '%-12s %-40s %-22s %s\n' rolling "SIGTERM -> all resumed, per gateway (s)" \
      "$(j rolling '[.events.restarts[].seconds_to_all_resumed*100|round/100|tostring] | join(" / ")')" ""
    printf '%-12s %-40s %-22s %s\n' rolling "SIGTERM -> subscribed again p50 / p99 (ms)" \
      "$(j rolling '.events.resubscribe_latency | "\(.p50_ms) / \(.p99_ms)"')" ""
    printf '%-12s %-40s %-22s %s\n' rolling "lost -> subscribed again p50 / p99 (ms)" \
      "$(j rolling '.events.away_latency | "\(.p50_ms) / \(.p99_ms)"')" ""
    printf '%-12s %-40s %-22s %s\n' rolling "insert -> client p50 / p99 (ms)" \
      "$(j rolling '.stages[0].latency | "\(.p50_ms) / \(.p99_ms)"')" ""
  fi
} | tee "$OUT/summary.txt"

if [[ -f "$OUT/churn.json" ]] && [[ "$(jq -r '.churn.leak_free' "$OUT/churn.json")" != "true" ]]; then
  die "churn: the gateway did not return to 0 connections / subscriptions / NATS subscriptions"
fi
if [[ -f "$OUT/events.json" ]] &&
  [[ "$(jq -r '"\(.stages[0].missing) \(.stages[0].duplicated)"' "$OUT/events.json")" != "0 0" ]]; then
  die "events: events were missing or duplicated after the gateway was killed"
fi
if [[ -f "$OUT/rolling.json" ]] &&
  [[ "$(jq -r '"\(.stages[0].missing) \(.stages[0].duplicated) \(.events.behind)"' "$OUT/rolling.json")" != "0 0 0" ]]; then
  die "rolling: events were missing or duplicated across the rolling restart"
fi
log "results in ${OUT#"$PULSE_ROOT"/}"
