"""The public routes and the spread of the pods (check `routes`).

The manifests move the gateways' /metrics, /healthz and /readyz to a port of their own
(PULSE_GATEWAY_OPS_ADDR); without it they are on the WebSocket's port, so a public route may
still send the gateways only Exact /api/v2/ws. No Service may expose an ops port; every
Deployment spreads over zones and nodes so one failure takes only part of it.
"""

from .builds import selects
from .images import service_of_image

# The only path the public routes may send to the gateways.
WS_PATH = "/api/v2/ws"


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
            b.ctx.fail("routes", f"{b.where}: Deployment {name} is not spread over {key} (a "
                                 f"topologySpreadConstraint or pod anti-affinity selecting its "
                                 f"pods)")


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
            b.ctx.fail("kustomize", f"{b.where}: HTTPRoute {name}: apiVersion should be "
                                    f"gateway.networking.k8s.io/v1")
        if not spec.get("parentRefs"):
            b.ctx.fail("kustomize", f"{b.where}: HTTPRoute {name} has no parentRefs")
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
    fail = b.ctx.fail
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
