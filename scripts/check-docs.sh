#!/usr/bin/env bash
# Every configuration variable a service reads must be documented in README.md.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PULSE_ROOT"

mapfile -t vars < <(grep -rhoE 'env = "[A-Z][A-Z0-9_]+"' services proto --include='*.rs' \
  | sed -E 's/env = "([A-Z0-9_]+)"/\1/' | sort -u)
[[ ${#vars[@]} -gt 0 ]] || die "found no configuration variables in the sources"
missing=()
for v in "${vars[@]}"; do
  grep -q "\`$v\`" README.md || missing+=("$v")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  die "README.md does not document: ${missing[*]}"
fi
log "README.md documents all ${#vars[@]} configuration variables"
