#!/usr/bin/env bash
# `make down`: stop what `make up` started — by the process ids it recorded — and nothing else.
# With --services-only, leaves PostgreSQL and NATS running.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PULSE_ROOT"
run_dir="$PULSE_STATE_DIR/run"

stop_pid_file() {
  local f="$1" name pid
  name="$(basename "$f" .pid)"
  pid="$(cat "$f" 2>/dev/null || true)"
  rm -f "$f"
  [[ -n "$pid" ]] && recorded_pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    pid_alive "$pid" || { log "stopped $name (pid $pid)"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  warn "killed $name (pid $pid): it did not stop within 15 s"
}

stopped=0
for f in "$run_dir"/*.pid; do
  [[ -e "$f" ]] || continue
  stop_pid_file "$f"
  stopped=$((stopped + 1))
done

if [[ "${1:-}" != "--services-only" ]]; then
  # A server `make test` started is its own: only one `make up` recorded as started is stopped.
  if [[ -e "$run_dir/nats.started" ]]; then
    started="$(tr -dc '0-9' <"$run_dir/nats.started")"
    if [[ -n "$started" && "$started" == "$(tr -dc '0-9' 2>/dev/null <"$PULSE_STATE_DIR/nats/nats.pid")" ]]; then
      stop_pid_file "$PULSE_STATE_DIR/nats/nats.pid"
      stopped=$((stopped + 1))
    fi
    rm -f "$run_dir/nats.started"
  fi
  if [[ -e "$run_dir/postgres.started" ]]; then
    read -r version cluster started <"$run_dir/postgres.started" || true
    rm -f "$run_dir/postgres.started"
    if [[ "$version" == brew ]]; then
      brew services stop "$cluster" >&2 || die "could not stop the Homebrew service $cluster"
      log "stopped the Homebrew service $cluster"
      stopped=$((stopped + 1))
    else
      running="$(cluster_pid "$version" "$cluster")"
      # Only the server `make up` started: one running since under another process id (started
      # at boot, by hand) is someone else's. A record without the id (written by an earlier
      # release, or when the id could not be read) is trusted as it was before.
      if [[ -n "$running" && -z "${started:-}" ]]; then
        warn "make up recorded PostgreSQL cluster $version/$cluster without its process id; stopping it"
        started="$running"
      fi
      if [[ -n "$running" && "$running" == "${started:-}" ]]; then
        pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop </dev/null ||
          die "could not stop PostgreSQL cluster $version/$cluster (pid $running); stop it yourself"
        log "stopped PostgreSQL cluster $version/$cluster"
        stopped=$((stopped + 1))
      elif [[ -n "$running" ]]; then
        log "left PostgreSQL cluster $version/$cluster running: it is not the server make up started (pid ${started:-unknown}, now $running)"
      fi
    fi
  fi
fi
log "stopped $stopped thing(s) that make up had started"
