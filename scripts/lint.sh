#!/usr/bin/env bash
# What `make lint` runs: formatting check and clippy with warnings as errors.
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

stage "lint passed"
