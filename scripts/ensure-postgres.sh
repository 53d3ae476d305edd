#!/usr/bin/env bash
# Make PostgreSQL reachable at the host and port of DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/test) and check that
# `psql "$DATABASE_URL" -c 'select 1'` works.
#
# In order:
#   1. already reachable             -> use it;
#   2. a Debian cluster is installed -> start it (pg_ctlcluster);
#   3. macOS with Homebrew           -> brew install postgresql@15 (when missing),
#                                       brew services start, create roles and database;
#   4. nothing installed, root + apt -> apt-get install postgresql, start the
#                                       cluster, trust auth on loopback, create
#                                       the roles and the database;
#   5. otherwise                     -> fail, saying what to install.
# Safe to run any number of times.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export_service_urls

PG_HOST="$(url_host "$DATABASE_URL" 127.0.0.1)"
PG_PORT="$(url_port "$DATABASE_URL" 5432)"
SHOWN_URL="$(redact_url "$DATABASE_URL")"

# url_user URL — the user name in URL, or empty.
url_user() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  [[ "$rest" == *@* ]] || return 0
  rest="${rest%@*}"
  printf '%s\n' "${rest%%:*}"
}

# url_dbname URL — the database name in URL, or empty.
url_dbname() {
  local rest="${1#*://}"
  [[ "$rest" == */* ]] || return 0
  rest="${rest#*/}"
  printf '%s\n' "${rest%%\?*}"
}

PG_USER="$(url_user "$DATABASE_URL")"
PG_DB="$(url_dbname "$DATABASE_URL")"

# The Debian cluster we manage, once found: version, name, port.
CL_VERSION=""
CL_NAME=""
CL_PORT=""

# find_cluster — pick the local Debian cluster serving PG_PORT (or, failing
# that, the newest version's "main"). Sets CL_*; false when none exists.
find_cluster() {
  CL_VERSION="" CL_NAME="" CL_PORT=""
  if have pg_lsclusters; then
    local ver name port _rest
    while read -r ver name port _rest; do
      if [[ "$port" == "$PG_PORT" ]]; then
        CL_VERSION="$ver" CL_NAME="$name" CL_PORT="$port"
        return 0
      fi
    done < <(pg_lsclusters -h 2>/dev/null || true)
  fi
  [[ -d /etc/postgresql ]] || return 1
  local v
  v="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1)"
  [[ -n "$v" && -d "/etc/postgresql/$v/main" ]] || return 1
  CL_VERSION="$v" CL_NAME="main"
  CL_PORT="$(sed -nE 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' \
    "/etc/postgresql/$v/main/postgresql.conf" 2>/dev/null | tail -n 1)"
  CL_PORT="${CL_PORT:-5432}"
  return 0
}

# start_cluster — start the cluster in CL_* unless it already runs.
start_cluster() {
  have pg_ctlcluster ||
    die "PostgreSQL $CL_VERSION is installed but pg_ctlcluster is missing; start the server yourself (apt-get install postgresql-common)"
  if [[ "$CL_PORT" != "$PG_PORT" ]]; then
    warn "cluster $CL_VERSION/$CL_NAME is configured for port $CL_PORT, but DATABASE_URL asks for $PG_PORT"
  fi
  if pg_ctlcluster "$CL_VERSION" "$CL_NAME" status >/dev/null 2>&1; then
    log "cluster $CL_VERSION/$CL_NAME is already running"
    return 0
  fi
  log "starting PostgreSQL cluster $CL_VERSION/$CL_NAME"
  pg_ctlcluster --skip-systemctl-redirect "$CL_VERSION" "$CL_NAME" start </dev/null ||
    die "could not start PostgreSQL cluster $CL_VERSION/$CL_NAME (see /var/log/postgresql/postgresql-$CL_VERSION-$CL_NAME.log); run this as root or as the cluster's owner"
  # Recorded (for `make up`) so `make down` stops what was started here, and nothing else: with
  # the server's process id, so that one started since by anything else (the system at boot)
  # is not taken for it.
  record_started postgres "$CL_VERSION $CL_NAME $(cluster_pid "$CL_VERSION" "$CL_NAME")"
}

# start_with_brew — macOS: install PostgreSQL with Homebrew when missing and start it as a
# Homebrew service (it then runs as the current user with trust auth on loopback), then create
# the URL's role and database.
BREW_PG="postgresql@15"
start_with_brew() {
  if ! brew list --versions "$BREW_PG" >/dev/null 2>&1; then
    log "PostgreSQL is not installed; installing $BREW_PG with Homebrew"
    brew install "$BREW_PG" >&2 || die "brew install $BREW_PG failed"
  fi
  log "starting $BREW_PG as a Homebrew service"
  brew services start "$BREW_PG" >&2 || die "brew services start $BREW_PG failed"
  record_started postgres "brew $BREW_PG"
  wait_for_port "$PG_HOST" "$PG_PORT" 30 ||
    die "$BREW_PG did not open $PG_HOST:$PG_PORT within 30 s (brew services info $BREW_PG)"
  local bin
  bin="$(brew --prefix "$BREW_PG")/bin"
  create_roles_and_db "$bin/psql" -h "$PG_HOST" -p "$PG_PORT"
  have psql || PATH="$bin:$PATH"
}

# as_postgres COMMAND... — run COMMAND as the postgres OS user (stdin passes
# through), from a directory that user may read.
as_postgres() {
  if have runuser; then
    (cd / && runuser -u postgres -- "$@")
  else
    # shellcheck disable=SC2016
    (cd / && su -s /bin/bash postgres -c 'exec "$0" "$@"' "$@")
  fi
}

# set_trust_auth — make TCP logins from 127.0.0.1 and ::1 passwordless in
# the cluster's pg_hba.conf, then reload the server.
set_trust_auth() {
  local hba="/etc/postgresql/$CL_VERSION/$CL_NAME/pg_hba.conf"
  [[ -f "$hba" ]] || die "cannot find $hba to allow passwordless logins"
  [[ -f "$hba.pulse-orig" ]] || cp -p "$hba" "$hba.pulse-orig"
  log "setting trust auth for 127.0.0.1 and ::1 in $hba (original kept as $hba.pulse-orig)"
  # Loopback "host" lines: replace the method (and its options) with trust.
  sed -E -i \
    '/^[[:space:]]*host[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+(127\.0\.0\.1\/32|::1\/128)[[:space:]]/ s/^([[:space:]]*host[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+)[[:space:]].*$/\1    trust/' \
    "$hba"
  # No loopback line for all databases and users? Put ours first.
  if ! grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    local tmp
    tmp="$(mktemp)"
    {
      printf '# added by pulse scripts/ensure-postgres.sh: passwordless loopback logins for tests\n'
      printf 'host    all    all    127.0.0.1/32    trust\n'
      printf 'host    all    all    ::1/128         trust\n'
      cat "$hba"
    } >"$tmp"
    cat "$tmp" >"$hba"
    rm -f "$tmp"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$CL_VERSION" "$CL_NAME" reload </dev/null ||
    die "could not reload PostgreSQL cluster $CL_VERSION/$CL_NAME after editing $hba"
}

# create_missing KIND NAME PSQL [ARGS...] — with the superuser connection PSQL ARGS -d postgres,
# run the SQL on stdin, which creates the KIND :'name' unless it exists; dies when that fails.
create_missing() {
  local kind="$1" name="$2"
  shift 2
  "$@" -X -w -q -v ON_ERROR_STOP=1 -d postgres -v name="$name" >/dev/null ||
    die "could not create $kind $name"
}

# create_roles_and_db PSQL [ARGS...] — with the superuser connection PSQL ARGS -d postgres,
# create the login superuser roles postgres, root and the URL's user, and the URL's database,
# where missing.
create_roles_and_db() {
  local role
  for role in postgres root "$PG_USER"; do
    [[ -n "$role" ]] || continue
    log "ensuring role $role (superuser, login)"
    create_missing role "$role" "$@" <<'SQL'
SELECT format('CREATE ROLE %I SUPERUSER LOGIN', :'name')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'name') \gexec
SQL
  done
  if [[ -n "$PG_DB" ]]; then
    log "ensuring database $PG_DB"
    create_missing database "$PG_DB" "$@" <<'SQL'
SELECT format('CREATE DATABASE %I', :'name')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \gexec
SQL
  fi
}

# ensure_roles_and_db — the same on the local Debian cluster, through its socket as postgres.
ensure_roles_and_db() {
  create_roles_and_db as_postgres psql -p "$CL_PORT"
}

# psql_check — try the URL once; on failure leave psql's message in PSQL_ERR.
PSQL_ERR=""
# server_starting PSQL_ERROR — whether the server refuses connections for now (starting,
# recovering, stopping) rather than for good.
server_starting() {
  if have pg_isready; then
    local rc=0
    PGCONNECT_TIMEOUT=5 pg_isready -q -d "$DATABASE_URL" >/dev/null 2>&1 || rc=$?
    ((rc == 1))
  else
    grep -Eqi 'starting up|in recovery mode|shutting down|not yet accepting connections' <<<"$1"
  fi
}

psql_check() {
  local out tries=0
  while true; do
    if out="$(PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$DATABASE_URL" -c 'select 1' </dev/null 2>&1)"; then
      PSQL_ERR=""
      return 0
    fi
    PSQL_ERR="$out"
    # A server that opened its port but does not take connections yet (crash recovery after a
    # reboot, a cluster started at boot a moment ago, a standby catching up): wait for it, up
    # to 30 s. pg_isready says so in any language (status 1); without it, the English text.
    server_starting "$out" && ((tries < 60)) || return 1
    ((tries == 0)) && log "PostgreSQL is not ready yet ($out); waiting up to 30 s"
    tries=$((tries + 1))
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------

installed_here=0

if port_open "$PG_HOST" "$PG_PORT"; then
  log "PostgreSQL is reachable at $PG_HOST:$PG_PORT"
else
  is_local_host "$PG_HOST" ||
    die "PostgreSQL at $PG_HOST:$PG_PORT (from DATABASE_URL=$SHOWN_URL) is not reachable, and only a local server can be started from here"
  if find_cluster; then
    log "PostgreSQL $CL_VERSION is installed but not reachable at $PG_HOST:$PG_PORT"
    start_cluster
  elif have brew; then
    start_with_brew
  elif can_apt; then
    log "PostgreSQL is not installed; installing it from Debian's packages"
    apt_install postgresql || die "apt-get install postgresql failed"
    installed_here=1
    find_cluster ||
      die "postgresql was installed but no cluster exists; create one with: pg_createcluster <version> main --start"
    start_cluster
  else
    die "PostgreSQL is not reachable at $PG_HOST:$PG_PORT and not installed; install it (as root: apt-get install postgresql; on macOS: brew install postgresql@15) or set DATABASE_URL to a running server"
  fi
  log "waiting up to 30 s for $PG_HOST:$PG_PORT"
  wait_for_port "$PG_HOST" "$PG_PORT" 30 ||
    die "PostgreSQL did not open $PG_HOST:$PG_PORT within 30 s (see /var/log/postgresql/)"
fi

psql_on_path
if ! have psql; then
  if can_apt; then
    apt_install postgresql-client || die "apt-get install postgresql-client failed"
  else
    die "psql is not installed; install it (as root: apt-get install postgresql-client; on macOS: brew install postgresql@15)"
  fi
fi

if ((installed_here)); then
  # Debian's default cluster wants passwords over TCP; tests log in without.
  set_trust_auth
  ensure_roles_and_db
fi

if ! psql_check; then
  # Fix what we can on a local Debian cluster we are allowed to manage.
  if is_local_host "$PG_HOST" && is_root && have pg_ctlcluster && find_cluster; then
    if grep -Eqi 'password|authentication failed|fe_sendauth' <<<"$PSQL_ERR"; then
      log "the server refused a passwordless login: $PSQL_ERR"
      set_trust_auth
      psql_check || true
    fi
    if [[ -n "$PSQL_ERR" ]] && grep -Eqi '(role|database) .* does not exist' <<<"$PSQL_ERR"; then
      log "$PSQL_ERR"
      ensure_roles_and_db
      psql_check || true
    fi
  fi
  [[ -z "$PSQL_ERR" ]] ||
    die "PostgreSQL is reachable at $PG_HOST:$PG_PORT but psql \"$SHOWN_URL\" -c 'select 1' fails: $PSQL_ERR"
fi

log "PostgreSQL ok: psql $SHOWN_URL -c 'select 1' works"
