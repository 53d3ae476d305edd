"""The PULSE_* variables the deployment sets (check `env`).

A variable no service reads is silently ignored, so a typo or a stale name would go
unnoticed: each one set must be documented in README.md (the list of what the services
read), and a service must not be given a variable only another service reads.
"""

from .images import SERVICES


def check_env(ctx):
    before = ctx.report.mark()
    documented = ctx.documented
    read_by_any = ctx.read_by_any
    checked = set()

    def require_documented(var, who, hint=""):
        """Counts VAR if it is a PULSE_* variable, and fails when README.md does not document it."""
        if var.startswith("PULSE_"):
            checked.add(var)
            if var not in documented:
                ctx.fail("env", f"{who} {var}, which README.md does not document{hint}")

    for where, svc, env in ctx.env_uses:
        for var in env:
            require_documented(var, f"{where} sets", " (a name no service reads?)")
            if svc and ctx.reads and var in read_by_any and var not in ctx.reads[svc]:
                readers = ", ".join(sorted(s for s in SERVICES if var in ctx.reads[s]))
                ctx.fail("env", f"{where} sets {var}, which pulse-{svc} does not read "
                                f"(only {readers} do)")
    # ConfigMaps and Secrets may hold variables no container picks up yet; they must still be
    # real.
    for b in ctx.builds.values():
        for kind, store in (("ConfigMap", b.configmaps), ("Secret", b.secrets)):
            for name, data in store.items():
                for var in data:
                    require_documented(var, f"{b.where}: {kind} {name} has")
    if ctx.report.clean_since(before):
        extra = "and each only where its service reads it" if ctx.reads else \
            "(service sources not found: per-service check skipped)"
        ctx.say("env", f"ok ({len(checked)} PULSE_* variables, all documented in README.md, "
                       f"{extra})")
