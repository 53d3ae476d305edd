#!/usr/bin/env bash
# Placeholder sources for the Dockerfile's dependency layer: every target of every workspace
# crate, as `cargo metadata` lists it (src/lib.rs, binaries, tests, benches, examples, with or
# without a `path =`), gets a stub file, so `cargo build` compiles the whole dependency graph
# from the manifests alone. A target added to any manifest is covered without touching the
# Dockerfile.
#
#   docker-dep-stubs.sh list  <workspace>          # in the full tree: print target paths
#   docker-dep-stubs.sh write <workspace> <list>   # in the manifests-only tree: write stubs
#
# Paths are relative to the workspace root; a library target gets an empty file, every other
# one `fn main() {}`.
set -euo pipefail

mode="${1:?usage: docker-dep-stubs.sh list|write <workspace> [list]}"
root="$(cd "${2:?workspace folder missing}" && pwd)"

case "$mode" in
  list)
    # src_path values of every target, made relative; the JSON has one string per field, so
    # the pattern cannot straddle two.
    (cd "$root" && cargo metadata --no-deps --format-version 1 --offline) \
      | grep -o '"src_path":"[^"]*"' \
      | sed -e 's/^"src_path":"//' -e 's/"$//' -e "s#^$root/##" \
      | sort -u
    ;;
  write)
    list="${3:?target list missing}"
    while IFS= read -r target; do
      [[ -n "$target" ]] || continue
      case "$target" in
        /*|*..*) echo "docker-dep-stubs: refusing path outside the workspace: $target" >&2; exit 1 ;;
      esac
      mkdir -p "$root/$(dirname "$target")"
      if [[ "$target" == */src/lib.rs || "$target" == src/lib.rs ]]; then
        : >"$root/$target"
      else
        echo 'fn main() {}' >"$root/$target"
      fi
    done <"$list"
    ;;
  *)
    echo "docker-dep-stubs: unknown mode $mode (list or write)" >&2
    exit 2
    ;;
esac
