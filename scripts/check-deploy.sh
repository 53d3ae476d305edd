#!/usr/bin/env bash
# Offline checks of the deployment files: Dockerfile, docker-compose.yml and everything under
# deploy/ (compose configs, Kubernetes manifests, NATS values, Prometheus and Grafana). No
# container engine, cluster or network is needed: kubectl (for `kubectl kustomize`),
# kubernetes-validate (the Kubernetes JSON schemas, from PyPI) and promtool (taken from
# Debian's prometheus package, without installing the server) are fetched when missing.
#
# Checks, one summary line each:
#   yaml        every YAML file (all documents) parses
#   json        every JSON file parses (python3 -m json.tool)
#   compose     docker-compose.yml: `docker compose config -q` when the compose plugin is there,
#               and its structure: images/build targets, depends_on, mounted files, health
#               checks (each service's own `healthcheck` subcommand), the proxy's upstreams,
#               Prometheus' targets and rule files
#   kustomize   the base and every overlay build; building twice gives the same output; every
#               object validates against the Kubernetes schemas (strict: no unknown field), the
#               CRDs (HTTPRoute, ExternalSecret) by hand; and they hang together: selectors,
#               references to ConfigMaps/Secrets and Services, probes (startup, readiness,
#               liveness), security context, resources, scrape annotations
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

have python3 || die "python3 is needed to check the deployment files"
# python3 -m pip install, quietly; false when it cannot.
pip_install() {
  log "installing $* with pip"
  python3 -m pip install --quiet --disable-pip-version-check "$@" >&2
}
if ! python3 -c 'import yaml' 2>/dev/null; then
  pip_install pyyaml || die "PyYAML is missing and could not be installed (python3 -m pip install pyyaml)"
fi
# The Kubernetes JSON schemas for many versions, offline (about 100 MB installed).
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  pip_install 'kubernetes-validate>=1.31' \
    || die "kubernetes-validate is missing and could not be installed (python3 -m pip install kubernetes-validate)"
fi

for f in Dockerfile docker-compose.yml deploy/k8s/base/kustomization.yaml; do
  [[ -f "$f" ]] || die "missing $f"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- tools ----------------------------------------------------------------------------------------
kustomize_cmd=()
if have kubectl; then
  kustomize_cmd=(kubectl kustomize)
elif have kustomize; then
  kustomize_cmd=(kustomize build)
elif [[ -n "${CI:-}" ]]; then
  die "neither kubectl nor kustomize is installed: the Kubernetes manifests cannot be checked"
else
  warn "neither kubectl nor kustomize is installed: the Kubernetes checks are skipped"
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
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/dev/null 2>&1 || return 1
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
# Run in the tree to check, with: compose tool, folder of rendered builds ("" without kustomize),
# promtool's result. CHECK_DEPLOY_QUICK=1 skips the slower parts (schemas, nats-server).
checker="$(cat <<'PY'
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import urlsplit

import yaml

compose_tool, renders_dir, promtool_note = sys.argv[1:4]
quick = os.environ.get("CHECK_DEPLOY_QUICK") == "1"
errors = []

# The gateway keeps this long past PULSE_DRAIN_SECONDS before it gives up on the last clients
# (services/gateway/src/lib.rs: drain deadline = drain + 2 s).
GATEWAY_EXTRA_SECONDS = 2
# Our images, by the name of the service each runs.
SERVICES = ("poller", "gateway", "web", "simulator")
# The only path the public routes may send to the gateways.
WS_PATH = "/api/v2/ws"
# Kubernetes versions the manifests are validated against: the oldest supported and the newest
# the schemas know.
K8S_VERSIONS = ("1.29.0", None)
# Kinds without a schema in kubernetes-validate, checked by hand below.
CRD_KINDS = {"HTTPRoute", "ExternalSecret"}
# Generated names end in a hash of the content (kustomize: 10 characters).
HASHED = re.compile(r"-[a-z0-9]{10}$")
# The alert on the gateways' connection count, and its share of PULSE_MAX_CONNECTIONS.
CAP_SHARE = 0.8


def say(check, text):
    print(f"pulse: check-deploy: {check}: {text}", file=sys.stderr)


def fail(check, text):
    errors.append(f"{check}: {text}")


def count(check):
    return sum(1 for e in errors if e.startswith(check + ":"))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# libyaml's loader when PyYAML has it: several times faster on the builds.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_text(text):
    return [d for d in yaml.load_all(text, Loader=LOADER) if d is not None]


def load_all(path):
    return load_text(read(path))


# --- yaml -----------------------------------------------------------------------------------------
yaml_files = ["docker-compose.yml"] + sorted(
    p for p in glob.glob("deploy/**/*", recursive=True)
    if p.endswith((".yml", ".yaml")) and os.path.isfile(p)
)
docs_by_file = {}
ndocs = 0
for path in yaml_files:
    try:
        docs_by_file[path] = load_all(path)
        ndocs += len(docs_by_file[path])
    except yaml.YAMLError as e:
        fail("yaml", f"{path} does not parse: {e}")
if not count("yaml"):
    say("yaml", f"ok ({len(yaml_files)} files, {ndocs} documents parse)")


def first_doc(path):
    return (docs_by_file.get(path) or [{}])[0] or {}


readme = read("README.md") if os.path.exists("README.md") else ""
documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))


def readme_default(name):
    m = re.search(r"\|\s*`%s`\s*\|\s*`([^`]*)`" % re.escape(name), readme)
    return m.group(1) if m else None


# Variables each service reads: clap `env = "..."` and std::env::var("...") in its sources
# and in services/common (shared by all).
def declared_vars(dirs):
    names = set()
    for d in dirs:
        for path in glob.glob(f"{d}/**/*.rs", recursive=True):
            text = read(path)
            names.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
            names.update(re.findall(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"', text))
    return names


have_sources = all(os.path.isdir(f"services/{s}/src") for s in SERVICES)
reads = {}
if have_sources:
    for s in SERVICES:
        reads[s] = declared_vars([f"services/{s}/src", "services/common/src"])
read_by_any = set().union(*reads.values()) if reads else set()
sources = {}
for s in SERVICES + ("common",):
    sources[s] = {p: read(p) for p in glob.glob(f"services/{s}/src/**/*.rs", recursive=True)}


def registered(metric):
    """None when pulse-<svc> registers the metric (suffixes _total/_bucket/... allowed), else
    the reason it does not."""
    m = re.match(r"pulse_(gateway|poller|web)_([a-z0-9_]+)$", metric)
    if not m:
        return f"{metric} is not a pulse_<service>_ metric"
    svc, name = m.groups()
    base_name = re.sub(r"_(total|bucket|sum|count)$", "", name)
    pattern = re.compile(r'\.register\w*\(\s*"%s"' % re.escape(base_name))
    if not any(pattern.search(t) for t in sources[svc].values()):
        return f"pulse-{svc} registers no metric \"{base_name}\""
    return None


def process_metric_state(metric):
    """'yes' when a service source registers the process metric, 'pending' when no source
    registers any process metric yet, 'no' when some are registered but not this one."""
    short = metric[len("process_"):]
    texts = [t for d in sources.values() for t in d.values()]
    if any(f'"{metric}"' in t or (f'"{short}"' in t and '"process' in t) for t in texts):
        return "yes"
    if any(re.search(r'"process(_[a-z_]+)?"', t) for t in texts):
        return "no"
    return "pending"


# (where, service or None, {name: value or None}) for every container the files define.
env_uses = []


def service_of_image(image):
    image = str(image or "")
    for s in SERVICES:
        if re.search(rf"(^|/)pulse-{s}(:|@|$)", image):
            return s
    return None


# --- Dockerfile -----------------------------------------------------------------------------------
dockerfile = read("Dockerfile")
targets = {m.lower() for m in re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", dockerfile)}
for s in SERVICES:
    if s not in targets:
        fail("compose", f"Dockerfile has no `{s}` target")
binary_path = {}
stage = None
for line in dockerfile.splitlines():
    m = re.match(r"(?i)^FROM\s+\S+(?:\s+AS\s+(\S+))?", line)
    if m:
        stage = (m.group(1) or "").lower()
        continue
    m = re.match(r"(?i)^COPY\s+--from=\S+\s+\S*/(pulse-\w+)\s+(\S+)", line)
    if m and stage in SERVICES:
        binary_path[stage] = m.group(2)
    m = re.match(r"(?i)^ENV\s+(.*)", line)
    if m:
        names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", m.group(1))
        env_uses.append((f"Dockerfile stage {stage}", stage if stage in SERVICES else None,
                         {n: None for n in names}))

# --- compose --------------------------------------------------------------------------------------
compose = first_doc("docker-compose.yml")
services = compose.get("services") or {}
compose_errors_before = len(errors)
if not services:
    fail("compose", "docker-compose.yml defines no services")
named_volumes = set((compose.get("volumes") or {}).keys())
healthchecked = 0
disabled_checks = []
compose_service_of = {}


def compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v if "=" in str(item) else None
        return out
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def mounts(svc):
    """[(source, target)] of a compose service's bind mounts and volumes."""
    out = []
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):
            out.append((str(vol.get("source", "")), str(vol.get("target", ""))))
        else:
            parts = str(vol).split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return out


for name, svc in services.items():
    svc = svc or {}
    build = svc.get("build")
    target = None
    if build is None and not svc.get("image"):
        fail("compose", f"service {name} has neither image nor build")
    if isinstance(build, dict):
        target = build.get("target")
        ctx = build.get("context", ".")
        if not os.path.isdir(ctx):
            fail("compose", f"service {name}: build context {ctx} does not exist")
        if target and target.lower() not in targets:
            fail("compose", f"service {name}: Dockerfile has no target {target}")
    pulse_service = target.lower() if target and target.lower() in SERVICES else \
        service_of_image(svc.get("image"))
    compose_service_of[name] = pulse_service
    deps = svc.get("depends_on") or {}
    dep_items = deps.items() if isinstance(deps, dict) else [(d, {}) for d in deps]
    for dep, spec in dep_items:
        if dep not in services:
            fail("compose", f"service {name} depends on unknown service {dep}")
        cond = (spec or {}).get("condition", "service_started")
        if cond not in ("service_started", "service_healthy",
                        "service_completed_successfully"):
            fail("compose", f"service {name}: unknown depends_on condition {cond}")
        if cond == "service_healthy":
            hc = (services.get(dep) or {}).get("healthcheck") or {}
            if hc.get("disable") or not hc.get("test"):
                fail("compose", f"service {name} waits for {dep} to be healthy, "
                                f"but {dep} has no health check")
    for src, _ in mounts(svc):
        if src.startswith((".", "/")):
            if not os.path.exists(src):
                fail("compose", f"service {name} mounts {src}, which does not exist")
        elif src not in named_volumes:
            fail("compose", f"service {name} uses volume {src}, not declared under volumes:")
    hc = svc.get("healthcheck")
    if hc and hc.get("disable"):
        disabled_checks.append(name)
    elif hc and hc.get("test"):
        healthchecked += 1
        if pulse_service:
            # The service's own `healthcheck` subcommand (GETs its /readyz): the images carry
            # no HTTP client.
            want = ["CMD", binary_path.get(pulse_service, f"/usr/local/bin/pulse-{pulse_service}"),
                    "healthcheck"]
            if hc["test"] != want:
                fail("compose", f"service {name}: health check should be {json.dumps(want)} "
                                f"(found {json.dumps(hc['test'])})")
    else:
        fail("compose", f"service {name} has no healthcheck (add one, or disable it explicitly "
                        f"with a comment saying why)")
    env_uses.append((f"docker-compose.yml service {name}", pulse_service, compose_env(svc)))
for s in SERVICES:
    if s not in binary_path:
        fail("compose", f"Dockerfile stage {s} copies no pulse-{s} binary")

# The proxy balances over compose services; Prometheus scrapes compose services.
nginx_conf = "deploy/compose/nginx.conf"
if os.path.exists(nginx_conf):
    text = re.sub(r"#.*", "", read(nginx_conf))
    upstreams = re.findall(r"upstream\s+\S+\s*\{([^}]*)\}", text)
    hosts = [h for block in upstreams for h in re.findall(r"\bserver\s+([\w.-]+):\d+", block)]
    if not hosts:
        fail("compose", f"{nginx_conf} has no upstream servers")
    for h in hosts:
        if h not in services:
            fail("compose", f"{nginx_conf} proxies to {h}, not a compose service")
    if "Upgrade" not in text or "$connection_upgrade" not in text:
        fail("compose", f"{nginx_conf} does not pass the WebSocket Upgrade/Connection headers")
    if re.search(r"\b(ip_hash|sticky)\b|^\s*hash\s", text, re.M):
        fail("compose", f"{nginx_conf} pins clients to a gateway (no sticky sessions wanted)")
prom = "deploy/prometheus/prometheus.yml"
prom_cfg = first_doc(prom)
scrape_services = set()
for job in prom_cfg.get("scrape_configs") or []:
    for sc in job.get("static_configs") or []:
        scrape_services.add((sc.get("labels") or {}).get("service"))
        for t in sc.get("targets") or []:
            host = str(t).rsplit(":", 1)[0]
            if host not in services and host != "localhost":
                fail("compose", f"{prom}: job {job.get('job_name')} scrapes {t}, "
                                f"not a compose service")
# Prometheus in compose: the configuration and every rule file it names, mounted side by side.
prom_svc = next((s for n, s in services.items()
                 if "prom/prometheus" in str((s or {}).get("image", ""))), None)
rule_files = prom_cfg.get("rule_files") or []
if prom_svc is None:
    fail("compose", "no Prometheus service (image prom/prometheus) in docker-compose.yml")
else:
    mounted = {os.path.normpath(src): tgt for src, tgt in mounts(prom_svc)}
    cfg_target = mounted.get(os.path.normpath(prom))
    if not cfg_target:
        fail("compose", f"Prometheus does not mount {prom}")
    for rf in rule_files:
        src = os.path.normpath(os.path.join(os.path.dirname(prom), rf))
        if not os.path.exists(src):
            fail("compose", f"{prom} loads rule file {rf}, which does not exist next to it")
        elif cfg_target and mounted.get(src) != os.path.normpath(
                os.path.join(os.path.dirname(cfg_target), rf)):
            fail("compose", f"Prometheus loads {rf} from next to its configuration, but compose "
                            f"mounts {src} at {mounted.get(src) or 'nowhere'}")
if "alerts.yml" not in rule_files:
    fail("compose", f"{prom} does not load alerts.yml (rule_files)")
if len(errors) == compose_errors_before:
    tool = "docker compose config -q, " if compose_tool != "none" else \
        "no docker compose plugin, parsed with python; "
    say("compose", f"ok ({tool}{len(services)} services, {healthchecked} health checks, "
                   f"disabled with a reason: {', '.join(disabled_checks) or 'none'})")

# --- kustomize, apply, routes, policy: per build -------------------------------------------------
renders = {}
if renders_dir:
    for path in sorted(glob.glob(os.path.join(renders_dir, "*.yaml"))):
        name = os.path.basename(path)[:-len(".yaml")]
        if "." in name:
            continue  # second builds and variants, used below
        renders[name] = load_all(path)
overlays = sorted(n for n in renders if n != "base")
if renders_dir and "base" not in renders:
    fail("kustomize", "deploy/k8s/base was not built")
if renders_dir and not overlays:
    fail("kustomize", "no overlay under deploy/k8s/overlays/")

schema_counts = {"validated": 0, "by hand": 0}
validated_kinds = set()


def validate_schemas(where, docs):
    if quick:
        return
    import kubernetes_validate as kv
    for d in docs:
        what = f"{where}: {d.get('kind')} {d.get('metadata', {}).get('name')}"
        if d.get("kind") in CRD_KINDS:
            schema_counts["by hand"] += 1
            continue
        for version in K8S_VERSIONS:
            version = version or kv.latest_version()
            try:
                kv.validate(d, version, strict=True)
            except kv.SchemaNotFoundError:
                fail("kustomize", f"{what}: no schema for {d.get('apiVersion')} in Kubernetes "
                                  f"{version}, and no check by hand")
                break
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                fail("kustomize", f"{what}: invalid for Kubernetes {version} at {path}: "
                                  f"{e.message}")
                break
        else:
            schema_counts["validated"] += 1
            validated_kinds.add(d.get("kind"))


def index(docs, where):
    by_kind = {}
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d:
            fail("kustomize", f"{where}: a document without kind: {str(d)[:80]}")
            continue
        by_kind.setdefault(d["kind"], {})[d.get("metadata", {}).get("name")] = d
    return by_kind


def pod_workloads(by_kind, where):
    """[(kind, name, pod spec, pod labels, pod annotations, object)]"""
    out = []
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
        for name, d in (by_kind.get(kind) or {}).items():
            spec = d.get("spec") or {}
            if kind == "CronJob":
                spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
            tmpl = spec.get("template") or {}
            labels = (tmpl.get("metadata") or {}).get("labels") or {}
            annotations = (tmpl.get("metadata") or {}).get("annotations") or {}
            out.append((kind, name, tmpl.get("spec") or {}, labels, annotations, d))
            if kind not in ("Job", "CronJob"):
                sel = (spec.get("selector") or {}).get("matchLabels") or {}
                if not sel or any(labels.get(k) != v for k, v in sel.items()):
                    fail("kustomize", f"{where}: {kind} {name}: selector {sel} does not match "
                                      f"its pod labels")
    return out


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def all_containers(pod):
    return [("initContainer", c) for c in pod.get("initContainers") or []] + \
        [("container", c) for c in pod.get("containers") or []]


class Build:
    """One rendered overlay, indexed, with the references between its objects resolved."""

    def __init__(self, name, docs):
        self.name = name
        self.where = f"overlay {name}"
        self.by_kind = index(docs, self.where)
        self.workloads = pod_workloads(self.by_kind, self.where)
        self.configmaps = {n: (d.get("data") or {})
                           for n, d in (self.by_kind.get("ConfigMap") or {}).items()}
        self.secrets = {n: {**(d.get("data") or {}), **(d.get("stringData") or {})}
                        for n, d in (self.by_kind.get("Secret") or {}).items()}
        # Secrets an operator syncs (no content hash in their names).
        self.synced = set()
        for n, es in (self.by_kind.get("ExternalSecret") or {}).items():
            spec = es.get("spec") or {}
            target = ((spec.get("target") or {}).get("name")) or n
            self.secrets[target] = {d.get("secretKey"): None for d in spec.get("data") or []}
            self.synced.add(target)

    def kind(self, k):
        return self.by_kind.get(k) or {}

    def env(self, kind, name, c):
        """The environment of container c as {name: value or None}, references checked."""
        env = {}
        for src in c.get("envFrom") or []:
            for key, store in (("configMapRef", self.configmaps), ("secretRef", self.secrets)):
                ref = src.get(key)
                if not ref:
                    continue
                if ref.get("name") not in store:
                    if not ref.get("optional"):
                        fail("kustomize", f"{self.where}: {kind} {name}: envFrom {key} "
                                          f"{ref.get('name')} does not exist")
                    continue
                env.update({k: (None if key == "secretRef" else str(v))
                            for k, v in store[ref["name"]].items()})
        for e in c.get("env") or []:
            value = e.get("value")
            vf = e.get("valueFrom") or {}
            for key, store in (("configMapKeyRef", self.configmaps),
                               ("secretKeyRef", self.secrets)):
                ref = vf.get(key)
                if not ref:
                    continue
                present = ref.get("name") in store and ref.get("key") in store[ref.get("name")]
                if not present and not ref.get("optional"):
                    fail("kustomize", f"{self.where}: {kind} {name}: {e['name']} refers to "
                                      f"{key} {ref.get('name')}/{ref.get('key')}, which does "
                                      f"not exist")
                if key == "configMapKeyRef" and present:
                    value = store[ref["name"]][ref["key"]]
            env[e["name"]] = None if value is None else str(value)
        return env

    def secret_key_of(self, c, var):
        for e in c.get("env") or []:
            if e.get("name") == var:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                return (ref.get("name"), ref.get("key")) if ref else None
        return None

    def referenced(self, pod):
        """{('ConfigMap'|'Secret', name)} a pod uses."""
        out = set()
        for _, c in all_containers(pod):
            for src in c.get("envFrom") or []:
                if "configMapRef" in src:
                    out.add(("ConfigMap", src["configMapRef"].get("name")))
                if "secretRef" in src:
                    out.add(("Secret", src["secretRef"].get("name")))
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if "configMapKeyRef" in vf:
                    out.add(("ConfigMap", vf["configMapKeyRef"].get("name")))
                if "secretKeyRef" in vf:
                    out.add(("Secret", vf["secretKeyRef"].get("name")))
        for v in pod.get("volumes") or []:
            if "configMap" in v:
                out.add(("ConfigMap", v["configMap"].get("name")))
            if "secret" in v:
                out.add(("Secret", v["secret"].get("secretName")))
        return out

    def service_ports(self, svc):
        """[(service port, container port number, container port name)] of a Service."""
        sel = (svc.get("spec") or {}).get("selector") or {}
        cports = [p for w in self.workloads if selects(sel, w[3])
                  for c in w[2].get("containers") or [] for p in c.get("ports") or []]
        out = []
        for p in (svc.get("spec") or {}).get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            match = [cp for cp in cports
                     if (isinstance(tp, str) and cp.get("name") == tp)
                     or (isinstance(tp, int) and cp.get("containerPort") == tp)]
            out.append((p, match[0].get("containerPort") if match else None,
                        match[0].get("name") if match else None))
        return out


def base_checks(docs):
    """The base alone: it must be safe to build on and never carry what an overlay owns."""
    by_kind = index(docs, "base")
    for name in by_kind.get("Secret") or {}:
        fail("apply", f"the base defines Secret {name}: an overlay owns the Secret (applying "
                      f"the base would overwrite the real one)")
    for kind in ("Job",):
        for name in by_kind.get(kind) or {}:
            fail("apply", f"the base defines {kind} {name}: a Job's pod template cannot change, "
                          f"so the next apply with a new image fails (run migrations in an "
                          f"initContainer)")
    for text in (yaml.safe_dump(d) for d in docs):
        if "REPLACE_ME" in text:
            fail("apply", "the base holds a REPLACE_ME placeholder")
            break


builds = {}
if "base" in renders:
    base_checks(renders["base"])
    validate_schemas("base", renders["base"])
for name in overlays:
    builds[name] = Build(name, renders[name])
    validate_schemas(f"overlay {name}", renders[name])


def check_structure(b):
    w = b.where
    for name, svc in b.kind("Service").items():
        sel = (svc.get("spec") or {}).get("selector") or {}
        if not any(selects(sel, x[3]) for x in b.workloads):
            fail("kustomize", f"{w}: Service {name}: selector {sel} matches no pods")
        for p, number, pname in b.service_ports(svc):
            if number is None:
                fail("kustomize", f"{w}: Service {name}: targetPort "
                                  f"{p.get('targetPort', p.get('port'))} is no container port")
            if pname == "ops":
                fail("routes", f"{w}: Service {name} exposes the ops port {number}: /metrics, "
                               f"/healthz and /readyz must stay off every Service and route")
        affinity = (svc.get("spec") or {}).get("sessionAffinity", "None")
        if name == "pulse-gateway" and affinity != "None":
            fail("kustomize", f"{w}: Service pulse-gateway: sessionAffinity must be None")
    for name, pdb in b.kind("PodDisruptionBudget").items():
        sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not any(selects(sel, x[3]) for x in b.workloads):
            fail("kustomize", f"{w}: PodDisruptionBudget {name}: selector {sel} matches no pods")
    for name, hpa in b.kind("HorizontalPodAutoscaler").items():
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        target = b.kind(ref.get("kind")).get(ref.get("name"))
        if target is None:
            fail("kustomize", f"{w}: HorizontalPodAutoscaler {name}: target {ref} does not exist")
        elif "replicas" in (target.get("spec") or {}):
            fail("apply", f"{w}: {ref.get('kind')} {ref.get('name')} sets replicas under "
                          f"HorizontalPodAutoscaler {name}: every apply would reset the count "
                          f"and kill the pods the HPA added")
    for name in b.kind("Job"):
        fail("apply", f"{w}: Job {name}: its pod template cannot change, so applying a new "
                      f"image fails; run it as an initContainer")

    pulse = 0
    for kind, name, pod, labels, annotations, d in b.workloads:
        ctx = pod.get("securityContext") or {}
        where = f"{w}: {kind} {name}"
        for role, c in all_containers(pod):
            svc = service_of_image(c.get("image"))
            env = b.env(kind, name, c)
            env_uses.append((f"{where} {role} {c.get('name')}", svc, env))
            if not svc:
                continue
            pulse += 1
            cw = f"{where} {role} {c.get('name')}"
            csc = c.get("securityContext") or {}
            if not csc.get("runAsNonRoot", ctx.get("runAsNonRoot")):
                fail("kustomize", f"{cw}: runAsNonRoot is not set")
            if not csc.get("readOnlyRootFilesystem"):
                fail("kustomize", f"{cw}: readOnlyRootFilesystem is not set")
            if csc.get("allowPrivilegeEscalation") is not False:
                fail("kustomize", f"{cw}: allowPrivilegeEscalation must be false")
            res = c.get("resources") or {}
            if not res.get("requests") or not res.get("limits"):
                fail("kustomize", f"{cw}: resource requests and limits are required")
            if role == "initContainer" or kind in ("Job", "CronJob"):
                continue
            probes = {p: ((c.get(p) or {}).get("httpGet") or {}).get("path")
                      for p in ("startupProbe", "readinessProbe", "livenessProbe")}
            if probes != {"startupProbe": "/healthz", "readinessProbe": "/readyz",
                          "livenessProbe": "/healthz"}:
                fail("kustomize", f"{cw}: needs a startupProbe and a livenessProbe on /healthz "
                                  f"and a readinessProbe on /readyz (found {probes})")
            if (c.get("livenessProbe") or {}).get("initialDelaySeconds"):
                fail("kustomize", f"{cw}: the startupProbe covers the start; no "
                                  f"initialDelaySeconds on the livenessProbe")
            if annotations.get("prometheus.io/scrape") != "true":
                fail("kustomize", f"{where}: pods lack prometheus.io/scrape: \"true\"")
            port = str(annotations.get("prometheus.io/port", ""))
            cports = {str(p.get("containerPort")) for p in c.get("ports") or []}
            if port not in cports:
                fail("kustomize", f"{where}: prometheus.io/port {port or '(unset)'} is not a "
                                  f"container port ({', '.join(sorted(cports))})")
        if kind == "Deployment":
            check_spread(b, name, pod, labels)
            check_migrations(b, kind, name, pod)
    if pulse == 0:
        fail("kustomize", f"{w}: no Pulse containers")


def check_spread(b, name, pod, labels):
    """Zone spread for every Deployment; node spread by constraint or anti-affinity."""
    keys = set()
    for t in pod.get("topologySpreadConstraints") or []:
        sel = ((t.get("labelSelector") or {}).get("matchLabels")) or {}
        if selects(sel, labels):
            keys.add(t.get("topologyKey"))
    anti = ((pod.get("affinity") or {}).get("podAntiAffinity")) or {}
    for term in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        pat = term.get("podAffinityTerm") or {}
        if selects(((pat.get("labelSelector") or {}).get("matchLabels")) or {}, labels):
            keys.add(pat.get("topologyKey"))
    for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        if selects(((term.get("labelSelector") or {}).get("matchLabels")) or {}, labels):
            keys.add(term.get("topologyKey"))
    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname"):
        if key not in keys:
            fail("routes", f"{b.where}: Deployment {name} is not spread over {key} (a "
                           f"topologySpreadConstraint or pod anti-affinity selecting its pods)")


def check_migrations(b, kind, name, pod):
    """Pods that use the database apply the migrations first, in an initContainer, as the
    owner; the service itself logs in with a different (its own) login."""
    mains = [c for c in pod.get("containers") or [] if "DATABASE_URL" in
             {e.get("name") for e in c.get("env") or []}]
    if not mains:
        return
    where = f"{b.where}: {kind} {name}"
    inits = [c for c in pod.get("initContainers") or []
             if service_of_image(c.get("image")) == "poller"
             and list(c.get("args") or c.get("command") or [])[-1:] == ["migrate"]]
    if not inits:
        fail("apply", f"{where} uses the database but has no initContainer running "
                      f"`pulse-poller migrate`: a rollout would start new code on the old schema")
        return
    owner = b.secret_key_of(inits[0], "DATABASE_URL")
    if owner is None:
        fail("apply", f"{where}: the migrate initContainer takes DATABASE_URL from no Secret")
    for c in mains:
        login = b.secret_key_of(c, "DATABASE_URL")
        if login is None:
            fail("apply", f"{where} container {c.get('name')}: DATABASE_URL from no Secret")
        elif login == owner:
            fail("apply", f"{where} container {c.get('name')} logs in with the migrations' "
                          f"owner login {login[1]}: give it its own (README.md, "
                          f"\"Database roles\")")


def check_generated(b):
    """Every ConfigMap and Secret a Deployment uses is generated (its name changes with its
    content, so a change rolls the pods) or, when an operator syncs it, watched by Reloader."""
    for kind, name, pod, labels, annotations, d in b.workloads:
        meta = (d.get("metadata") or {}).get("annotations") or {}
        reload = {s.strip() for s in str(meta.get("secret.reloader.stakater.com/reload", ""))
                  .split(",") if s.strip()}
        auto = str(meta.get("reloader.stakater.com/auto", "")) == "true"
        for ref_kind, ref in sorted(b.referenced(pod)):
            if ref_kind == "Secret" and ref in b.synced:
                if ref not in reload and not auto:
                    fail("apply", f"{b.where}: {kind} {name} uses the synced Secret {ref}, whose "
                                  f"name never changes: annotate the Deployment "
                                  f"secret.reloader.stakater.com/reload: {ref} so a rotation "
                                  f"rolls it")
            elif not HASHED.search(str(ref)):
                fail("apply", f"{b.where}: {kind} {name} uses {ref_kind} {ref}, which is not "
                              f"generated: a change to it would not roll the pods")


def rolled(before_docs, after_docs):
    """Names of the Deployments whose pod template differs between two builds."""
    before = {d["metadata"]["name"]: d["spec"]["template"] for d in before_docs
              if d.get("kind") == "Deployment"}
    after = {d["metadata"]["name"]: d["spec"]["template"] for d in after_docs
             if d.get("kind") == "Deployment"}
    return {n for n in before if before[n] != after.get(n)}


def check_rolling():
    """A changed gateway setting rolls only the gateways; a changed secret every Deployment
    that reads the Secret."""
    if "example" not in builds:
        return
    base_docs = renders["example"]
    for variant, want in (("config", {"pulse-gateway"}),
                          ("secret", {"pulse-gateway", "pulse-poller", "pulse-web"})):
        path = os.path.join(renders_dir, f"example.{variant}.yaml")
        if not os.path.exists(path):
            continue
        got = rolled(base_docs, load_all(path))
        if got != want:
            fail("apply", f"overlay example: changing a {variant} value rolls "
                          f"{sorted(got) or 'nothing'}, expected {sorted(want)}")


def gateway_services(b):
    return {n for n, s in b.kind("Service").items()
            if any(service_of_image(c.get("image")) == "gateway"
                   for x in b.workloads if selects((s.get("spec") or {}).get("selector") or {},
                                                   x[3])
                   for c in x[2].get("containers") or [])}


def public_backends(b):
    """[(route, Service name, port spec, path type, path)] of every public route."""
    out = []
    for name, ing in b.kind("Ingress").items():
        for rule in (ing.get("spec") or {}).get("rules") or []:
            for p in ((rule.get("http") or {}).get("paths")) or []:
                svc = ((p.get("backend") or {}).get("service")) or {}
                out.append((f"Ingress {name}", svc.get("name"), svc.get("port") or {},
                            p.get("pathType"), p.get("path")))
    for name, route in b.kind("HTTPRoute").items():
        spec = route.get("spec") or {}
        if route.get("apiVersion") != "gateway.networking.k8s.io/v1":
            fail("kustomize", f"{b.where}: HTTPRoute {name}: apiVersion should be "
                              f"gateway.networking.k8s.io/v1")
        if not spec.get("parentRefs"):
            fail("kustomize", f"{b.where}: HTTPRoute {name} has no parentRefs")
        for rule in spec.get("rules") or []:
            matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
            for ref in rule.get("backendRefs") or []:
                if ref.get("kind", "Service") != "Service":
                    continue
                for m in matches:
                    path = m.get("path") or {"type": "PathPrefix", "value": "/"}
                    out.append((f"HTTPRoute {name}", ref.get("name"), {"number": ref.get("port")},
                                {"Exact": "Exact", "PathPrefix": "Prefix"}.get(
                                    path.get("type"), path.get("type")), path.get("value")))
    return out


def check_routes(b):
    gws = gateway_services(b)
    routes = public_backends(b)
    if not routes:
        fail("routes", f"{b.where}: no public route (Ingress or HTTPRoute)")
    seen = set()
    for route, svc_name, port, ptype, path in routes:
        svc = b.kind("Service").get(svc_name)
        if svc is None:
            fail("routes", f"{b.where}: {route}: backend Service {svc_name} does not exist")
            continue
        sports = b.service_ports(svc)
        match = [x for x in sports
                 if ("name" in port and x[0].get("name") == port["name"])
                 or ("number" in port and x[0].get("port") == port["number"])]
        if not match:
            fail("routes", f"{b.where}: {route}: Service {svc_name} has no port {port}")
        seen.add(svc_name)
        if svc_name in gws and (ptype, path) != ("Exact", WS_PATH):
            fail("routes", f"{b.where}: {route} sends {ptype} {path} to the gateways: only "
                           f"Exact {WS_PATH} may go there (their /metrics, /healthz and /readyz "
                           f"share the port)")
    for svc_name in gws:
        if svc_name not in seen:
            fail("routes", f"{b.where}: no public route reaches Service {svc_name}")


# --- policy ---------------------------------------------------------------------------------------
def peer_key(peer, own_ns):
    """(namespace or CIDR, pod labels) of a NetworkPolicy peer; None when it is too wide."""
    if "ipBlock" in peer:
        cidr = peer["ipBlock"].get("cidr")
        return None if cidr in ("0.0.0.0/0", "::/0") else (f"ipBlock {cidr}", ())
    ns_sel = peer.get("namespaceSelector")
    if ns_sel is None:
        ns = own_ns
    else:
        labels = ns_sel.get("matchLabels") or {}
        if not labels:
            return None
        ns = labels.get("kubernetes.io/metadata.name") or json.dumps(labels, sort_keys=True)
    pods = peer.get("podSelector")
    pod_labels = tuple(sorted(((pods or {}).get("matchLabels") or {}).items()))
    return ns, pod_labels


def policy_rules(policies, labels, own_ns, where):
    """For a pod with these labels: (isolated in, isolated out, {(dir, port, proto, peer)})."""
    iso_in = iso_out = False
    allowed = set()
    for pname, pol in policies.items():
        spec = pol.get("spec") or {}
        sel = spec.get("podSelector") or {}
        if sel.get("matchExpressions"):
            fail("policy", f"{where}: NetworkPolicy {pname}: matchExpressions are not "
                           f"understood by this check; use matchLabels")
        if (sel.get("matchLabels") or {}) and not selects(sel.get("matchLabels"), labels):
            continue
        types = spec.get("policyTypes") or ["Ingress"]
        iso_in = iso_in or "Ingress" in types
        iso_out = iso_out or "Egress" in types
        for direction, key, peers_key in (("in", "ingress", "from"), ("out", "egress", "to")):
            for rule in spec.get(key) or []:
                peers = rule.get(peers_key)
                ports = rule.get("ports")
                if not peers:
                    fail("policy", f"{where}: NetworkPolicy {pname} allows {direction} from/to "
                                   f"anywhere; name the peer")
                    continue
                if not ports:
                    fail("policy", f"{where}: NetworkPolicy {pname} allows every port "
                                   f"{direction}; name the ports")
                    continue
                for peer in peers:
                    k = peer_key(peer, own_ns)
                    if k is None:
                        fail("policy", f"{where}: NetworkPolicy {pname}: peer {peer} is any "
                                       f"namespace or address; name it")
                        continue
                    for p in ports:
                        allowed.add((direction, p.get("port"), p.get("protocol", "TCP"), k))
    return iso_in, iso_out, allowed


def url_port(url, default):
    try:
        parts = urlsplit(url.split(",")[0].strip())
        return parts.port or default, parts.hostname or ""
    except ValueError:
        return default, ""


def check_policy(b):
    policies = b.kind("NetworkPolicy")
    deny = [n for n, p in policies.items()
            if not ((p.get("spec") or {}).get("podSelector") or {}).get("matchLabels")
            and set((p.get("spec") or {}).get("policyTypes") or []) == {"Ingress", "Egress"}
            and not (p.get("spec") or {}).get("ingress") and not (p.get("spec") or {}).get(
                "egress")]
    if not deny:
        fail("policy", f"{b.where}: no default-deny NetworkPolicy (empty podSelector, both "
                       f"policyTypes, no rules)")
    public = {}
    for route, svc_name, port, _, _ in public_backends(b):
        svc = b.kind("Service").get(svc_name) or {}
        sel = (svc.get("spec") or {}).get("selector") or {}
        for sp, number, _ in b.service_ports(svc):
            if ("name" in port and sp.get("name") == port["name"]) or \
                    ("number" in port and sp.get("port") == port["number"]):
                for x in b.workloads:
                    if selects(sel, x[3]):
                        public.setdefault(x[1], set()).add(number)
    summary = []
    for kind, name, pod, labels, annotations, d in b.workloads:
        where = f"{b.where}: {kind} {name}"
        ns = (d.get("metadata") or {}).get("namespace")
        iso_in, iso_out, allowed = policy_rules(policies, labels, ns, where)
        if not (iso_in and iso_out):
            fail("policy", f"{where}: its pods are not isolated for "
                           f"{'ingress' if not iso_in else 'egress'}")
        env = {}
        for _, c in all_containers(pod):
            env.update({k: v for k, v in b.env(kind, name, c).items()})
        need_out = {(53, "UDP"): "cluster DNS", (53, "TCP"): "cluster DNS"}
        if "DATABASE_URL" in env:
            need_out[(5432, "TCP")] = "PostgreSQL (DATABASE_URL)"
        if "NATS_URL" in env:
            need_out[(4222, "TCP")] = "NATS (NATS_URL)"
        otel = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
        otel_ns = None
        if otel:
            port, host = url_port(otel, 4318)
            need_out[(port, "TCP")] = f"the OTLP collector ({otel})"
            labels_ = host.split(".")
            otel_ns = labels_[1] if len(labels_) > 2 and labels_[2] == "svc" else None
        ops = annotations.get("prometheus.io/port")
        need_in = {}
        for number in sorted(public.get(name, ())):
            need_in[(number, "TCP")] = "the ingress controller (public route)"
        if ops:
            need_in.setdefault((int(ops), "TCP"), "Prometheus (/metrics)")
        got_out = {}
        got_in = {}
        for direction, port, proto, peer in allowed:
            (got_out if direction == "out" else got_in).setdefault((port, proto), set()).add(peer)
        for key, what in need_out.items():
            if key not in got_out:
                fail("policy", f"{where} needs egress to {what} on {key[1]} {key[0]}, which no "
                               f"NetworkPolicy allows")
        for key, peers in got_out.items():
            if key not in need_out:
                fail("policy", f"{where}: NetworkPolicy allows egress to port {key[0]}/{key[1]} "
                               f"({', '.join(sorted(p[0] for p in peers))}), which it does not "
                               f"use")
                continue
            if key[0] == 53 and any(p[0] != "kube-system" for p in peers):
                fail("policy", f"{where}: DNS allowed to {sorted(peers)}, not only kube-system")
            if key == (4222, "TCP") and any(p[0] != "nats" for p in peers):
                fail("policy", f"{where}: NATS port allowed to {sorted(peers)}, not only "
                               f"namespace nats")
            if otel and key == (url_port(otel, 4318)[0], "TCP") and otel_ns and \
                    any(p[0] != otel_ns for p in peers):
                fail("policy", f"{where}: OTLP allowed to {sorted(peers)}, but the collector "
                               f"is in namespace {otel_ns}")
        for key, what in need_in.items():
            if key not in got_in:
                fail("policy", f"{where} needs ingress from {what} on port {key[0]}, which no "
                               f"NetworkPolicy allows")
        for key, peers in got_in.items():
            if key not in need_in:
                fail("policy", f"{where}: NetworkPolicy allows ingress on port {key[0]}/{key[1]}"
                               f", which serves nothing routed or scraped")
        # The ops port (when it is a port of its own) is for Prometheus only.
        if ops and int(ops) not in public.get(name, ()):
            pub_peers = set().union(*(got_in.get((p, "TCP"), set())
                                      for p in public.get(name, ())))
            leaked = pub_peers & got_in.get((int(ops), "TCP"), set())
            if leaked:
                fail("policy", f"{where}: the ops port {ops} is open to the ingress controller "
                               f"({sorted(leaked)})")
        summary.append(f"{name}: out {'+'.join(str(k[0]) for k in sorted(need_out) if k[0] != 53)}"
                       f"{'+' if len(need_out) > 2 else ''}dns, in "
                       f"{'+'.join(str(k[0]) for k in sorted(need_in))}")
    return summary


def check_nats_side(b):
    """deploy/k8s/nats/networkpolicy.yaml lets in on 4222 exactly the Pulse pods with NATS_URL."""
    path = "deploy/k8s/nats/networkpolicy.yaml"
    docs = docs_by_file.get(path) or []
    if not docs:
        fail("policy", f"{path} is missing")
        return
    peers = []
    for pol in docs:
        for rule in (pol.get("spec") or {}).get("ingress") or []:
            if any(p.get("port") == 4222 for p in rule.get("ports") or []):
                peers.extend(rule.get("from") or [])
    for kind, name, pod, labels, annotations, d in b.workloads:
        ns = (d.get("metadata") or {}).get("namespace")
        uses = any("NATS_URL" in {e.get("name") for e in c.get("env") or []}
                   for _, c in all_containers(pod))
        let_in = any(((p.get("namespaceSelector") or {}).get("matchLabels") or {}).get(
            "kubernetes.io/metadata.name") == ns
            and selects(((p.get("podSelector") or {}).get("matchLabels")) or {}, labels)
            for p in peers)
        if uses and not let_in:
            fail("policy", f"{path} does not let {kind} {name} (namespace {ns}) reach NATS, "
                           f"which it uses")
        if let_in and not uses:
            fail("policy", f"{path} lets {kind} {name} reach NATS, which it does not use")


policy_summary = []
for name, b in builds.items():
    check_structure(b)
    check_generated(b)
    check_routes(b)
    summary = check_policy(b)
    if name == "example" or not policy_summary:
        policy_summary = summary
    check_nats_side(b)
check_rolling()
if renders_dir:
    tool = "quick: no schema validation" if quick else \
        (f"{schema_counts['validated']} objects valid for Kubernetes "
         f"{K8S_VERSIONS[0]} and the newest schemas, {schema_counts['by hand']} CRD objects "
         f"checked by hand")
    if not count("kustomize"):
        say("kustomize", f"ok (base and {len(overlays)} overlays: {', '.join(overlays)}; "
                         f"{tool})")
    if not count("apply"):
        say("apply", "ok (builds are identical twice, no Secret or Job in the base, no replicas "
                     "under an HPA, generated or Reloader-watched config; a setting change rolls "
                     "only its Deployment, a secret change all that read it; migrations in "
                     "initContainers with the owner's login)")
    if not count("routes"):
        say("routes", f"ok (only Exact {WS_PATH} reaches the gateways, no ops port in a Service; "
                      f"zone and node spread)")
    if not count("policy"):
        say("policy", "ok (default deny; " + "; ".join(policy_summary) + "; the NATS side "
                      "agrees)")

# --- nats -----------------------------------------------------------------------------------------
nats_readme = "deploy/k8s/nats/README.md"
nats_values = "deploy/k8s/nats/values.yaml"


def hcl_users(text):
    """{user: (password reference, publish allow, subscribe allow)} from the README's hcl block."""
    m = re.search(r"```hcl\n(.*?)```", text, re.S)
    if not m:
        return None
    users = {}
    for block in re.split(r"\n\s*\{\s*\n\s*user:", m.group(1))[1:]:
        name = re.match(r"\s*([\w-]+)", block).group(1)
        pw = re.search(r"password:\s*(\$\w+)", block)
        pub = re.search(r"publish:\s*\{\s*allow:\s*\[(.*?)\]", block, re.S)
        sub = re.search(r"subscribe:\s*\{\s*allow:\s*\[(.*?)\]", block, re.S)
        users[name] = (pw.group(1) if pw else None,
                       sorted(re.findall(r'"([^"]+)"', pub.group(1))) if pub else [],
                       sorted(re.findall(r'"([^"]+)"', sub.group(1))) if sub else [])
    return users


nats_errors_before = len(errors)
hcl = hcl_users(read(nats_readme)) if os.path.exists(nats_readme) else None
values = first_doc(nats_values)
accounts = (((values.get("config") or {}).get("merge") or {}).get("accounts")) or {}
if not hcl:
    fail("nats", f"{nats_readme} has no ```hcl block with users")
elif "PULSE" not in accounts:
    fail("nats", f"{nats_values}: no account PULSE under config.merge.accounts")
else:
    acct = accounts["PULSE"]
    if str(acct.get("jetstream")) not in ("enabled", "True", "true"):
        fail("nats", f"{nats_values}: JetStream is not enabled for account PULSE")
    env = ((values.get("container") or {}).get("env")) or {}
    got = {}
    for u in acct.get("users") or []:
        perms = u.get("permissions") or {}
        pw = re.fullmatch(r"<<\s*(\$\w+)\s*>>", str(u.get("password", "")))
        got[u.get("user")] = (pw.group(1) if pw else None,
                              sorted((perms.get("publish") or {}).get("allow") or []),
                              sorted((perms.get("subscribe") or {}).get("allow") or []))
        if not pw:
            fail("nats", f"{nats_values}: user {u.get('user')}'s password is not a << $VAR >> "
                         f"reference to the server's environment")
        elif pw.group(1)[1:] not in env:
            fail("nats", f"{nats_values}: user {u.get('user')}'s password {pw.group(1)} is not "
                         f"set in container.env")
    for user in sorted(set(hcl) | set(got)):
        if user not in got:
            fail("nats", f"{nats_values}: no user {user} (in the README's hcl block)")
        elif user not in hcl:
            fail("nats", f"{nats_values}: user {user} is not in the README's hcl block")
        elif got[user] != hcl[user]:
            for i, what in ((0, "password"), (1, "publish allow"), (2, "subscribe allow")):
                if got[user][i] != hcl[user][i]:
                    a, b_ = got[user][i], hcl[user][i]
                    diff = (f"only in values: {sorted(set(a) - set(b_))}, only in the README: "
                            f"{sorted(set(b_) - set(a))}") if isinstance(a, list) else \
                        f"{a} vs {b_}"
                    fail("nats", f"{nats_values}: user {user}'s {what} differs from the README's "
                                 f"hcl block ({diff})")
    # Each service's NATS_URL names its own user.
    for name, b in builds.items():
        for kind, wname, pod, labels, annotations, d in b.workloads:
            for _, c in all_containers(pod):
                svc = service_of_image(c.get("image"))
                ref = b.secret_key_of(c, "NATS_URL")
                if not svc or not ref:
                    continue
                secret = b.kind("Secret").get(ref[0])
                value = ((secret or {}).get("stringData") or {}).get(ref[1])
                if value is None and secret and ref[1] in (secret.get("data") or {}):
                    import base64
                    value = base64.b64decode(secret["data"][ref[1]]).decode()
                if value is not None and urlsplit(value).username != f"pulse-{svc}":
                    fail("nats", f"overlay {name}: {kind} {wname}'s NATS_URL ({ref[1]}) does not "
                                 f"log in as pulse-{svc}")
# The configuration the chart writes from config.merge (JSON, with `<< $VAR >>` unquoted),
# tested by the real server with passwords in its environment, as the chart's pod has them.
nats_server_note = ""
nats_server = shutil.which("nats-server") or ("/usr/sbin/nats-server"
                                              if os.path.exists("/usr/sbin/nats-server") else None)
if accounts and nats_server and not quick:
    conf = json.dumps({"accounts": accounts}, indent=2)
    conf = re.sub(r'"<<\s+(.*?)\s+>>"', r"\1", conf)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "nats.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(conf)
        env = dict(os.environ)
        for var in (((values.get("container") or {}).get("env")) or {}):
            env[var] = "p0123456789abcdef"
        run = subprocess.run([nats_server, "-t", "-c", path], env=env, capture_output=True,
                             text=True, timeout=30)
        if run.returncode != 0:
            fail("nats", f"{nats_values}: nats-server rejects the accounts: "
                         f"{(run.stderr or run.stdout).strip()}")
        else:
            nats_server_note = "nats-server -t accepts them"
if len(errors) == nats_errors_before:
    say("nats", f"ok (users {', '.join(sorted(hcl or {}))} in {nats_values} with exactly the "
                f"README's permissions, passwords from the server's environment"
                f"{'; ' + nats_server_note if nats_server_note else ''})")

# --- autoscale ------------------------------------------------------------------------------------
adapter_path = "deploy/k8s/prometheus-adapter/values.yaml"
pods_job = "deploy/prometheus/kubernetes-pods.yml"
scale_errors_before = len(errors)
adapter_rules = ((first_doc(adapter_path).get("rules") or {}).get("custom")) or []
served = {}
for r in adapter_rules:
    series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", str(r.get("seriesQuery", "")))
    name_as = ((r.get("name") or {}).get("as")) or (series.group(1) if series else None)
    served[name_as] = (series.group(1) if series else None, r)
relabelled = {rc.get("target_label") for job in first_doc(pods_job).get("scrape_configs") or []
              for rc in job.get("relabel_configs") or []}


def alert_cap():
    for group in first_doc("deploy/prometheus/alerts.yml").get("groups") or []:
        for rule in group.get("rules") or []:
            m = re.search(r"pulse_gateway_connections\b[^>]*>\s*([0-9.]+)\s*\*\s*([0-9]+)",
                          str(rule.get("expr", "")))
            if m:
                return float(m.group(1)), int(m.group(2)), rule.get("alert")
    return None


cap_rule = alert_cap()
hpa_notes = []
for bname, b in builds.items():
    for hname, hpa in b.kind("HorizontalPodAutoscaler").items():
        spec = hpa.get("spec") or {}
        kinds = [m.get("type") for m in spec.get("metrics") or []]
        if "Pods" not in kinds or "Resource" not in kinds:
            fail("autoscale", f"overlay {bname}: HPA {hname} should scale on a pods metric "
                              f"(connections) and CPU (found {kinds})")
        for m in spec.get("metrics") or []:
            if m.get("type") != "Pods":
                continue
            metric = ((m.get("pods") or {}).get("metric") or {}).get("name")
            target = ((m.get("pods") or {}).get("target")) or {}
            if metric not in served:
                fail("autoscale", f"overlay {bname}: HPA {hname} scales on {metric}, which no "
                                  f"rule in {adapter_path} serves")
                continue
            series, rule = served[metric]
            why = registered(series) if series else "no seriesQuery"
            if why:
                fail("autoscale", f"{adapter_path}: {metric} comes from {series}: {why}")
            for label in ((rule.get("resources") or {}).get("overrides") or {}):
                if label not in relabelled:
                    fail("autoscale", f"{adapter_path} maps label {label} to a resource, but "
                                      f"{pods_job} sets no such label")
            if metric == "pulse_gateway_connections":
                value = float(str(target.get("averageValue", "0")))
                if cap_rule is None:
                    fail("autoscale", "no alert on pulse_gateway_connections > share * cap in "
                                      "deploy/prometheus/alerts.yml")
                elif value >= cap_rule[0] * cap_rule[1]:
                    fail("autoscale", f"overlay {bname}: HPA {hname} aims at {value:g} "
                                      f"connections per pod, not below the alert threshold "
                                      f"{cap_rule[0] * cap_rule[1]:g}")
                hpa_notes.append(f"{value:g} connections per pod")
if len(errors) == scale_errors_before and builds:
    say("autoscale", f"ok (gateway HPA on {', '.join(sorted(set(hpa_notes)))} and CPU; the "
                     f"adapter rule serves it from labels {pods_job} sets)")

# --- alerts ---------------------------------------------------------------------------------------
alerts_path = "deploy/prometheus/alerts.yml"
alert_errors_before = len(errors)
alert_metrics = set()
pending = set()
service_values = scrape_services | {f"pulse-{s}" for s in SERVICES}
groups = first_doc(alerts_path).get("groups") or []
nrules = 0
for group in groups:
    for rule in group.get("rules") or []:
        nrules += 1
        expr = str(rule.get("expr", ""))
        for metric in re.findall(r"\b((?:pulse_(?:gateway|poller|web)|process)_[a-z0-9_]+)", expr):
            alert_metrics.add(metric)
            if metric.startswith("process_"):
                state = process_metric_state(metric)
                if state == "pending":
                    pending.add(metric)
                elif state == "no" and have_sources:
                    fail("alerts", f"alert {rule.get('alert')} uses {metric}, which no service "
                                   f"exports")
            elif have_sources:
                why = registered(metric)
                if why:
                    fail("alerts", f"alert {rule.get('alert')} uses {metric}: {why}")
        for value in re.findall(r'service="([^"]+)"', expr):
            if value not in service_values:
                fail("alerts", f"alert {rule.get('alert')} selects service=\"{value}\", a label "
                               f"no scrape job sets")
for needed in ("pulse_poller_active", "pulse_gateway_connections",
               "pulse_gateway_nats_slow_consumer_total",
               "pulse_gateway_fanout_latency_seconds_bucket", "process_open_fds",
               "process_max_fds"):
    if needed not in alert_metrics:
        fail("alerts", f"no alert rule uses {needed}")
# The connection alert's threshold: CAP_SHARE of the gateways' PULSE_MAX_CONNECTIONS.
if cap_rule is None:
    fail("alerts", "no alert on pulse_gateway_connections > share * cap")
else:
    share, cap, alert = cap_rule
    if share != CAP_SHARE:
        fail("alerts", f"alert {alert} fires at {share:g} of the cap, not {CAP_SHARE:g}")
    k8s_caps = {int(e.get("PULSE_MAX_CONNECTIONS") or readme_default("PULSE_MAX_CONNECTIONS"))
                for where, svc, e in env_uses if svc == "gateway" and where.startswith("overlay")}
    if builds and k8s_caps != {cap}:
        fail("alerts", f"alert {alert} assumes PULSE_MAX_CONNECTIONS={cap}, the Kubernetes "
                       f"gateways have {sorted(k8s_caps)}")
test_path = "deploy/prometheus/alerts.test.yml"
if os.path.basename(alerts_path) not in (first_doc(test_path).get("rule_files") or []):
    fail("alerts", f"{test_path} does not test {alerts_path}")
if len(errors) == alert_errors_before:
    note = f"; {', '.join(sorted(pending))} not exported by the services yet" if pending else ""
    say("alerts", f"ok ({nrules} rules, {len(alert_metrics)} metrics, all registered{note}; "
                  f"connections alert at {CAP_SHARE:g} x {cap_rule[1] if cap_rule else '?'}; "
                  f"{promtool_note})")
# --- env ------------------------------------------------------------------------------------------
env_errors_before = len(errors)
checked = set()
for where, svc, env in env_uses:
    for var in env:
        if var.startswith("PULSE_"):
            checked.add(var)
            if var not in documented:
                fail("env", f"{where} sets {var}, which README.md does not document "
                            f"(a name no service reads?)")
        if svc and reads and var in read_by_any and var not in reads[svc]:
            fail("env", f"{where} sets {var}, which pulse-{svc} does not read "
                        f"(only {', '.join(sorted(s for s in SERVICES if var in reads[s]))} do)")
# ConfigMaps and Secrets may hold variables no container picks up yet; they must still be real.
for b in builds.values():
    for kind, store in (("ConfigMap", b.configmaps), ("Secret", b.secrets)):
        for name, data in store.items():
            for var in data:
                if var.startswith("PULSE_"):
                    checked.add(var)
                    if var not in documented:
                        fail("env", f"{b.where}: {kind} {name} has {var}, which README.md does "
                                    f"not document")
if len(errors) == env_errors_before:
    extra = "and each only where its service reads it" if reads else \
        "(service sources not found: per-service check skipped)"
    say("env", f"ok ({len(checked)} PULSE_* variables, all documented in README.md, {extra})")

# --- drain ----------------------------------------------------------------------------------------
drain_errors_before = len(errors)
default_drain = readme_default("PULSE_DRAIN_SECONDS")
default_drain = float(default_drain) if default_drain else 10.0
notes = []


def seconds(text, default):
    if text is None:
        return default
    if isinstance(text, (int, float)):
        return float(text)
    total, found = 0.0, False
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text)):
        found = True
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
    return total if found else float(text)


def prestop_seconds(c):
    pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre:
        return float(pre["sleep"].get("seconds", 0))
    cmd = " ".join(map(str, ((pre.get("exec") or {}).get("command")) or []))
    m = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", cmd)
    return float(m.group(1)) if m else 0.0


gateways = 0
all_workloads = [w + (b,) for b in builds.values() for w in b.workloads]
for kind, name, pod, labels, annotations, d, b in all_workloads:
    for c in pod.get("containers") or []:
        if service_of_image(c.get("image")) != "gateway":
            continue
        gateways += 1
        env = b.env(kind, name, c)
        drain = float(env["PULSE_DRAIN_SECONDS"]) if env.get("PULSE_DRAIN_SECONDS") \
            else default_drain
        grace = float(pod.get("terminationGracePeriodSeconds", 30))
        pre = prestop_seconds(c)
        need = pre + drain + GATEWAY_EXTRA_SECONDS
        if grace <= need:
            fail("drain", f"{b.where}: {kind} {name}: terminationGracePeriodSeconds {grace:g} "
                          f"must exceed "
                          f"preStop {pre:g} s + PULSE_DRAIN_SECONDS {drain:g} + "
                          f"{GATEWAY_EXTRA_SECONDS} s = {need:g} s")
        if grace <= drain:
            fail("drain", f"{b.where}: {kind} {name}: terminationGracePeriodSeconds {grace:g} "
                          f"does not exceed PULSE_DRAIN_SECONDS {drain:g}")
        notes.append(f"{name}: grace {grace:g} s > preStop {pre:g} + drain {drain:g} + "
                     f"{GATEWAY_EXTRA_SECONDS}")
for name, svc in services.items():
    if compose_service_of.get(name) != "gateway":
        continue
    gateways += 1
    env = compose_env(svc or {})
    drain = float(env["PULSE_DRAIN_SECONDS"]) if env.get("PULSE_DRAIN_SECONDS") else default_drain
    grace = seconds((svc or {}).get("stop_grace_period"), 10.0)
    need = drain + GATEWAY_EXTRA_SECONDS
    if grace <= need:
        fail("drain", f"compose service {name}: stop_grace_period {grace:g} s must exceed "
                      f"PULSE_DRAIN_SECONDS {drain:g} + {GATEWAY_EXTRA_SECONDS} s")
    notes.append(f"compose {name}: stop_grace_period {grace:g} s > drain {drain:g} + "
                 f"{GATEWAY_EXTRA_SECONDS}")
if gateways == 0:
    fail("drain", "found no gateway in the Kubernetes overlays or docker-compose.yml")
if len(errors) == drain_errors_before:
    say("drain", "ok (" + "; ".join(sorted(set(notes))) + ")")

# --- dashboard ------------------------------------------------------------------------------------
dash_errors_before = len(errors)
dashboards = sorted(glob.glob("deploy/grafana/*.json"))
metric_names = set()
for path in dashboards:
    try:
        dash = json.loads(read(path))
    except ValueError:
        continue  # reported by the json check
    ids = []
    exprs = []

    def walk(panels):
        for p in panels or []:
            ids.append(p.get("id"))
            for t in p.get("targets") or []:
                if t.get("expr"):
                    exprs.append((p.get("title"), t["expr"]))
            walk(p.get("panels"))

    walk(dash.get("panels"))
    if len(ids) != len(set(ids)):
        fail("dashboard", f"{path}: panel ids are not unique")
    if not exprs:
        fail("dashboard", f"{path}: no queries")
    variables = {v.get("name") for v in (dash.get("templating") or {}).get("list") or []}
    if "datasource" not in variables:
        fail("dashboard", f"{path}: no `datasource` variable")
    for title, expr in exprs:
        for metric in re.findall(r"\b(pulse_(?:gateway|poller|web)_[a-z0-9_]+)", expr):
            metric_names.add(metric)
            why = registered(metric) if have_sources else None
            if why:
                fail("dashboard", f"{path}: panel '{title}' uses {metric}, but {why}")
if not dashboards:
    fail("dashboard", "no Grafana dashboard under deploy/grafana/")
if len(errors) == dash_errors_before:
    say("dashboard", f"ok ({len(dashboards)} dashboard(s), {len(metric_names)} metrics, "
                     f"all registered by the services)")

if errors:
    for e in errors:
        print(f"pulse: error: check-deploy: {e}", file=sys.stderr)
    sys.exit(1)
PY
)"

# check TREE OUT [full]: render TREE's manifests into OUT and run the checks on TREE; prints the
# failures, exits non-zero on any.
check() {
  local tree="$1" out="$2" full="${3:-}" renders="" rendered=0 checked=0
  if ((${#kustomize_cmd[@]})); then
    render "$tree" "$out" "$full" || rendered=1
    renders="$out"
  fi
  (cd "$tree" && python3 -c "$checker" "$compose_tool" "$renders" "$promtool_note") || checked=1
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
  fault "no zone spread" "pulse-gateway is not spread over topology.kubernetes.io/zone" \
    "sed -i 's#topologyKey: topology.kubernetes.io/zone#topologyKey: kubernetes.io/hostname#' deploy/k8s/base/gateway-deployment.yaml"
  fault "the gateways on a prefix route" "sends Prefix / to the gateways" \
    "perl -0pi -e 's#path: /api/v2/ws\n            pathType: Exact#path: /\n            pathType: Prefix#' deploy/k8s/base/ingress.yaml"
  fault "the web ops port in its Service" "exposes the ops port 9080" \
    "printf '    - {name: ops, port: 9080, targetPort: ops}\n' >>deploy/k8s/base/web-service.yaml"
  FAULT_QUICK=0 fault "an unknown field" "Additional properties are not allowed" \
    "sed -i 's/^          startupProbe:/          startupProbes:/' deploy/k8s/base/poller-deployment.yaml"
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
fault "alert rules not mounted in compose" "compose mounts .*alerts.yml at nowhere" \
  "sed -i '/alerts.yml:\\/etc\\/prometheus\\/alerts.yml/d' docker-compose.yml"
faults_done
log "check-deploy: self-test: ok ($faults faults, each caught)"
log "check-deploy: all deployment checks passed"
