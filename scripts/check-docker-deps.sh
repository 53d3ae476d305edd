#!/usr/bin/env bash
# Replays the Dockerfile's dependency layer without a container engine: a temporary folder gets
# exactly what the builder's first COPY brings (every Cargo.toml and Cargo.lock, the target
# list and the stub script, made by the same commands as the planner stage), the stubs are
# written as in the builder, and the result must be a workspace cargo can build. A target added
# to any manifest without a matching stub fails here, not in an image build.
#
# It first adds a bench target without a `path` to a copy of the tree and shows the stubs still
# cover every target. Then it checks (`cargo check`) this tree's layer rather than building it in
# release: a target folder of its own under target/ keeps the minutes of a first run to seconds
# afterwards.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$PULSE_ROOT"
ensure_cargo

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# The planner stage on the tree in $1 into $2, then the builder's first step in $2 (what
# .dockerignore keeps out never has manifests).
replay() {
  local tree="$1" recipe="$2"
  # Called in an `||` list, where `set -e` does not hold: each step says when it failed, so a
  # failure of this check's own is not reported as the Dockerfile's.
  mkdir -p "$recipe" || die "check-docker-deps: could not create $recipe"
  (cd "$tree" && find . \( -name Cargo.toml -o -name Cargo.lock \) -not -path './target/*' \
      -not -path './web/node_modules/*' -not -path './.git/*' -print0 \
    | xargs -0 cp --parents -t "$recipe") ||
    die "check-docker-deps: could not copy the manifests of $tree"
  bash "$tree/scripts/docker-dep-stubs.sh" list "$tree" >"$recipe/.targets" ||
    die "check-docker-deps: docker-dep-stubs.sh could not list the targets of $tree"
  cp "$tree/scripts/docker-dep-stubs.sh" "$recipe/.docker-dep-stubs.sh" ||
    die "check-docker-deps: could not copy docker-dep-stubs.sh into $recipe"
  (cd "$recipe" && bash .docker-dep-stubs.sh write . .targets) || return 1
  # The builder's command (check, not a release build): cargo loads every target of every
  # manifest, so a target without its stub fails here as it would in the image build.
  (cd "$recipe" && CARGO_TARGET_DIR="$PULSE_ROOT/target/docker-deps" \
    cargo check --locked --quiet -p pulse-poller -p pulse-gateway -p pulse-web -p pulse-simulator)
}

# A new target, declared without a `path`, in a copy of the tree: the stubs must cover it.
tree="$scratch/tree"
mkdir -p "$tree"
tar -C . --exclude=./target --exclude=./.git --exclude='./web/node_modules' \
  --exclude=./test-artifacts --exclude=./.pulse -cf - . | tar -C "$tree" -xf -
printf '\n[[bench]]\nname = "added_by_check"\nharness = false\n' >>"$tree/services/gateway/Cargo.toml"
echo 'fn main() {}' >"$tree/services/gateway/benches/added_by_check.rs"
replay "$tree" "$scratch/added" \
  || die "check-docker-deps: a target added without a path breaks the Dockerfile's dependency layer"
grep -qx 'services/gateway/benches/added_by_check.rs' "$scratch/added/.targets" \
  || die "check-docker-deps: the added target was not stubbed"

# This tree.
recipe="$scratch/recipe"
replay . "$recipe" \
  || die "check-docker-deps: the Dockerfile's dependency layer does not build from the manifests and their stubs"
n="$(wc -l <"$recipe/.targets")"
log "check-docker-deps: ok (the dependency layer builds from the manifests and $n stubbed targets)"
