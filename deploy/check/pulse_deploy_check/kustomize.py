"""The checks over the rendered builds, in order, and their summaries (kustomize, apply,
routes, policy).

Every overlay is checked on its own: an overlay can break what the base got right (a patch
that drops a probe, a component that adds a route).
"""

from .apply import base_checks, check_generated, check_rolling
from .builds import Build, load_renders
from .networkpolicy import NATS_POLICY, check_nats_side, check_policy
from .routes import WS_PATH, check_routes
from .schemas import K8S_VERSIONS, SchemaCounts, validate_schemas
from .structure import check_structure


def check_builds(ctx):
    load_renders(ctx)
    counts = SchemaCounts()
    if "base" in ctx.renders:
        base_checks(ctx, ctx.renders["base"])
        validate_schemas(ctx, counts, "base", ctx.renders["base"])
        # Applied to the NATS namespace by hand, beside the Helm release: in no build.
        validate_schemas(ctx, counts, NATS_POLICY, ctx.docs_by_file.get(NATS_POLICY) or [])
    for name in ctx.overlays:
        ctx.builds[name] = Build(ctx, name, ctx.renders[name])
        validate_schemas(ctx, counts, f"overlay {name}", ctx.renders[name])
    policy_summary = []
    for name, b in ctx.builds.items():
        check_structure(b)
        check_generated(b)
        check_routes(b)
        summary = check_policy(b)
        if name == "example" or not policy_summary:
            policy_summary = summary
        check_nats_side(b)
    check_rolling(ctx)
    if ctx.renders_dir:
        summarize(ctx, counts, policy_summary)


def summarize(ctx, counts, policy_summary):
    count = ctx.report.count
    tool = "quick: no schema validation" if ctx.quick else \
        (f"{counts.validated} objects valid for Kubernetes "
         f"{K8S_VERSIONS[0]} and the newest schemas, {counts.by_hand} CRD objects "
         f"checked by hand")
    if not count("kustomize"):
        ctx.say("kustomize", f"ok (base and {len(ctx.overlays)} overlays: "
                             f"{', '.join(ctx.overlays)}; {tool})")
    if not count("apply"):
        ctx.say("apply", "ok (builds are identical twice, no Secret or Job in the base, no "
                         "replicas under an HPA, generated or Reloader-watched config; a setting "
                         "change rolls only its Deployment, a secret change all that read it; "
                         "migrations in initContainers with the owner's login)")
    if not count("routes"):
        ctx.say("routes", f"ok (only Exact {WS_PATH} reaches the gateways, no ops port in a "
                          f"Service; zone and node spread)")
    if not count("policy"):
        ctx.say("policy", "ok (default deny; " + "; ".join(policy_summary) + "; the NATS side "
                          "agrees)")
