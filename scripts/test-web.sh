#!/usr/bin/env bash
# The web tests: install the locked dependencies of web/, type-check, run the unit tests, build
# the dashboard, then run the browser tests: a real headless Chromium against private Pulse
# stacks, one per test file (each its own database pulse_t_browser_*, its own tenant, a poller,
# two gateways and pulse-web on free ports, from the debug binaries). Screenshots and service
# logs go to test-artifacts/browser/.
# `scripts/test.sh` (make test) calls this when web/package.json exists; it also runs alone.
#
# Needs Node.js 20.19 or newer with npm, Chromium (Debian package `chromium`, or PULSE_CHROMIUM
# pointing at a Chromium binary), cargo, PostgreSQL (DATABASE_URL) and NATS with JetStream
# (NATS_URL). As root on Debian, missing Node.js, npm and Chromium are installed with apt-get,
# and PostgreSQL and NATS are started or installed as for `make test`.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export_service_urls
export PULSE_CHROMIUM="${PULSE_CHROMIUM:-/usr/bin/chromium}"
readonly artifacts="$PULSE_ROOT/test-artifacts/browser"

cd "$PULSE_ROOT/web"

ensure_node

if [[ ! -x "$PULSE_CHROMIUM" ]]; then
  if [[ "$PULSE_CHROMIUM" == /usr/bin/chromium ]] && can_apt; then
    apt_install chromium || die "could not install chromium with apt-get; the browser tests need it"
  fi
  [[ -x "$PULSE_CHROMIUM" ]] ||
    die "Chromium not found at $PULSE_CHROMIUM: the browser tests need it (apt-get install chromium as root, or set PULSE_CHROMIUM to a Chromium binary)"
fi
log "$("$PULSE_CHROMIUM" --version 2>/dev/null | head -n 1 || echo "chromium at $PULSE_CHROMIUM")"

stage "web: npm ci"
npm ci --no-audit --no-fund --loglevel=error

stage "web: npm run typecheck, and the wire types current with proto/schemas"
npm run --silent typecheck
npm run --silent generate:check

# ESLint here too, not only in `make lint`: its import-x/no-cycle rule is how the browser code
# is held to having no import loops, as the Rust crates are by their layout tests.
stage "web: npm run lint (ESLint, no import loops)"
npm run --silent lint

stage "web: npm test (unit tests)"
npm test

stage "web: npm run build (dashboard to web/dist)"
npm run --silent build

stage "web: services and binaries for the browser tests"
# Quick when they already run (as under make test, which started them first).
bash "$PULSE_ROOT/scripts/ensure-postgres.sh"
# --with-binary: the tests also start private nats-servers, from the program on PATH.
bash "$PULSE_ROOT/scripts/ensure-nats.sh" --with-binary
export PATH="$PULSE_STATE_DIR/nats/bin:$PATH"
ensure_cargo
(cd "$PULSE_ROOT" && cargo build -p pulse-poller -p pulse-gateway -p pulse-web -p pulse-simulator)

# A test process that dies hard cannot stop what it started; it leaves the process ids and the
# database name in leftovers-<stack>.txt. Stop those (only if they still are Pulse binaries or a
# stack's own nats-server) and drop them.
cleanup_leftovers() {
  local list
  for list in "$artifacts"/leftovers*.txt; do
    [[ -f "$list" ]] && cleanup_leftovers_of "$list"
  done
  return 0
}
cleanup_leftovers_of() {
  local list="$1" kind value started
  while read -r kind value started; do
    case "$kind" in
      pid)
        [[ "$value" =~ ^[0-9]+$ ]] || continue
        # The process recorded, not a later one given its id (after a reboot, a long gap): its
        # start time recorded with it must match.
        if [[ -n "${started:-}" ]]; then
          [[ "$(awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$value/stat" 2>/dev/null)" == "$started" ]] || continue
        fi
        local cmdline
        cmdline="$(tr '\0' ' ' <"/proc/$value/cmdline" 2>/dev/null || true)"
        # A Pulse binary, or a stack's own nats-server (its files are under the artifacts).
        if [[ "$cmdline" == */debug/pulse-* || ("$cmdline" == nats-server* && "$cmdline" == *test-artifacts/browser*) ]]; then
          warn "stopping leftover test process $value"
          kill -KILL "$value" 2>/dev/null || true
        fi
        ;;
      db)
        if [[ "$value" =~ ^pulse_t_browser_[a-z0-9]+$ ]]; then
          psql -X -w -q "$DATABASE_URL" </dev/null -c "DROP DATABASE IF EXISTS $value WITH (FORCE)" ||
            warn "could not drop leftover database $value"
        fi
        ;;
    esac
  done <"$list"
  rm -f "$list"
}
# Those of a run killed before its own cleanup (a CI timeout) first: the browser tests clear
# the artifacts, lists included, as they start.
cleanup_leftovers
trap cleanup_leftovers EXIT

stage "web: browser tests (headless Chromium against private stacks)"
npm run --silent test:browser
log "screenshots and service logs: test-artifacts/browser/"
