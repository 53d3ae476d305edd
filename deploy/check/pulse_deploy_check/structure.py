"""How the objects of one build hang together (check `kustomize`, with routes and apply).

Selectors that match pods, Services whose targetPorts are container ports, PDBs and HPAs
that point at something, and for every Pulse container: non-root, read-only root, no
privilege escalation, requests and limits, startup/readiness/liveness probes on the right
paths and a scrape annotation naming a real port. Deployments also get the spread and
migration checks. Records each container's environment for the env check.
"""

from .apply import check_migrations
from .builds import all_containers, selects
from .images import service_of_image
from .routes import check_spread


def check_objects(b):
    """Services, PodDisruptionBudgets, HorizontalPodAutoscalers and Jobs."""
    w = b.where
    fail = b.ctx.fail
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


def check_container(b, cw, where, kind, role, c, ctx_sc, annotations):
    """One Pulse container: security context, resources, probes, scrape annotation."""
    fail = b.ctx.fail
    csc = c.get("securityContext") or {}
    if not csc.get("runAsNonRoot", ctx_sc.get("runAsNonRoot")):
        fail("kustomize", f"{cw}: runAsNonRoot is not set")
    if not csc.get("readOnlyRootFilesystem"):
        fail("kustomize", f"{cw}: readOnlyRootFilesystem is not set")
    if csc.get("allowPrivilegeEscalation") is not False:
        fail("kustomize", f"{cw}: allowPrivilegeEscalation must be false")
    res = c.get("resources") or {}
    if not res.get("requests") or not res.get("limits"):
        fail("kustomize", f"{cw}: resource requests and limits are required")
    # The images are distroless: no shell, no `sleep`. A hook or probe that execs a command
    # fails on every run (a preStop that fails is skipped, and its wait with it).
    hooks = {f"lifecycle.{h}": (c.get("lifecycle") or {}).get(h) for h in ("preStop", "postStart")}
    hooks.update({p: c.get(p) for p in ("startupProbe", "readinessProbe", "livenessProbe")})
    for name, hook in hooks.items():
        if hook and "exec" in hook:
            fail("kustomize", f"{cw}: {name} execs {hook['exec'].get('command')}, but the "
                              f"image has no shell or tools to run; use httpGet, or "
                              f"Kubernetes' sleep action")
    if role == "initContainer" or kind in ("Job", "CronJob"):
        return
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


def check_structure(b):
    check_objects(b)
    pulse = 0
    for kind, name, pod, labels, annotations, d in b.workloads:
        ctx_sc = pod.get("securityContext") or {}
        where = f"{b.where}: {kind} {name}"
        for role, c in all_containers(pod):
            svc = service_of_image(c.get("image"))
            env = b.env(kind, name, c)
            b.ctx.env_uses.append((f"{where} {role} {c.get('name')}", svc, env))
            if not svc:
                continue
            pulse += 1
            check_container(b, f"{where} {role} {c.get('name')}", where, kind, role, c, ctx_sc,
                            annotations)
        if kind == "Deployment":
            check_spread(b, name, pod, labels)
            check_migrations(b, kind, name, pod)
    if pulse == 0:
        b.ctx.fail("kustomize", f"{b.where}: no Pulse containers")
