#!/usr/bin/env bash
# `make up`: build everything, make sure PostgreSQL and NATS run, then start the whole stack
# with demo data — simulator, two pollers (active + standby), two gateways, the web service —
# print the dashboard URL and the demo logins, and follow the logs. Ctrl-C (or `make down`)
# stops what this started, by recorded process ids, and nothing else.
#
# Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/pulse), NATS_URL,
# PULSE_WEB_PORT (8080), PULSE_WEB_OPS_PORT (9080: its /healthz, /readyz, /metrics), PULSE_GATEWAY_PORTS ("8081 8082"), PULSE_POLLER_PORTS ("9090 9091"),
# PULSE_UP_DETACH=1 to return once everything is ready instead of following the logs,
# PULSE_UP_PROFILE (release; debug builds faster), PULSE_STATE_DIR (.pulse: pids, logs, secret),
# CARGO_TARGET_DIR (where cargo builds, as for cargo; default target/).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PULSE_ROOT"

# The demo stack's data has a database of its own, not the tests'.
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/pulse}"
export_service_urls
web_port="${PULSE_WEB_PORT:-8080}"
web_ops_port="${PULSE_WEB_OPS_PORT:-9080}"
read -r -a gateway_ports <<<"${PULSE_GATEWAY_PORTS:-8081 8082}"
read -r -a poller_ports <<<"${PULSE_POLLER_PORTS:-9090 9091}"
run_dir="$PULSE_STATE_DIR/run"
log_dir="$PULSE_STATE_DIR/logs"
logs_label="${log_dir#"$PULSE_ROOT"/}"
runs_label="${run_dir#"$PULSE_ROOT"/}"
profile="${PULSE_UP_PROFILE:-release}"
case "$profile" in
  release | debug) ;;
  *) die "PULSE_UP_PROFILE must be release or debug, not '$profile'" ;;
esac
mkdir -p "$run_dir" "$log_dir"

running_pids() {
  local f pid
  for f in "$run_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    pid="$(cat "$f")"
    if recorded_pid_alive "$pid"; then
      echo "$pid"
    fi
  done
}
if [[ -n "$(running_pids)" ]]; then
  die "the stack is already running (see $runs_label); run \`make down\` first"
fi
# What a stack that died left behind: its readiness checks would take a dead one for this one.
rm -f "$run_dir"/*.pid

for port in "$web_port" "$web_ops_port" "${gateway_ports[@]}" "${poller_ports[@]}"; do
  if port_open 127.0.0.1 "$port"; then
    die "port $port is already in use; stop what uses it or choose other ports (PULSE_WEB_PORT, PULSE_WEB_OPS_PORT, PULSE_GATEWAY_PORTS, PULSE_POLLER_PORTS)"
  fi
done

# Checked before anything is built or started: readiness is polled with it.
need_tool curl curl "to wait for the services (or brew install curl)"

stage "services: PostgreSQL and NATS"
# The server must exist before the demo database can be created on it.
# The URL split at its query first: a query may hold paths (`?sslrootcert=/etc/...`).
db_query=""
[[ "$DATABASE_URL" == *\?* ]] && db_query="?${DATABASE_URL#*\?}"
db_base="${DATABASE_URL%%\?*}"
db_path="${db_base#*://}"
if [[ "$db_path" != */* || -z "${db_path#*/}" ]]; then
  die "DATABASE_URL names no database (postgres://user@host:5432/pulse): make up creates and fills the one it names"
fi
admin_url="${db_base%/*}/postgres${db_query}"
# Recorded as started by this, for `make down` (see record_started).
DATABASE_URL="$admin_url" PULSE_RECORD_STARTED=1 bash scripts/ensure-postgres.sh
PULSE_RECORD_STARTED=1 bash scripts/ensure-nats.sh
psql_on_path

db_name="${db_base##*/}"
if ! psql -X -w -q -At "$admin_url" -c "SELECT 1 FROM pg_database WHERE datname = '$db_name'" </dev/null | grep -q 1; then
  log "creating database $db_name"
  psql -X -w -q "$admin_url" -c "CREATE DATABASE \"$db_name\"" </dev/null
fi

# Node.js is checked before the long Rust build, so a machine whose Node.js is too old (stock
# Debian 12 ships 18) hears so at once rather than minutes later.
has_dashboard=0
if [[ -f web/package.json ]] && grep -q '"build"' web/package.json; then
  has_dashboard=1
  stage "tools: Node.js for the dashboard"
  ensure_node
fi

stage "build: Rust services ($profile)"
ensure_cargo
if [[ "$profile" == release ]]; then
  cargo build --release --locked -p pulse-poller -p pulse-gateway -p pulse-web -p pulse-simulator
else
  cargo build --locked -p pulse-poller -p pulse-gateway -p pulse-web -p pulse-simulator
fi
# Where cargo put them: CARGO_TARGET_DIR when set, as for cargo itself.
bin="${CARGO_TARGET_DIR:-$PULSE_ROOT/target}/$profile"

web_root="$PULSE_ROOT/web/dist"
if ((has_dashboard)); then
  stage "build: dashboard"
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build)
else
  warn "no dashboard build in web/ yet; the web service will serve only the API"
fi

secret_file="$PULSE_STATE_DIR/jwt-secret"
if [[ ! -s "$secret_file" ]]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_file"
  chmod 600 "$secret_file"
fi
PULSE_JWT_SECRET="$(cat "$secret_file")"
export PULSE_JWT_SECRET

stage "database: migrations and demo data"
"$bin/pulse-poller" migrate
# Seeded before anything starts, so that the demo logins printed below already work: the
# services are ready long before a simulator started beside them has created its users.
"$bin/pulse-simulator" --seed-only >"$log_dir/seed.log" 2>&1 ||
  die "seeding the demo data failed: $(tail -n 20 "$log_dir/seed.log")"

# start NAME COMMAND... — run in the background, log to $log_dir/NAME.log, record the pid.
start() {
  local name="$1"
  shift
  nohup "$@" >"$log_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$run_dir/$name.pid"
  log "started $name (pid $!, log $logs_label/$name.log)"
}

stop_all() {
  bash "$PULSE_ROOT/scripts/down.sh" --services-only
}

gateway_urls=()
for port in "${gateway_ports[@]}"; do
  gateway_urls+=("ws://127.0.0.1:$port/api/v2/ws")
done

stage "start: simulator, pollers, gateways, web"
start simulator "$bin/pulse-simulator"
i=1
for port in "${poller_ports[@]}"; do
  PULSE_POLLER_ADDR="127.0.0.1:$port" start "poller-$i" "$bin/pulse-poller" run
  i=$((i + 1))
done
i=1
for port in "${gateway_ports[@]}"; do
  PULSE_GATEWAY_ADDR="127.0.0.1:$port" start "gateway-$i" "$bin/pulse-gateway"
  i=$((i + 1))
done
PULSE_WEB_ADDR="127.0.0.1:$web_port" PULSE_WEB_OPS_ADDR="127.0.0.1:$web_ops_port" \
  PULSE_WEB_ROOT="$web_root" \
  PULSE_GATEWAY_URLS="$(IFS=,; echo "${gateway_urls[*]}")" \
  start web "$bin/pulse-web"

ready() {
  local status
  status="$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz" 2>/dev/null || true)"
  [[ "$status" == "200" ]]
}
deadline=$((SECONDS + 60))
for port in "$web_ops_port" "${gateway_ports[@]}" "${poller_ports[@]}"; do
  until ready "$port"; do
    if ((SECONDS > deadline)); then
      stop_all
      die "a service on port $port did not become ready within 60 s; see $logs_label/"
    fi
    for f in "$run_dir"/*.pid; do
      if ! kill -0 "$(cat "$f")" 2>/dev/null; then
        name="$(basename "$f" .pid)"
        tail -n 20 "$log_dir/$name.log" >&2 || true
        stop_all
        die "$name exited during start; its log is above ($logs_label/$name.log)"
      fi
    done
    sleep 0.5
  done
done

password="${PULSE_DEMO_PASSWORD:-pulse-demo}"
# The logins the seeding found usable (its table in seed.log: TENANT EMAIL ROLE), not the ones
# it meant to create: a user that already exists with another tenant or role is left as it is.
logins=""
first_email=""
while read -r email role; do
  [[ -n "$first_email" ]] || first_email="$email"
  logins+="$(printf '%-12s%-36s (%s)' "" "$email / $password" "$role")"$'\n'
done < <(awk '/^Demo logins/ { table = 1; next } table && $2 ~ /@/ && $3 ~ /^customer_/ { print $2, $3 }' "$log_dir/seed.log")
if [[ -z "$first_email" ]]; then
  warn "seeding reported no usable demo login (see $logs_label/seed.log)"
else
  # Seeding changes no user that exists: demo users from an earlier `make up` keep the
  # password they were seeded with. One login says whether the ones printed below work.
  escaped="${password//\\/\\\\}"
  escaped="${escaped//\"/\\\"}"
  login_status="$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    --data "{\"email\":\"$first_email\",\"password\":\"$escaped\"}" \
    "http://127.0.0.1:$web_port/api/v2/login" 2>/dev/null || true)"
  if [[ "$login_status" == 401 ]]; then
    warn "the demo users were seeded by an earlier make up with another password than PULSE_DEMO_PASSWORD: they keep it (seeding changes no existing user); drop the database ${DATABASE_URL##*/} to seed them again"
  fi
fi

cat <<EOT

  Pulse is up.

  Dashboard   http://127.0.0.1:$web_port/
  Gateways    ${gateway_urls[*]}
  Logins
$logins
  Logs        $logs_label/        Stop: Ctrl-C or \`make down\`

EOT

if [[ "${PULSE_UP_DETACH:-}" == "1" ]]; then
  exit 0
fi
# Ctrl-C stops what `make down` would: the services, and a PostgreSQL or NATS this started.
# `tail` is stopped too: started in the background of a script, it ignores Ctrl-C.
trap 'echo; kill "$tail_pid" 2>/dev/null; bash "$PULSE_ROOT/scripts/down.sh"; exit 0' INT TERM
tail -n 0 -F "$log_dir"/*.log &
tail_pid=$!
wait "$tail_pid"
