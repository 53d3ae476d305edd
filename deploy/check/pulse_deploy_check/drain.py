"""The gateways' shutdown budget (check `drain`).

On shutdown a gateway waits out its preStop, then drains its clients for PULSE_DRAIN_SECONDS
plus GATEWAY_EXTRA_SECONDS; if the orchestrator's grace period is shorter, it is killed
mid-drain and every client reconnects at once. Kubernetes and compose both.
"""

import re

from .compose import compose_env
from .images import service_of_image

# The gateway keeps this long past PULSE_DRAIN_SECONDS before it gives up on the last clients
# (services/gateway/src/lib.rs: drain deadline = drain + 2 s).
GATEWAY_EXTRA_SECONDS = 2


def seconds(text, default):
    """A compose duration ("1m30s", "20s", 20) in seconds."""
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


def drain_seconds(env, default_drain):
    """A gateway's PULSE_DRAIN_SECONDS: its environment's, else README.md's default."""
    return float(env["PULSE_DRAIN_SECONDS"]) if env.get("PULSE_DRAIN_SECONDS") else default_drain


def check_k8s(ctx, default_drain):
    """Checks each gateway container in the overlays; yields a note on each one's budget."""
    all_workloads = [w + (b,) for b in ctx.builds.values() for w in b.workloads]
    for kind, name, pod, labels, annotations, d, b in all_workloads:
        for c in pod.get("containers") or []:
            if service_of_image(c.get("image")) != "gateway":
                continue
            drain = drain_seconds(b.env(kind, name, c), default_drain)
            grace = float(pod.get("terminationGracePeriodSeconds", 30))
            pre = prestop_seconds(c)
            need = pre + drain + GATEWAY_EXTRA_SECONDS
            if grace <= need:
                ctx.fail("drain", f"{b.where}: {kind} {name}: terminationGracePeriodSeconds "
                                  f"{grace:g} must exceed "
                                  f"preStop {pre:g} s + PULSE_DRAIN_SECONDS {drain:g} + "
                                  f"{GATEWAY_EXTRA_SECONDS} s = {need:g} s")
            if grace <= drain:
                ctx.fail("drain", f"{b.where}: {kind} {name}: terminationGracePeriodSeconds "
                                  f"{grace:g} does not exceed PULSE_DRAIN_SECONDS {drain:g}")
            yield (f"{name}: grace {grace:g} s > preStop {pre:g} + drain {drain:g} + "
                   f"{GATEWAY_EXTRA_SECONDS}")


def check_compose(ctx, default_drain):
    """Checks each gateway service in docker-compose.yml; yields a note on each one's budget."""
    for name, svc in ctx.services.items():
        if ctx.compose_service_of.get(name) != "gateway":
            continue
        drain = drain_seconds(compose_env(svc or {}), default_drain)
        grace = seconds((svc or {}).get("stop_grace_period"), 10.0)
        if grace <= drain + GATEWAY_EXTRA_SECONDS:
            ctx.fail("drain", f"compose service {name}: stop_grace_period {grace:g} s must exceed "
                              f"PULSE_DRAIN_SECONDS {drain:g} + {GATEWAY_EXTRA_SECONDS} s")
        yield (f"compose {name}: stop_grace_period {grace:g} s > drain {drain:g} + "
               f"{GATEWAY_EXTRA_SECONDS}")


def check_drain(ctx):
    before = ctx.report.mark()
    default_drain = ctx.readme_default("PULSE_DRAIN_SECONDS")
    default_drain = float(default_drain) if default_drain else 10.0
    notes = [*check_k8s(ctx, default_drain), *check_compose(ctx, default_drain)]
    if not notes:
        ctx.fail("drain", "found no gateway in the Kubernetes overlays or docker-compose.yml")
    if ctx.report.clean_since(before):
        ctx.say("drain", "ok (" + "; ".join(sorted(set(notes))) + ")")
