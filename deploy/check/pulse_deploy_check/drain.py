"""The shutdown budgets of the gateways and the web service (check `drain`).

On shutdown a gateway waits out its preStop, then drains its clients for PULSE_DRAIN_SECONDS
plus GATEWAY_EXTRA_SECONDS; if the orchestrator's grace period is shorter, it is killed
mid-drain and every client reconnects at once. Kubernetes and compose both. A web pod waits
out its preStop, then lets the requests in flight finish, each within
PULSE_HTTP_TIMEOUT_SECONDS (then answered 408), plus WEB_EXTRA_SECONDS; killed sooner, a
publish in flight ends in a reset rather than its answer.
"""

import re

from .compose import compose_env
from .images import service_of_image

# What a gateway may take past PULSE_DRAIN_SECONDS before it exits: 2 s more for the last
# clients (services/gateway/src/lib.rs: drain deadline = drain + 2 s), 1 s for probes in flight
# on the ops server (services/common/src/ops.rs: OPS_DRAIN) and 2 s to flush NATS
# (services/common/src/nats.rs: FLUSH_ON_EXIT).
GATEWAY_EXTRA_SECONDS = 5
# What pulse-web may take past its slowest request before it exits: the ops server's 1 s.
WEB_EXTRA_SECONDS = 1


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


def setting_seconds(env, name, default):
    """A duration setting (`20`, `20s`, `1m`) of a service's environment, else DEFAULT."""
    return seconds(env[name], default) if env.get(name) else default


# Per service: the setting its shutdown waits out, and what it takes past that.
BUDGETS = {
    "gateway": ("PULSE_DRAIN_SECONDS", GATEWAY_EXTRA_SECONDS),
    "web": ("PULSE_HTTP_TIMEOUT_SECONDS", WEB_EXTRA_SECONDS),
}


def check_k8s(ctx, defaults):
    """Checks each gateway and web container in the overlays; yields (service, a note on its
    budget)."""
    all_workloads = [w + (b,) for b in ctx.builds.values() for w in b.workloads]
    for kind, name, pod, labels, annotations, d, b in all_workloads:
        for c in pod.get("containers") or []:
            service = service_of_image(c.get("image"))
            if service not in BUDGETS:
                continue
            setting, extra = BUDGETS[service]
            wait = setting_seconds(b.env(kind, name, c), setting, defaults[setting])
            grace = float(pod.get("terminationGracePeriodSeconds", 30))
            pre = prestop_seconds(c)
            need = pre + wait + extra
            if grace <= need:
                ctx.fail("drain", f"{b.where}: {kind} {name}: terminationGracePeriodSeconds "
                                  f"{grace:g} must exceed "
                                  f"preStop {pre:g} s + {setting} {wait:g} + "
                                  f"{extra} s = {need:g} s")
            yield service, f"{name}: grace {grace:g} s > preStop {pre:g} + {wait:g} + {extra}"


def check_compose(ctx, default_drain):
    """Checks each gateway service in docker-compose.yml; yields (service, a note on its
    budget)."""
    for name, svc in ctx.services.items():
        if ctx.compose_service_of.get(name) != "gateway":
            continue
        drain = setting_seconds(compose_env(svc or {}), "PULSE_DRAIN_SECONDS", default_drain)
        grace = seconds((svc or {}).get("stop_grace_period"), 10.0)
        if grace <= drain + GATEWAY_EXTRA_SECONDS:
            ctx.fail("drain", f"compose service {name}: stop_grace_period {grace:g} s must exceed "
                              f"PULSE_DRAIN_SECONDS {drain:g} + {GATEWAY_EXTRA_SECONDS} s")
        yield "gateway", (f"compose {name}: stop_grace_period {grace:g} s > drain {drain:g} + "
                          f"{GATEWAY_EXTRA_SECONDS}")


def check_drain(ctx):
    before = ctx.report.mark()
    # README.md's defaults, else the services' own.
    defaults = {name: seconds(ctx.readme_default(name), fallback)
                for name, fallback in (("PULSE_DRAIN_SECONDS", 10.0),
                                       ("PULSE_HTTP_TIMEOUT_SECONDS", 30.0))}
    default_drain = defaults["PULSE_DRAIN_SECONDS"]
    checked = [*check_k8s(ctx, defaults), *check_compose(ctx, default_drain)]
    if not any(service == "gateway" for service, _ in checked):
        ctx.fail("drain", "found no gateway in the Kubernetes overlays or docker-compose.yml")
    if ctx.report.clean_since(before):
        ctx.say("drain", "ok (" + "; ".join(sorted({note for _, note in checked})) + ")")
