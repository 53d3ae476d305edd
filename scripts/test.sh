#!/usr/bin/env bash
# What `make test` runs: make sure PostgreSQL and NATS are there, clear out
# databases that earlier test runs left behind, then run every Rust test
# (and the web tests, when the web app has them).
#
# Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)
# and NATS_URL (default nats://127.0.0.1:4222), passed on to the tests.
# Tests make their own databases named pulse_t_*; this script drops the ones
# nobody is connected to.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export_service_urls

cd "$PULSE_ROOT"

stage "services: PostgreSQL"
bash "$PULSE_ROOT/scripts/ensure-postgres.sh"

stage "services: NATS"
# --with-binary: the tests also start private nats-servers, from the program on PATH.
bash "$PULSE_ROOT/scripts/ensure-nats.sh" --with-binary
export PATH="$PULSE_STATE_DIR/nats/bin:$PATH"
psql_on_path

# The web and browser tests, and the bench's test of its Node peer, need Node.js 20.19+:
# checked (and installed where apt-get can) before anything is built, so a machine whose
# Node.js is too old hears so at once.
stage "tools: Node.js for the web tests and the bench's Node peer"
ensure_node
(cd services/bench/peers/node-ws && npm ci --no-audit --no-fund --loglevel=error) ||
  die "could not install the packages of services/bench/peers/node-ws (npm ci)"

# The poller's packet-loss test needs root and network namespaces: checked (and iproute2
# installed) before anything is built, failing with what is missing.
stage "network namespaces: for the poller's packet-loss test"
bash "$PULSE_ROOT/scripts/ensure-netns.sh"

stage "drop leftover test databases (pulse_t_*)"
# Tests create databases named pulse_t_<something>; drop every one that has
# no open connection (a running test's database is left alone).
# The query prints each name already quoted as an SQL identifier.
leftovers="$(psql -X -w -q -At "$DATABASE_URL" </dev/null -c "
  SELECT format('%I', d.datname)
  FROM pg_database d
  LEFT JOIN pg_stat_activity a ON a.datname = d.datname
  WHERE d.datname LIKE 'pulse\\_t\\_%'
  GROUP BY d.datname
  HAVING count(a.pid) = 0
  ORDER BY d.datname")" || die "could not list leftover test databases"
dropped=0
while IFS= read -r db; do
  [[ -n "$db" ]] || continue
  if psql -X -w -q "$DATABASE_URL" </dev/null -c "DROP DATABASE IF EXISTS $db"; then
    dropped=$((dropped + 1))
  else
    warn "could not drop database $db (in use again?); leaving it"
  fi
done <<<"$leftovers"
log "dropped $dropped leftover test database(s)"
# And the login roles tests make for their databases (pulse_t_<something>), once no database
# is theirs any more; one still in use is left alone.
logins="$(psql -X -w -q -At "$DATABASE_URL" </dev/null -c "
  SELECT format('%I', r.rolname)
  FROM pg_roles r
  WHERE r.rolname LIKE 'pulse\\_t\\_%'
    AND NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datdba = r.oid)
    AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.usename = r.rolname)
  ORDER BY 1")" || die "could not list leftover test logins"
while IFS= read -r login; do
  [[ -n "$login" ]] || continue
  psql -X -w -q "$DATABASE_URL" </dev/null -c "DROP ROLE IF EXISTS $login" \
    || warn "could not drop login $login; leaving it"
done <<<"$logins"

stage "docs: every configuration variable is in README.md"
bash "$PULSE_ROOT/scripts/check-docs.sh"

stage "deploy files: Dockerfile, docker-compose.yml, deploy/"
bash "$PULSE_ROOT/scripts/check-deploy.sh"

ensure_cargo

stage "Dockerfile: the dependency layer, replayed without a container engine"
bash "$PULSE_ROOT/scripts/check-docker-deps.sh"

# Doctests first: nextest cannot run them, and the run should close on the main summary.
stage "Rust doctests: cargo test --workspace --doc"
cargo test --workspace --doc

# nextest runs each test in a process of its own, stops a hung one (.config/nextest.toml), and
# takes the thread cap below; pinned so that a new release cannot change what passes.
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest 0.9.143 (once)"
  cargo install --locked cargo-nextest --version 0.9.143 ||
    warn "could not install cargo-nextest; the Rust tests run under cargo test, as many at once, the whole run limited to 45 minutes"
fi
# The tests wait on PostgreSQL, NATS and the processes they start far more than they compute,
# so more run at once than one per core: four per core, at most 8. On 2 cores, 8 at once take
# the run from about 190 s to 65 s. The cap is PostgreSQL's: 8 at once held up to 53 of its
# default 100 connections, 16 held 94; a server allowing fewer gets one test per 10
# connections. NEXTEST_TEST_THREADS overrides it.
threads="${NEXTEST_TEST_THREADS:-}"
if [[ -z "$threads" ]]; then
  threads=$(($(nproc) * 4))
  ((threads <= 8)) || threads=8
  max_connections="$(psql -X -w -q -At "$DATABASE_URL" </dev/null -c "SHOW max_connections")" ||
    die "could not read PostgreSQL's max_connections"
  ((threads <= max_connections / 10)) || threads=$((max_connections / 10))
  ((threads >= 1)) || threads=1
fi
if cargo nextest --version >/dev/null 2>&1; then
  stage "Rust tests: cargo nextest run --workspace --all-targets --test-threads $threads"
  cargo nextest run --workspace --all-targets --test-threads "$threads"
else
  # Without nextest's per-test time limit, the whole run has one: a hung test fails it rather
  # than holding CI to its own limit.
  # The cap by RUST_TEST_THREADS, which the benchmarks' harness (criterion) ignores, rather than
  # `--test-threads`, which it refuses.
  stage "Rust tests: RUST_TEST_THREADS=$threads cargo test --workspace --all-targets"
  # `timeout` runs in a process group of its own, which Ctrl-C does not reach: passed on.
  RUST_TEST_THREADS="$threads" timeout --kill-after=30s 45m cargo test --workspace --all-targets &
  tests_pid=$!
  trap 'kill -INT -- -"$tests_pid" 2>/dev/null || true' INT TERM
  rc=0
  while true; do
    wait "$tests_pid" && rc=0 || rc=$?
    # Above 128 with the process still there: the wait was cut short by a signal passed on.
    if ((rc <= 128)) || ! kill -0 "$tests_pid" 2>/dev/null; then
      break
    fi
  done
  trap - INT TERM
  ((rc == 0)) ||
    die "the Rust tests failed, or did not finish within 45 minutes (cargo test, without nextest)"
fi

if [[ -f web/package.json ]]; then
  if [[ -f scripts/test-web.sh ]]; then
    stage "web tests: scripts/test-web.sh"
    bash scripts/test-web.sh
  else
    log "web/package.json exists but scripts/test-web.sh does not; skipping web tests"
  fi
fi

stage "make up / make down: scripts/check-up.sh"
bash scripts/check-up.sh

stage "all tests passed"
