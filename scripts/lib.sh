# shellcheck shell=bash
# Shared helpers for the scripts in scripts/. Source it, don't run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Everything here writes to stderr, so a script's stdout stays free for data.

# Guard against being sourced twice (test.sh sources it and runs other
# scripts that source it again in their own processes; that is fine).
if [[ -n "${PULSE_LIB_SOURCED:-}" ]]; then
  return 0
fi
PULSE_LIB_SOURCED=1

# Repository root: the parent of the folder holding this file.
PULSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PULSE_ROOT

# Where `make up` and the service scripts keep their state (pids, logs, a private NATS, the
# demo JWT secret). Git-ignored; another folder lets a second stack run beside the first.
PULSE_STATE_DIR="${PULSE_STATE_DIR:-$PULSE_ROOT/.pulse}"
export PULSE_STATE_DIR

# Defaults shared by every script and by the tests (used by the scripts
# that source this file).
# shellcheck disable=SC2034
PULSE_DEFAULT_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
# shellcheck disable=SC2034
PULSE_DEFAULT_NATS_URL="nats://127.0.0.1:4222"

# export_service_urls — export DATABASE_URL and NATS_URL as they are set, else the defaults above.
export_service_urls() {
  export DATABASE_URL="${DATABASE_URL:-$PULSE_DEFAULT_DATABASE_URL}"
  export NATS_URL="${NATS_URL:-$PULSE_DEFAULT_NATS_URL}"
}

# log MESSAGE... — one line on stderr, prefixed so it stands out in CI logs.
log() {
  printf 'pulse: %s\n' "$*" >&2
}

# warn MESSAGE... — like log, marked as a warning.
warn() {
  printf 'pulse: warning: %s\n' "$*" >&2
}

# die MESSAGE... — log an error and exit 1.
die() {
  printf 'pulse: error: %s\n' "$*" >&2
  exit 1
}

# When the outermost script began (seconds since the epoch), for the times stage prints; the
# scripts it runs inherit it.
export PULSE_RUN_STARTED="${PULSE_RUN_STARTED:-$(date +%s)}"

# stage TITLE — a header line before each stage of a longer run, with the time since the run
# began, so a slow stage shows in any log.
stage() {
  local took=$(($(date +%s) - PULSE_RUN_STARTED))
  printf '\npulse: ==== %s ==== (at %dm%02ds)\n' "$*" $((took / 60)) $((took % 60)) >&2
}

# have COMMAND — true when COMMAND is on PATH.
have() {
  command -v "$1" >/dev/null 2>&1
}

# is_root — true when running as uid 0.
is_root() {
  [[ "$(id -u)" -eq 0 ]]
}

# record_started NAME LINE — with PULSE_RECORD_STARTED=1 (as `make up` runs the ensure
# scripts), writes LINE to .pulse/run/NAME.started, for `make down` to stop NAME: a server that
# `make test` started is left to it.
record_started() {
  [[ "${PULSE_RECORD_STARTED:-}" == 1 ]] || return 0
  mkdir -p "$PULSE_STATE_DIR/run"
  printf '%s\n' "$2" >"$PULSE_STATE_DIR/run/$1.started"
}

# cluster_pid VERSION NAME — the process id of the PostgreSQL cluster's server; empty when it
# is not running.
cluster_pid() {
  local status
  # A stopped cluster's status fails; that is an answer (empty) here, not an error.
  status="$(pg_ctlcluster "$1" "$2" status 2>/dev/null)" || true
  sed -n 's/.*(PID: \([0-9][0-9]*\)).*/\1/p;T;q' <<<"$status"
}

# pid_alive PID — whether the process runs. A zombie (exited, not yet reaped, as under an init
# that never reaps) does not; without /proc, whether it can be signalled.
pid_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ -r "/proc/$1/stat" ]] || return 0
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)"
  [[ "$state" != Z ]]
}

# recorded_pid_alive PID — true while PID runs and is still a process `make up` starts (a Pulse
# binary or nats-server): after a reboot, a recorded id may belong to anything.
recorded_pid_alive() {
  pid_alive "$1" || return 1
  [[ -r "/proc/$1/comm" ]] || return 0
  case "$(cat "/proc/$1/comm" 2>/dev/null)" in
    pulse-* | nats-server*) return 0 ;;
    *) return 1 ;;
  esac
}

# port_open HOST PORT — true when a TCP connection to HOST:PORT succeeds
# within about a second. Uses bash's /dev/tcp, so it needs no extra tools.
port_open() {
  local host="$1" port="$2"
  # Brackets around an IPv6 literal are URL syntax, not /dev/tcp syntax.
  host="${host#[}"
  host="${host%]}"
  # shellcheck disable=SC2016 # expanded by the inner shell
  if have timeout; then
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
  else
    bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
  fi
}

# wait_for_port HOST PORT SECONDS — poll until HOST:PORT accepts connections;
# false if it still doesn't after SECONDS.
wait_for_port() {
  local host="$1" port="$2" seconds="$3"
  local deadline=$((SECONDS + seconds))
  while ! port_open "$host" "$port"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
  return 0
}

# is_local_host HOST — true for the loopback names this machine can serve.
is_local_host() {
  case "$1" in
    127.* | localhost | ::1 | "[::1]") return 0 ;;
    *) return 1 ;;
  esac
}

# url_authority URL — print the host[:port] part of a URL such as
# scheme://user:pass@host:port/path?query (the first of a comma list).
url_authority() {
  local rest="${1#*://}"
  rest="${rest%%,*}"
  rest="${rest%%/*}"
  rest="${rest%%\?*}"
  rest="${rest##*@}"
  printf '%s\n' "$rest"
}

# url_host URL DEFAULT_HOST — print the host of URL (no brackets for IPv6).
url_host() {
  local auth
  auth="$(url_authority "$1")"
  local host
  if [[ "$auth" == \[* ]]; then
    host="${auth#[}"
    host="${host%%]*}"
  else
    host="${auth%%:*}"
  fi
  printf '%s\n' "${host:-$2}"
}

# url_port URL DEFAULT_PORT — print the port of URL, or DEFAULT_PORT.
url_port() {
  local auth port=""
  auth="$(url_authority "$1")"
  if [[ "$auth" == \[* ]]; then
    [[ "$auth" == *"]:"* ]] && port="${auth##*]:}"
  elif [[ "$auth" == *:* ]]; then
    port="${auth##*:}"
  fi
  printf '%s\n' "${port:-$2}"
}

# redact_url URL — the URL with any password replaced by ***, for logs.
redact_url() {
  printf '%s\n' "$1" | sed -E 's#^([a-z]+://[^:/@]+):[^@/]*@#\1:***@#'
}

# apt_install PACKAGE... — install Debian packages non-interactively
# (as root). Runs `apt-get update` once per process. False on failure.
apt_install() {
  if [[ -z "${PULSE_APT_UPDATED:-}" ]]; then
    log "apt-get update"
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=600 </dev/null >&2; then
      warn "apt-get update failed"
      return 1
    fi
    export PULSE_APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  # A machine just booted often has apt's lock held by its daily update: wait for it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "$@" </dev/null >&2
}

# need_tool COMMAND PACKAGE WHY — COMMAND on PATH, installed from the Debian package PACKAGE
# where apt-get can; dies saying WHY and what to install otherwise.
need_tool() {
  have "$1" && return 0
  if can_apt && apt_install "$2" && have "$1"; then
    return 0
  fi
  die "$1 is needed $3: install it (apt-get install $2)"
}

# can_apt — true when we may install Debian packages here.
can_apt() {
  is_root && have apt-get
}

# psql_on_path — put Homebrew's keg-only PostgreSQL client on PATH when psql is not there
# (macOS: `brew install postgresql@15` does not link it).
psql_on_path() {
  local prefix
  have psql && return 0
  have brew || return 0
  prefix="$(brew --prefix postgresql@15 2>/dev/null)" || return 0
  if [[ -x "$prefix/bin/psql" ]]; then
    PATH="$prefix/bin:$PATH"
    export PATH
  fi
}

# detached COMMAND... — run COMMAND in the background, in a session of its own where setsid
# exists (Linux), so that it outlives the calling script and its terminal; macOS has no
# setsid, and nohup alone keeps it from the terminal's hangup.
detached() {
  if have setsid; then
    setsid nohup "$@" &
  else
    nohup "$@" &
  fi
}

# RUST_AT_LEAST — the oldest Rust that builds Pulse (`rust-version` in Cargo.toml).
readonly RUST_AT_LEAST=1.89

# ensure_cargo — cargo on PATH (rustup's env file read when there is one), recent enough (a
# distribution's older cargo found first is refused, with what to do), and a C compiler and linker beside it (crates such
# as ring build C, and rustc links with cc): installed where apt-get can, else a clear stop.
ensure_cargo() {
  local version major minor
  if [[ -f "${HOME:-/root}/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "${HOME:-/root}/.cargo/env"
  fi
  have cargo || die "cargo not found: install Rust with rustup and make sure ~/.cargo/bin is on PATH"
  version="$(cargo --version 2>/dev/null | awk '{print $2}')" || true
  IFS=. read -r major minor _ <<<"$version"
  if ! [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] ||
    ((major == 1 && minor < ${RUST_AT_LEAST#1.})); then
    die "cargo ${version:-of unknown version} ($(command -v cargo)) cannot build Pulse: it needs Rust $RUST_AT_LEAST or later (rustup update stable)"
  fi
  if ! have cc; then
    if ! { can_apt && apt_install gcc libc6-dev && have cc; }; then
      die "a C compiler and linker (cc) is needed to build Pulse: install one (apt-get install build-essential)"
    fi
  fi
}

# NODE_FROM_REGISTRY — the Node.js release fetched from the npm registry when the system's is
# too old: the package node-linux-<arch> holds the official binary.
readonly NODE_FROM_REGISTRY=20.20.2

# node_from_registry — Node.js $NODE_FROM_REGISTRY from the npm registry into .pulse/node (once),
# first on PATH: Debian 12 and Ubuntu 24.04 ship an older one, which still runs the npm that
# fetches it. npm itself stays the system's.
node_from_registry() {
  local arch dir="$PULSE_STATE_DIR/node/$NODE_FROM_REGISTRY"
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) return 1 ;;
  esac
  if [[ ! -x "$dir/package/bin/node" ]]; then
    have npm || return 1
    log "installing Node.js $NODE_FROM_REGISTRY from the npm registry (node-linux-$arch) into ${dir#"$PULSE_ROOT"/}"
    rm -rf "$dir" && mkdir -p "$dir" || return 1
    (cd "$dir" &&
      npm pack --silent "node-linux-$arch@$NODE_FROM_REGISTRY" >/dev/null &&
      tar xzf "node-linux-$arch-$NODE_FROM_REGISTRY.tgz" package/bin/node &&
      rm -f "node-linux-$arch-$NODE_FROM_REGISTRY.tgz") || return 1
  fi
  export PATH="$dir/package/bin:$PATH"
}

# node_recent_enough — true when `node` on PATH is 20.19 or newer.
node_recent_enough() {
  local version major minor
  version="$(node --version 2>/dev/null)" || return 1
  version="${version#v}"
  IFS=. read -r major minor _ <<<"$version"
  ((major > 20 || (major == 20 && minor >= 19)))
}

# ensure_node — Node.js 20.19 or newer with npm: installed with apt-get (as root on Debian) when
# missing, and, when the system's is older (Debian 12 ships 18), the official binary fetched from
# the npm registry into .pulse/node; dies with what to install otherwise.
ensure_node() {
  if [[ -x "$PULSE_STATE_DIR/node/$NODE_FROM_REGISTRY/package/bin/node" ]] && ! node_recent_enough; then
    export PATH="$PULSE_STATE_DIR/node/$NODE_FROM_REGISTRY/package/bin:$PATH"
  fi
  if ! have node || ! have npm; then
    if can_apt; then
      # Some nodejs packages bundle npm: install npm only if it is still missing afterwards.
      have node || apt_install nodejs || die "could not install nodejs with apt-get"
      have npm || apt_install npm || die "could not install npm with apt-get"
    fi
    have node || die "node not found: install Node.js 20.19+ (apt-get install nodejs npm, or https://nodejs.org)"
    have npm || die "npm not found: install it (apt-get install npm, or with Node.js from https://nodejs.org)"
  fi
  if ! node_recent_enough; then
    local old
    old="$(node --version)"
    if ! node_from_registry || ! node_recent_enough; then
      die "Node.js $old is too old for web/: 20.19 or newer is needed, and Node.js $NODE_FROM_REGISTRY could not be fetched from the npm registry (install it from https://nodejs.org or the NodeSource packages, then run this again)"
    fi
  fi
  log "node $(node --version), npm $(npm --version 2>/dev/null)"
}
