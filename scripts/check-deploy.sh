#!/usr/bin/env bash
# Offline checks of the deployment files: Dockerfile, docker-compose.yml and everything under
# deploy/ (compose configs, Kubernetes manifests, Prometheus and Grafana). No container engine,
# cluster or network is needed; a check that needs a tool falls back to a plain parse when the
# tool is missing.
#
# Checks, one summary line each:
#   yaml        every YAML file (all documents) parses
#   json        every JSON file parses (python3 -m json.tool)
#   compose     docker-compose.yml: `docker compose config -q` when the compose plugin is there,
#               and its structure: images/build targets, depends_on, mounted files, health
#               checks, the proxy's upstreams and Prometheus' targets
#   kustomize   deploy/k8s/base builds (kubectl kustomize, else every listed file exists and
#               parses) and hangs together: selectors, references to ConfigMaps/Secrets and
#               Services, probes, security context, resources, scrape annotations
#   env         every PULSE_* variable the manifests set is documented in README.md, and no
#               service is given a variable that only another service reads
#   drain       the gateways' termination grace outlasts preStop + PULSE_DRAIN_SECONDS
#   dashboard   the Grafana dashboard only uses metrics the services register
#
# Exits non-zero with the reasons when a check fails.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PULSE_ROOT"

have python3 || die "python3 is needed to check the deployment files"
if ! python3 -c 'import yaml' 2>/dev/null; then
  log "PyYAML is missing; installing it with pip"
  python3 -m pip install --quiet pyyaml >&2 \
    || die "PyYAML is missing and could not be installed (python3 -m pip install pyyaml)"
fi

for f in Dockerfile docker-compose.yml deploy/k8s/base/kustomization.yaml; do
  [[ -f "$f" ]] || die "missing $f"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

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

# --- kustomize: render the base -------------------------------------------------------------------
kustomize_tool="none"
if have kubectl; then
  kubectl kustomize deploy/k8s/base >"$tmp/k8s.yaml" 2>"$tmp/kustomize.err" \
    || die "kustomize: kubectl kustomize deploy/k8s/base failed: $(cat "$tmp/kustomize.err")"
  kustomize_tool="kubectl kustomize"
elif have kustomize; then
  kustomize build deploy/k8s/base >"$tmp/k8s.yaml" 2>"$tmp/kustomize.err" \
    || die "kustomize: kustomize build deploy/k8s/base failed: $(cat "$tmp/kustomize.err")"
  kustomize_tool="kustomize build"
fi

# --- everything else ------------------------------------------------------------------------------
python3 - "$compose_tool" "$kustomize_tool" "$tmp/k8s.yaml" <<'PY'
import glob
import json
import os
import re
import sys

import yaml

compose_tool, kustomize_tool, rendered_path = sys.argv[1:4]
errors = []

# The gateway keeps this long past PULSE_DRAIN_SECONDS before it gives up on the last clients
# (services/gateway/src/lib.rs: drain deadline = drain + 2 s).
GATEWAY_EXTRA_SECONDS = 2
# Our images, by the name of the service each runs.
SERVICES = ("poller", "gateway", "web")


def say(check, text):
    print(f"pulse: check-deploy: {check}: {text}", file=sys.stderr)


def fail(check, text):
    errors.append(f"{check}: {text}")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_all(path):
    return [d for d in yaml.safe_load_all(read(path)) if d is not None]


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
if not any(e.startswith("yaml:") for e in errors):
    say("yaml", f"ok ({len(yaml_files)} files, {ndocs} documents parse)")

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

# (where, service or None, {name: value or None}) for every container the manifests define.
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
stage = None
for line in dockerfile.splitlines():
    m = re.match(r"(?i)^FROM\s+\S+(?:\s+AS\s+(\S+))?", line)
    if m:
        stage = (m.group(1) or "").lower()
        continue
    m = re.match(r"(?i)^ENV\s+(.*)", line)
    if m:
        names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", m.group(1))
        env_uses.append((f"Dockerfile stage {stage}", stage if stage in SERVICES else None,
                         {n: None for n in names}))

# --- compose --------------------------------------------------------------------------------------
compose_docs = docs_by_file.get("docker-compose.yml") or [{}]
compose = compose_docs[0] or {}
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
    for vol in svc.get("volumes") or []:
        src = vol.get("source") if isinstance(vol, dict) else str(vol).split(":")[0]
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
            test = " ".join(map(str, hc["test"])) if isinstance(hc["test"], list) else hc["test"]
            if "/readyz" not in test:
                fail("compose", f"service {name}: health check should use /readyz")
    else:
        fail("compose", f"service {name} has no healthcheck (add one, or disable it explicitly "
                        f"with a comment saying why)")
    env_uses.append((f"docker-compose.yml service {name}", pulse_service, compose_env(svc)))

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
if prom in docs_by_file and docs_by_file[prom]:
    for job in docs_by_file[prom][0].get("scrape_configs") or []:
        for sc in job.get("static_configs") or []:
            for t in sc.get("targets") or []:
                host = str(t).rsplit(":", 1)[0]
                if host not in services and host != "localhost":
                    fail("compose", f"{prom}: job {job.get('job_name')} scrapes {t}, "
                                    f"not a compose service")
if len(errors) == compose_errors_before:
    tool = "docker compose config -q, " if compose_tool != "none" else \
        "no docker compose plugin, parsed with python; "
    say("compose", f"ok ({tool}{len(services)} services, {healthchecked} health checks, "
                   f"disabled with a reason: {', '.join(disabled_checks) or 'none'})")

# --- kustomize ------------------------------------------------------------------------------------
k8s_errors_before = len(errors)
base = "deploy/k8s/base"
kust = (docs_by_file.get(f"{base}/kustomization.yaml") or [{}])[0] or {}
if kustomize_tool != "none":
    k8s_docs = [d for d in yaml.safe_load_all(read(rendered_path)) if d]
else:
    # No kustomize: every listed resource must exist and parse; check them as they are.
    k8s_docs = []

    def collect(directory, kustomization):
        for res in kustomization.get("resources") or []:
            path = os.path.normpath(os.path.join(directory, res))
            if os.path.isdir(path):
                kfile = os.path.join(path, "kustomization.yaml")
                if not os.path.exists(kfile):
                    fail("kustomize", f"{path} has no kustomization.yaml")
                    continue
                collect(path, load_all(kfile)[0] or {})
            elif not os.path.exists(path):
                fail("kustomize", f"{directory}/kustomization.yaml lists {res}, which is missing")
            else:
                try:
                    k8s_docs.extend(load_all(path))
                except yaml.YAMLError as e:
                    fail("kustomize", f"{path} does not parse: {e}")

    collect(base, kust)
    ns = kust.get("namespace")
    for d in k8s_docs:
        if ns and d.get("kind") != "Namespace":
            d.setdefault("metadata", {}).setdefault("namespace", ns)

by_kind = {}
for d in k8s_docs:
    if not isinstance(d, dict) or "kind" not in d:
        fail("kustomize", f"a document without kind: {str(d)[:80]}")
        continue
    by_kind.setdefault(d["kind"], {})[d.get("metadata", {}).get("name")] = d

workloads = []  # (kind, name, pod spec, pod labels, pod annotations)
for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
    for name, d in (by_kind.get(kind) or {}).items():
        spec = d.get("spec") or {}
        tmpl = spec.get("template") or {}
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        annotations = (tmpl.get("metadata") or {}).get("annotations") or {}
        workloads.append((kind, name, tmpl.get("spec") or {}, labels, annotations, d))
        if kind != "Job":
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                fail("kustomize", f"{kind} {name}: selector {sel} does not match its pod labels")


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def matching(selector):
    return [w for w in workloads if selects(selector, w[3])]


for name, svc in (by_kind.get("Service") or {}).items():
    sel = (svc.get("spec") or {}).get("selector") or {}
    found = matching(sel)
    if not found:
        fail("kustomize", f"Service {name}: selector {sel} matches no pods")
    ports = {c_port.get("name"): c_port.get("containerPort")
             for w in found for c in w[2].get("containers") or []
             for c_port in c.get("ports") or []}
    for p in (svc.get("spec") or {}).get("ports") or []:
        tp = p.get("targetPort", p.get("port"))
        if isinstance(tp, str) and tp not in ports:
            fail("kustomize", f"Service {name}: targetPort {tp} is no container port name")
        if isinstance(tp, int) and tp not in ports.values():
            fail("kustomize", f"Service {name}: targetPort {tp} is no container port")
    affinity = (svc.get("spec") or {}).get("sessionAffinity", "None")
    if name == "pulse-gateway" and affinity != "None":
        fail("kustomize", "Service pulse-gateway: sessionAffinity must be None")
for name, pdb in (by_kind.get("PodDisruptionBudget") or {}).items():
    sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not matching(sel):
        fail("kustomize", f"PodDisruptionBudget {name}: selector {sel} matches no pods")
for name, hpa in (by_kind.get("HorizontalPodAutoscaler") or {}).items():
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    if ref.get("name") not in (by_kind.get(ref.get("kind")) or {}):
        fail("kustomize", f"HorizontalPodAutoscaler {name}: target {ref} does not exist")
for name, ing in (by_kind.get("Ingress") or {}).items():
    for rule in (ing.get("spec") or {}).get("rules") or []:
        for p in ((rule.get("http") or {}).get("paths")) or []:
            svc = ((p.get("backend") or {}).get("service")) or {}
            target = (by_kind.get("Service") or {}).get(svc.get("name"))
            if target is None:
                fail("kustomize", f"Ingress {name}: backend Service {svc.get('name')} "
                                  f"does not exist")
                continue
            port = svc.get("port") or {}
            names = {sp.get("name") for sp in target["spec"].get("ports") or []}
            numbers = {sp.get("port") for sp in target["spec"].get("ports") or []}
            if ("name" in port and port["name"] not in names) or \
                    ("number" in port and port["number"] not in numbers):
                fail("kustomize", f"Ingress {name}: Service {svc['name']} has no port {port}")

configmaps = {n: (d.get("data") or {}) for n, d in (by_kind.get("ConfigMap") or {}).items()}
secrets = {n: {**(d.get("data") or {}), **(d.get("stringData") or {})}
           for n, d in (by_kind.get("Secret") or {}).items()}


def container_env(kind, name, c):
    """The environment of container c as {name: value or None}, references checked."""
    env = {}
    for src in c.get("envFrom") or []:
        if "configMapRef" in src:
            ref = src["configMapRef"]
            if ref.get("name") not in configmaps:
                if not ref.get("optional"):
                    fail("kustomize", f"{kind} {name}: envFrom ConfigMap {ref.get('name')} "
                                      f"does not exist")
                continue
            env.update({k: str(v) for k, v in configmaps[ref["name"]].items()})
        if "secretRef" in src:
            ref = src["secretRef"]
            if ref.get("name") not in secrets:
                if not ref.get("optional"):
                    fail("kustomize", f"{kind} {name}: envFrom Secret {ref.get('name')} "
                                      f"does not exist")
                continue
            env.update({k: None for k in secrets[ref["name"]]})
    for e in c.get("env") or []:
        value = e.get("value")
        vf = e.get("valueFrom") or {}
        for key, store in (("configMapKeyRef", configmaps), ("secretKeyRef", secrets)):
            ref = vf.get(key)
            if not ref:
                continue
            present = ref.get("name") in store and ref.get("key") in store[ref.get("name")]
            if not present and not ref.get("optional"):
                fail("kustomize", f"{kind} {name}: {e['name']} refers to {key} "
                                  f"{ref.get('name')}/{ref.get('key')}, which does not exist")
            if key == "configMapKeyRef" and present:
                value = configmaps[ref["name"]][ref["key"]]
        env[e["name"]] = None if value is None else str(value)
    return env


pulse_containers = 0
for kind, name, pod, labels, annotations, d in workloads:
    ctx = pod.get("securityContext") or {}
    for c in pod.get("containers") or []:
        svc = service_of_image(c.get("image"))
        env = container_env(kind, name, c)
        env_uses.append((f"{kind} {name} container {c.get('name')}", svc, env))
        if not svc:
            continue
        pulse_containers += 1
        where = f"{kind} {name} container {c.get('name')}"
        csc = c.get("securityContext") or {}
        if not (csc.get("runAsNonRoot", ctx.get("runAsNonRoot"))):
            fail("kustomize", f"{where}: runAsNonRoot is not set")
        if not csc.get("readOnlyRootFilesystem"):
            fail("kustomize", f"{where}: readOnlyRootFilesystem is not set")
        res = c.get("resources") or {}
        if not res.get("requests") or not res.get("limits"):
            fail("kustomize", f"{where}: resource requests and limits are required")
        if kind == "Job":
            continue
        probes = {p: ((c.get(p) or {}).get("httpGet") or {}).get("path")
                  for p in ("readinessProbe", "livenessProbe")}
        if probes["readinessProbe"] != "/readyz" or probes["livenessProbe"] != "/healthz":
            fail("kustomize", f"{where}: readinessProbe must GET /readyz and livenessProbe "
                              f"/healthz (found {probes})")
        if annotations.get("prometheus.io/scrape") != "true":
            fail("kustomize", f"{kind} {name}: pods lack prometheus.io/scrape: \"true\"")
        port = str(annotations.get("prometheus.io/port", ""))
        cports = {str(p.get("containerPort")) for p in c.get("ports") or []}
        if port not in cports:
            fail("kustomize", f"{kind} {name}: prometheus.io/port {port or '(unset)'} is not a "
                              f"container port ({', '.join(sorted(cports))})")
if pulse_containers == 0:
    fail("kustomize", "no Pulse containers found in the rendered base")
if len(errors) == k8s_errors_before:
    how = kustomize_tool if kustomize_tool != "none" else \
        "no kubectl/kustomize; listed files exist and parse"
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
    say("kustomize", f"ok ({how}; {kinds})")

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
for kind, store in (("ConfigMap", configmaps), ("Secret", secrets)):
    for name, data in store.items():
        for var in data:
            if var.startswith("PULSE_"):
                checked.add(var)
                if var not in documented:
                    fail("env", f"{kind} {name} has {var}, which README.md does not document")
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
for kind, name, pod, labels, annotations, d in workloads:
    for c in pod.get("containers") or []:
        if service_of_image(c.get("image")) != "gateway":
            continue
        gateways += 1
        env = container_env(kind, name, c)
        drain = float(env["PULSE_DRAIN_SECONDS"]) if env.get("PULSE_DRAIN_SECONDS") \
            else default_drain
        grace = float(pod.get("terminationGracePeriodSeconds", 30))
        pre = prestop_seconds(c)
        need = pre + drain + GATEWAY_EXTRA_SECONDS
        if grace <= need:
            fail("drain", f"{kind} {name}: terminationGracePeriodSeconds {grace:g} must exceed "
                          f"preStop {pre:g} s + PULSE_DRAIN_SECONDS {drain:g} + "
                          f"{GATEWAY_EXTRA_SECONDS} s = {need:g} s")
        if grace <= drain:
            fail("drain", f"{kind} {name}: terminationGracePeriodSeconds {grace:g} does not "
                          f"exceed PULSE_DRAIN_SECONDS {drain:g}")
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
    fail("drain", "found no gateway in the Kubernetes base or docker-compose.yml")
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
            if not have_sources:
                continue
            prefix, svc = re.match(r"(pulse_(gateway|poller|web))_", metric).groups()
            base_name = re.sub(r"_(total|bucket|sum|count)$", "", metric[len(prefix) + 1:])
            text = "".join(read(p) for p in glob.glob(f"services/{svc}/src/**/*.rs",
                                                       recursive=True))
            if f'"{base_name}"' not in text:
                fail("dashboard", f"{path}: panel '{title}' uses {metric}, but pulse-{svc} "
                                  f"registers no metric \"{base_name}\"")
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
log "check-deploy: all deployment checks passed"
