"""The rendered kustomize builds, indexed by kind and name, with their references resolved.

scripts/check-deploy.sh renders the base and every overlay into a folder; the kustomize,
apply, routes, policy, nats, autoscale, env and drain checks all look at the same Builds.
"""

import glob
import os

from .yamlfiles import load_all


def load_renders(ctx):
    """Reads RENDERS_DIR/<name>.yaml into ctx.renders and ctx.overlays (second builds and
    variants, named <name>.<what>.yaml, are read where they are used)."""
    if not ctx.renders_dir:
        return
    for path in sorted(glob.glob(os.path.join(ctx.renders_dir, "*.yaml"))):
        name = os.path.basename(path)[:-len(".yaml")]
        if "." in name:
            continue
        ctx.renders[name] = load_all(path)
    ctx.overlays = sorted(n for n in ctx.renders if n != "base")
    if "base" not in ctx.renders:
        ctx.fail("kustomize", "deploy/k8s/base was not built")
    if not ctx.overlays:
        ctx.fail("kustomize", "no overlay under deploy/k8s/overlays/")


def index(ctx, docs, where):
    by_kind = {}
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d:
            ctx.fail("kustomize", f"{where}: a document without kind: {str(d)[:80]}")
            continue
        by_kind.setdefault(d["kind"], {})[d.get("metadata", {}).get("name")] = d
    return by_kind


def pod_workloads(ctx, by_kind, where):
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
                    ctx.fail("kustomize", f"{where}: {kind} {name}: selector {sel} does not "
                                          f"match its pod labels")
    return out


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def all_containers(pod):
    return [("initContainer", c) for c in pod.get("initContainers") or []] + \
        [("container", c) for c in pod.get("containers") or []]


class Build:
    """One rendered overlay, indexed, with the references between its objects resolved."""

    def __init__(self, ctx, name, docs):
        self.ctx = ctx
        self.name = name
        self.where = f"overlay {name}"
        self.by_kind = index(ctx, docs, self.where)
        self.workloads = pod_workloads(ctx, self.by_kind, self.where)
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
                        self.ctx.fail("kustomize", f"{self.where}: {kind} {name}: envFrom {key} "
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
                    self.ctx.fail("kustomize", f"{self.where}: {kind} {name}: {e['name']} refers "
                                               f"to {key} {ref.get('name')}/{ref.get('key')}, "
                                               f"which does not exist")
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
