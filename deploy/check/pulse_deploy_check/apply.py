"""Applying an overlay again must change nothing it should not (check `apply`).

No Secret or Job in the base (an overlay owns the Secret; a Job's pod template cannot
change), generated (hash-suffixed) or Reloader-watched ConfigMaps and Secrets so a change
rolls the pods that use them, and exactly those; migrations in an initContainer as the
owner, the services with logins of their own.
"""

import os
import re

import yaml

from .builds import index
from .images import service_of_image
from .yamlfiles import load_all

# Generated names end in a hash of the content (kustomize: 10 characters).
HASHED = re.compile(r"-[a-z0-9]{10}$")


def base_checks(ctx, docs):
    """The base alone: it must be safe to build on and never carry what an overlay owns."""
    by_kind = index(ctx, docs, "base")
    for name in by_kind.get("Secret") or {}:
        ctx.fail("apply", f"the base defines Secret {name}: an overlay owns the Secret (applying "
                          f"the base would overwrite the real one)")
    for kind in ("Job",):
        for name in by_kind.get(kind) or {}:
            ctx.fail("apply", f"the base defines {kind} {name}: a Job's pod template cannot "
                              f"change, so the next apply with a new image fails (run migrations "
                              f"in an initContainer)")
    for text in (yaml.safe_dump(d) for d in docs):
        if "REPLACE_ME" in text:
            ctx.fail("apply", "the base holds a REPLACE_ME placeholder")
            break


def check_migrations(b, kind, name, pod):
    """Pods that use the database apply the migrations first, in an initContainer, as the
    owner; the service itself logs in with a different (its own) login."""
    ctx = b.ctx
    mains = [c for c in pod.get("containers") or [] if "DATABASE_URL" in
             {e.get("name") for e in c.get("env") or []}]
    if not mains:
        return
    where = f"{b.where}: {kind} {name}"
    inits = [c for c in pod.get("initContainers") or []
             if service_of_image(c.get("image")) == "poller"
             and list(c.get("args") or c.get("command") or [])[-1:] == ["migrate"]]
    if not inits:
        ctx.fail("apply", f"{where} uses the database but has no initContainer running "
                          f"`pulse-poller migrate`: a rollout would start new code on the old "
                          f"schema")
        return
    owner = b.secret_key_of(inits[0], "DATABASE_URL")
    if owner is None:
        ctx.fail("apply", f"{where}: the migrate initContainer takes DATABASE_URL from no Secret")
    for c in mains:
        login = b.secret_key_of(c, "DATABASE_URL")
        if login is None:
            ctx.fail("apply", f"{where} container {c.get('name')}: DATABASE_URL from no Secret")
        elif login == owner:
            ctx.fail("apply", f"{where} container {c.get('name')} logs in with the migrations' "
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
                    b.ctx.fail("apply", f"{b.where}: {kind} {name} uses the synced Secret {ref}, "
                                        f"whose name never changes: annotate the Deployment "
                                        f"secret.reloader.stakater.com/reload: {ref} so a "
                                        f"rotation rolls it")
            elif not HASHED.search(str(ref)):
                b.ctx.fail("apply", f"{b.where}: {kind} {name} uses {ref_kind} {ref}, which is "
                                    f"not generated: a change to it would not roll the pods")


def rolled(before_docs, after_docs):
    """Names of the Deployments whose pod template differs between two builds."""
    before = {d["metadata"]["name"]: d["spec"]["template"] for d in before_docs
              if d.get("kind") == "Deployment"}
    after = {d["metadata"]["name"]: d["spec"]["template"] for d in after_docs
             if d.get("kind") == "Deployment"}
    return {n for n in before if before[n] != after.get(n)}


def check_rolling(ctx):
    """A changed gateway setting rolls only the gateways; a changed secret every Deployment
    that reads the Secret."""
    if "example" not in ctx.builds:
        return
    base_docs = ctx.renders["example"]
    for variant, want in (("config", {"pulse-gateway"}),
                          ("secret", {"pulse-gateway", "pulse-poller", "pulse-web"})):
        path = os.path.join(ctx.renders_dir, f"example.{variant}.yaml")
        if not os.path.exists(path):
            continue
        got = rolled(base_docs, load_all(path))
        if got != want:
            ctx.fail("apply", f"overlay example: changing a {variant} value rolls "
                              f"{sorted(got) or 'nothing'}, expected {sorted(want)}")
