#!/usr/bin/env bash
# What `make lint` runs: the Rust formatting check and clippy with warnings as errors, a
# check that no crate names a dependency it does not use, ShellCheck on every script, and
# ESLint with the type check on the browser code.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$PULSE_ROOT"
ensure_cargo

cargo fmt --version >/dev/null 2>&1 ||
  die "rustfmt is missing; install it with: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 ||
  die "clippy is missing; install it with: rustup component add clippy"

stage "format: cargo fmt --all -- --check"
cargo fmt --all -- --check

stage "clippy: cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# cargo-machete reads each crate's sources for the dependencies its manifest names; pinned so
# that a new release cannot change what passes.
stage "unused dependencies: cargo machete"
if ! cargo machete --version >/dev/null 2>&1; then
  log "installing cargo-machete 0.9.2 (once)"
  cargo install --locked cargo-machete --version 0.9.2 ||
    die "could not install cargo-machete; install it with: cargo install --locked cargo-machete"
fi
cargo machete

stage "shellcheck: scripts/*.sh .ci/run"
need_tool shellcheck shellcheck "to lint the scripts"
shellcheck --external-sources scripts/*.sh .ci/run

stage "web: eslint and the type check"
ensure_node
(
  cd web
  npm ci --no-audit --no-fund --loglevel=error
  npm run --silent lint
  npm run --silent typecheck
  npm run --silent generate:check
)

stage "lint passed"
