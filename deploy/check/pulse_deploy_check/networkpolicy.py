"""NetworkPolicies (check `policy`): default deny, and each pod allowed exactly what it uses.

What a pod needs is read from its configuration (DATABASE_URL: PostgreSQL, NATS_URL: NATS,
OTEL_EXPORTER_OTLP_ENDPOINT: the collector, always DNS; in: its public port from the ingress
controller, its ops port from Prometheus), so a new dependency without its policy, or a
policy left behind by a removed one, both fail. The NATS side's policy must agree.
"""

import json
from urllib.parse import urlsplit

from .builds import all_containers, selects
from .routes import public_backends

NATS_POLICY = "deploy/k8s/nats/networkpolicy.yaml"


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


def policy_rules(ctx, policies, labels, own_ns, where):
    """For a pod with these labels: (isolated in, isolated out, {(dir, port, proto, peer)})."""
    iso_in = iso_out = False
    allowed = set()
    for pname, pol in policies.items():
        spec = pol.get("spec") or {}
        sel = spec.get("podSelector") or {}
        if sel.get("matchExpressions"):
            ctx.fail("policy", f"{where}: NetworkPolicy {pname}: matchExpressions are not "
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
                    ctx.fail("policy", f"{where}: NetworkPolicy {pname} allows {direction} "
                                       f"from/to anywhere; name the peer")
                    continue
                if not ports:
                    ctx.fail("policy", f"{where}: NetworkPolicy {pname} allows every port "
                                       f"{direction}; name the ports")
                    continue
                for peer in peers:
                    k = peer_key(peer, own_ns)
                    if k is None:
                        ctx.fail("policy", f"{where}: NetworkPolicy {pname}: peer {peer} is any "
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


def public_ports(b):
    """{workload name: {container ports a public route reaches}}."""
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
    return public


# How a port a pod needs but no rule allows, and a port a rule allows but the pod does not need,
# read in each direction ({peers}: the namespaces or CIDRs the rules let through).
PORT_GAPS = {
    "egress": ("needs egress to {what} on {proto} {port}",
               "allows egress to port {port}/{proto} ({peers}), which it does not use"),
    "ingress": ("needs ingress from {what} on port {port}",
                "allows ingress on port {port}/{proto}, which serves nothing routed or scraped"),
}


def fail_port_gaps(fail, where, direction, need, got):
    """Fails each (port, protocol) of NEED that no rule in GOT allows, and each one GOT allows
    that NEED does not have."""
    missing, unused = PORT_GAPS[direction]
    for (port, proto), what in need.items():
        if (port, proto) not in got:
            fail("policy", f"{where} {missing.format(port=port, proto=proto, what=what)}, "
                           f"which no NetworkPolicy allows")
    for (port, proto), peers in got.items():
        if (port, proto) not in need:
            peers = ", ".join(sorted(p[0] for p in peers))
            fail("policy", f"{where}: NetworkPolicy "
                           f"{unused.format(port=port, proto=proto, peers=peers)}")


def check_policy(b):
    """Returns one summary line per workload: the ports it may reach and be reached on."""
    fail = b.ctx.fail
    policies = b.kind("NetworkPolicy")
    deny = [n for n, p in policies.items()
            if not ((p.get("spec") or {}).get("podSelector") or {}).get("matchLabels")
            and set((p.get("spec") or {}).get("policyTypes") or []) == {"Ingress", "Egress"}
            and not (p.get("spec") or {}).get("ingress") and not (p.get("spec") or {}).get(
                "egress")]
    if not deny:
        fail("policy", f"{b.where}: no default-deny NetworkPolicy (empty podSelector, both "
                       f"policyTypes, no rules)")
    public = public_ports(b)
    summary = []
    for kind, name, pod, labels, annotations, d in b.workloads:
        where = f"{b.where}: {kind} {name}"
        ns = (d.get("metadata") or {}).get("namespace")
        iso_in, iso_out, allowed = policy_rules(b.ctx, policies, labels, ns, where)
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
        fail_port_gaps(fail, where, "egress", need_out, got_out)
        for key, peers in got_out.items():
            if key not in need_out:
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
        fail_port_gaps(fail, where, "ingress", need_in, got_in)
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
    path = NATS_POLICY
    docs = b.ctx.docs_by_file.get(path) or []
    if not docs:
        b.ctx.fail("policy", f"{path} is missing")
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
            b.ctx.fail("policy", f"{path} does not let {kind} {name} (namespace {ns}) reach "
                                 f"NATS, which it uses")
        if let_in and not uses:
            b.ctx.fail("policy", f"{path} lets {kind} {name} reach NATS, which it does not use")
